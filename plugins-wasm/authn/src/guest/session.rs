//! Login sessions: a row per session in the plugin's `sql` database, found
//! by the SHA-256 of the opaque random id the browser holds in its cookie.
//!
//! Why `sql` and not `state`: `state` lives in the host's memory and is
//! gone after a restart; a session lasts hours and a restart must not log
//! every user out. A session row holds only the digest of its id, so a
//! copy of the database does not hand out live sessions. The short-lived
//! logins in progress (minutes, single use) are in `state`.

use std::cell::RefCell;

use buntime_pdk::abi::HostErrorBody;
use buntime_pdk::plugin::sql;
use serde_json::{Value, json};

use super::host::{random, sha256_hex};
use super::settings;
use crate::redirect::{SESSION_COOKIE, set_cookie};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS authn_sessions (\
    id TEXT PRIMARY KEY, provider TEXT NOT NULL, identity TEXT NOT NULL, \
    id_token TEXT, expires INTEGER NOT NULL) WITHOUT ROWID";

/// Now, in seconds since the Unix epoch, by the guest's clock.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Bytes of randomness in a session id (256 bits).
const ID_BYTES: usize = 32;

thread_local! {
    static READY: RefCell<bool> = const { RefCell::new(false) };
}

/// A stored session.
pub(super) struct Session {
    /// The provider that made it.
    pub provider: String,
    /// The `X-Identity` JSON.
    pub identity: String,
    /// The ID token (for `id_token_hint` at logout), when an `oidc` login.
    pub id_token: Option<String>,
}

fn db() -> Result<sql::Db<'static>, HostErrorBody> {
    let cfg = settings().map_err(|e| super::host::internal(e.to_string()))?;
    let db = sql::Db::new(&cfg.database);
    if !READY.with(|r| *r.borrow()) {
        db.execute(SCHEMA, &[])?;
        READY.with(|r| *r.borrow_mut() = true);
    }
    Ok(db)
}

/// Whether a cookie value has the shape of an id this plugin made (43
/// base64url characters); anything else is not looked up.
fn well_formed(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Starts a session for `identity`; returns its id (the cookie's value).
pub(super) fn create(
    provider: &str,
    identity: &Value,
    id_token: Option<&str>,
    seconds: u64,
) -> Result<String, HostErrorBody> {
    let id = random(ID_BYTES)?;
    let digest = sha256_hex(&id)?;
    let now = now();
    db()?.batch(
        &[
            // Expired rows go whenever a new one comes.
            (
                "DELETE FROM authn_sessions WHERE expires <= ?",
                vec![json!(now)],
            ),
            (
                "INSERT INTO authn_sessions (id, provider, identity, id_token, expires) \
                 VALUES (?, ?, ?, ?, ?)",
                vec![
                    json!(digest),
                    json!(provider),
                    json!(identity.to_string()),
                    json!(id_token),
                    json!(now.saturating_add(seconds)),
                ],
            ),
        ],
        true,
    )?;
    Ok(id)
}

/// The live session of cookie value `id`.
pub(super) fn find(id: &str) -> Result<Option<Session>, HostErrorBody> {
    if !well_formed(id) {
        return Ok(None);
    }
    let rows = db()?.query(
        "SELECT provider, identity, id_token FROM authn_sessions \
         WHERE id = ? AND expires > ?",
        &[json!(sha256_hex(id)?), json!(now())],
    )?;
    Ok(rows.rows.first().map(|row| Session {
        provider: row[0].as_str().unwrap_or_default().to_owned(),
        identity: row[1].as_str().unwrap_or_default().to_owned(),
        id_token: row.get(2).and_then(Value::as_str).map(str::to_owned),
    }))
}

/// Ends the session of cookie value `id`; returns it if it was live.
pub(super) fn delete(id: &str) -> Result<Option<Session>, HostErrorBody> {
    let session = find(id)?;
    if well_formed(id) {
        db()?.execute(
            "DELETE FROM authn_sessions WHERE id = ?",
            &[json!(sha256_hex(id)?)],
        )?;
    }
    Ok(session)
}

/// Ends the session the request's cookie names, if any: a login replaces
/// the browser's previous session rather than leaving it live.
pub(super) fn end_previous(headers: &[(String, String)]) {
    if let Some(id) = crate::redirect::cookie(headers, SESSION_COOKIE)
        && let Err(e) = delete(id)
    {
        extism_pdk::warn!("authn: ending the previous session: {e}");
    }
}

/// Whether the client reached this server over HTTPS (as resolved through
/// the operator's trusted proxies): cookies are then `Secure`.
pub(super) fn https() -> bool {
    buntime_pdk::client().is_some_and(|c| c.scheme == "https")
}

/// The `Set-Cookie` carrying session `id` (or deleting it: `None`).
pub(super) fn cookie(id: Option<&str>, seconds: u64) -> String {
    match id {
        Some(id) => set_cookie(SESSION_COOKIE, id, "/", seconds, https()),
        None => set_cookie(SESSION_COOKIE, "", "/", 0, https()),
    }
}
