//! The `email-password` provider: accounts in the plugin's `sql` database
//! (argon2id hashes made and checked by the host), sign-up when configured,
//! login attempts limited per account and per client address with `state`
//! token buckets (atomic in the host, so concurrent instances never admit
//! more than a bucket holds).
//!
//! An unknown account and a wrong password get the same answer after the
//! same work: an unknown account is checked against a dummy hash with the
//! host's parameters.

use std::cell::RefCell;
use std::time::Duration;

use buntime_pdk::abi::HostErrorBody;
use buntime_pdk::plugin::{sql, state};
use buntime_pdk::{Request, Response};
use serde_json::{Value, json};

use super::host::{password_hash, password_verify};
use super::{error, redirect_to, session};
use crate::config::Config;
use crate::password::{PasswordProvider, normalise_email};
use crate::redirect::{form, safe_target};

/// An argon2id hash of a password no account has, with the host's
/// parameters (m=19456, t=2, p=1), so that checking an unknown account
/// costs what checking a known one does.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YnVudGltZS1hdXRobi1kbQ$RgeyXFzYHI9yCmaI+z8G/NlDfRExqIBXN1+uSfj0mBE";
/// Longest password taken (the host's argon2 bound is larger).
const MAX_PASSWORD: usize = 1024;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS authn_accounts (\
    provider TEXT NOT NULL, email TEXT NOT NULL, hash TEXT NOT NULL, name TEXT, \
    roles TEXT NOT NULL, created INTEGER NOT NULL, PRIMARY KEY (provider, email)) WITHOUT ROWID";

thread_local! {
    static READY: RefCell<bool> = const { RefCell::new(false) };
}

fn db(cfg: &Config) -> Result<sql::Db<'_>, HostErrorBody> {
    let db = sql::Db::new(&cfg.database);
    if !READY.with(|r| *r.borrow()) {
        db.execute(SCHEMA, &[])?;
        READY.with(|r| *r.borrow_mut() = true);
    }
    Ok(db)
}

/// The fields of a JSON or form body.
fn fields(req: &Request) -> Value {
    let body = req.body();
    let form_body = req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form_body {
        let map: serde_json::Map<String, Value> = form(&String::from_utf8_lossy(&body))
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        Value::Object(map)
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }
}

fn provider<'a>(cfg: &'a Config, fields: &Value) -> Option<&'a PasswordProvider> {
    match fields["provider"].as_str() {
        Some(n) => cfg.passwords.iter().find(|p| p.name == n),
        None => cfg.passwords.first(),
    }
}

/// One attempt from the bucket at `key`; `Some(seconds to wait)` when empty.
fn take(p: &PasswordProvider, key: &str, capacity: u64) -> Result<Option<u64>, HostErrorBody> {
    let taken = state::take(key, capacity, Duration::from_secs(p.window_seconds), 1)?;
    Ok((!taken.allowed).then(|| taken.retry_after_ms.div_ceil(1000).max(1)))
}

fn limited(retry: u64, id: &str) -> Response {
    error(
        429,
        "RATE_LIMITED",
        &format!("too many login attempts; retry in {retry} s"),
        id,
    )
    .header("retry-after", retry.to_string())
}

/// The client address, for its bucket.
fn address() -> String {
    buntime_pdk::client().map_or_else(|| "unknown".to_owned(), |c| c.address)
}

/// The session answer: a redirect for a form post, the identity as JSON
/// otherwise; both set the session cookie.
fn signed_in(
    cfg: &Config,
    req: &Request,
    p: &PasswordProvider,
    identity: &Value,
    status: u16,
    f: &Value,
) -> Response {
    let id = &req.head().request_id;
    session::end_previous(&req.head().headers);
    let sid = match session::create(&p.name, identity, None, cfg.session_seconds) {
        Ok(s) => s,
        Err(e) => return error(500, "INTERNAL", &format!("storing the session: {e}"), id),
    };
    let cookie = session::cookie(Some(&sid), cfg.session_seconds);
    let is_form = req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        let target = f["redirect"]
            .as_str()
            .and_then(|t| safe_target(t, &cfg.redirect_origins));
        return redirect_to(303, target.as_deref().unwrap_or("/")).header("set-cookie", cookie);
    }
    Response::new(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("set-cookie", cookie)
        .body(identity.to_string())
}

/// `POST /_/auth/api/login` with `email` and `password` (JSON or a form).
pub(super) fn login(cfg: &Config, req: &Request) -> Response {
    let id = &req.head().request_id;
    let f = fields(req);
    let Some(p) = provider(cfg, &f) else {
        return error(
            404,
            "UNKNOWN_PROVIDER",
            "no `email-password` provider by that name is configured",
            id,
        );
    };
    let typed = f["email"].as_str().unwrap_or_default();
    let password = f["password"].as_str().unwrap_or_default();
    let email = normalise_email(typed);
    let account_key = email
        .clone()
        .unwrap_or_else(|| typed.trim().to_lowercase().chars().take(254).collect());
    let addr_bucket = format!("login:{}:addr:{}", p.name, address());
    let account_bucket = format!("login:{}:account:{account_key}", p.name);
    let verdict = take(p, &addr_bucket, p.per_address).and_then(|r| match r {
        Some(r) => Ok(Some(r)),
        None => take(p, &account_bucket, p.per_account),
    });
    match verdict {
        Ok(Some(retry)) => {
            extism_pdk::warn!(
                "authn: login attempts limited for `{account_key}` from {}",
                address()
            );
            return limited(retry, id);
        }
        Ok(None) => {}
        Err(e) => return error(500, "INTERNAL", &format!("rate limit: {e}"), id),
    }
    let account = match &email {
        Some(e) => db(cfg).and_then(|db| {
            db.query(
                "SELECT hash, name, roles FROM authn_accounts WHERE provider = ? AND email = ?",
                &[json!(p.name), json!(e)],
            )
        }),
        None => Ok(sql::Rows {
            columns: vec![],
            rows: vec![],
        }),
    };
    let account = match account {
        Ok(rows) => rows.rows.into_iter().next(),
        Err(e) => return error(500, "INTERNAL", &format!("account store: {e}"), id),
    };
    let password = &password[..password.len().min(MAX_PASSWORD)];
    let hash = account
        .as_ref()
        .and_then(|row| row[0].as_str())
        .unwrap_or(DUMMY_HASH);
    let ok = match password_verify(password, hash) {
        Ok(ok) => ok && account.is_some(),
        Err(e) => return error(500, "INTERNAL", &format!("password check: {e}"), id),
    };
    let (Some(row), true) = (account, ok) else {
        extism_pdk::warn!("authn: login refused for `{account_key}` (invalid_credentials)");
        return error(
            401,
            "INVALID_CREDENTIALS",
            "the email or the password is wrong",
            id,
        );
    };
    let name = row.get(1).and_then(Value::as_str);
    let roles: Vec<String> = row
        .get(2)
        .and_then(Value::as_str)
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    let identity = p.identity(email.as_deref().unwrap_or_default(), name, &roles);
    signed_in(cfg, req, p, &identity, 200, &f)
}

/// `POST /_/auth/api/signup` with `email`, `password` and `name`?.
pub(super) fn signup(cfg: &Config, req: &Request) -> Response {
    let id = &req.head().request_id;
    let f = fields(req);
    let Some(p) = provider(cfg, &f) else {
        return error(
            404,
            "UNKNOWN_PROVIDER",
            "no `email-password` provider by that name is configured",
            id,
        );
    };
    if !p.sign_up {
        return error(
            403,
            "SIGNUP_DISABLED",
            "sign-up is off for this provider (`signUp` in its config)",
            id,
        );
    }
    let Some(email) = f["email"].as_str().and_then(normalise_email) else {
        return error(
            400,
            "INVALID_EMAIL",
            "`email` must be an address like name@example.com",
            id,
        );
    };
    let password = f["password"].as_str().unwrap_or_default();
    let chars = password.chars().count();
    if chars < p.min_length || password.len() > MAX_PASSWORD {
        return error(
            400,
            "WEAK_PASSWORD",
            &format!(
                "a password has {} to {MAX_PASSWORD} characters",
                p.min_length
            ),
            id,
        );
    }
    // Each sign-up costs an argon2 hash: it draws on the address's bucket.
    match take(
        p,
        &format!("login:{}:addr:{}", p.name, address()),
        p.per_address,
    ) {
        Ok(Some(retry)) => return limited(retry, id),
        Ok(None) => {}
        Err(e) => return error(500, "INTERNAL", &format!("rate limit: {e}"), id),
    }
    let name = f["name"]
        .as_str()
        .map(|n| n.chars().take(200).collect::<String>());
    let hash = match password_hash(password) {
        Ok(h) => h,
        Err(e) => return error(500, "INTERNAL", &format!("hashing: {e}"), id),
    };
    let inserted = db(cfg).and_then(|db| {
        db.execute(
            "INSERT INTO authn_accounts (provider, email, hash, name, roles, created) \
             VALUES (?, ?, ?, ?, ?, unixepoch()) ON CONFLICT DO NOTHING",
            &[
                json!(p.name),
                json!(email),
                json!(hash),
                json!(name),
                json!(json!(p.roles).to_string()),
            ],
        )
    });
    match inserted {
        Ok(r) if r.rows_affected == 0 => error(
            409,
            "ACCOUNT_EXISTS",
            "an account with this email exists; log in instead",
            id,
        ),
        Ok(_) => {
            let identity = p.identity(&email, name.as_deref(), &p.roles);
            signed_in(cfg, req, p, &identity, 201, &f)
        }
        Err(e) => error(500, "INTERNAL", &format!("account store: {e}"), id),
    }
}
