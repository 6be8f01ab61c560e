//! Generated API keys: made, checked, listed and revoked.
//!
//! A key is `btk_` plus 32 random bytes in base64url, shown once. Only its
//! SHA-256 is kept — a hash without salt or stretching is enough for 256
//! random bits — in the runtime's own SQLite file
//! (`<RUNTIME_DATA_DIR>/.buntime/keys.db`, a name no `sql` grant can reach),
//! with its name, prefix, role, creation, expiry, revocation and last use.
//! Every key that is not revoked is also held in memory by its hash, so a
//! check reads no file. The last use is written at most once a minute a key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rusqlite::params;
use sha2::{Digest, Sha256};

use super::roles::{Permissions, Role};

/// The prefix of every generated key.
pub const KEY_PREFIX: &str = "btk_";

/// How often the last use of a key is written, at most (seconds).
const LAST_USE_INTERVAL: i64 = 60;

/// Characters of a key kept (and shown) to recognise it.
const SHOWN_PREFIX: usize = 12;

/// Why the key store failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The database could not be opened, read or written.
    #[error("the API key store `{path}`: {source}")]
    Database {
        /// The file (`:memory:` without a data dir).
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Its directory could not be created.
    #[error("cannot create `{path}` for the API key store: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The system's random source failed.
    #[error("cannot generate a key: the system's random source failed: {0}")]
    Random(String),
    /// A thread panicked while holding the store's lock.
    #[error("the API key store is unusable after a panic; restart the server")]
    Poisoned,
}

/// A key that is not revoked.
#[derive(Debug)]
pub struct StoredKey {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its first characters, to recognise it.
    pub prefix: String,
    /// Its role.
    pub role: Role,
    /// What it may do (the role's, or the custom list).
    pub permissions: Permissions,
    /// A free text.
    pub description: Option<String>,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Expires, Unix seconds.
    pub expires_at: Option<i64>,
    last_used: AtomicI64,
    last_written: AtomicI64,
}

impl StoredKey {
    /// Last use, Unix seconds (0: never).
    pub fn last_used(&self) -> i64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// It as listings show it (never the key itself).
    pub fn describe(&self) -> serde_json::Value {
        let last = self.last_used();
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "keyPrefix": self.prefix,
            "role": self.role.as_str(),
            "permissions": self.permissions.names(),
            "description": self.description,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
            "lastUsedAt": (last > 0).then_some(last),
        })
    }
}

/// What a new key is made with.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its permissions (the role's, or the custom list).
    pub permissions: Permissions,
    /// The custom list as given (stored for `custom`).
    pub permission_names: Vec<String>,
    /// A free text.
    pub description: Option<String>,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
}

/// The outcome of checking a presented key.
#[derive(Debug)]
pub enum Checked {
    /// A valid key.
    Valid(Arc<StoredKey>),
    /// Expired.
    Expired,
    /// Unknown or revoked.
    Unknown,
}

/// The generated keys.
#[derive(Debug)]
pub struct KeyStore {
    /// The database file (`None`: in memory).
    file: Option<PathBuf>,
    /// The open database: opened at start when the file exists, else when
    /// the first key is made (a server that never makes one writes nothing).
    db: Mutex<Option<rusqlite::Connection>>,
    path: String,
    /// Keys not revoked, by SHA-256 of the key.
    live: RwLock<HashMap<[u8; 32], Arc<StoredKey>>>,
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// SHA-256 of `key`.
pub(super) fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl KeyStore {
    /// Opens the store under `data_dir` (`<data_dir>/.buntime/keys.db`),
    /// or in memory without one.
    pub fn open(data_dir: Option<&Path>) -> Result<Self, KeyStoreError> {
        let file = data_dir.map(|d| d.join(".buntime").join("keys.db"));
        let path = file
            .as_ref()
            .map_or(":memory:".to_owned(), |f| f.display().to_string());
        let mut store = Self {
            file,
            db: Mutex::new(None),
            path,
            live: RwLock::default(),
        };
        if store.file.as_ref().is_none_or(|f| f.exists()) {
            let conn = store.connect()?;
            let live = load_live(&conn).map_err(|e| store.err(e))?;
            store.live = RwLock::new(live);
            store.db = Mutex::new(Some(conn));
        }
        Ok(store)
    }

    /// Opens (creating) the database and its table.
    fn connect(&self) -> Result<rusqlite::Connection, KeyStoreError> {
        let conn = match &self.file {
            Some(file) => {
                if let Some(dir) = file.parent() {
                    create_private_dir(dir).map_err(|source| KeyStoreError::Dir {
                        path: dir.to_owned(),
                        source,
                    })?;
                }
                rusqlite::Connection::open(file)
            }
            None => rusqlite::Connection::open_in_memory(),
        }
        .map_err(|e| self.err(e))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS api_keys (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               name TEXT NOT NULL,
               prefix TEXT NOT NULL,
               hash BLOB NOT NULL UNIQUE,
               role TEXT NOT NULL,
               permissions TEXT NOT NULL DEFAULT '[]',
               description TEXT,
               created_at INTEGER NOT NULL,
               expires_at INTEGER,
               revoked_at INTEGER,
               last_used_at INTEGER
             );",
        )
        .map_err(|e| self.err(e))?;
        Ok(conn)
    }

    /// Runs `f` on the database, opening it first if `create` and it is
    /// not open yet; `None` when it is not open and `create` is false.
    fn with_db<T>(
        &self,
        create: bool,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, KeyStoreError> {
        let mut db = self.db.lock().map_err(|_| KeyStoreError::Poisoned)?;
        if db.is_none() {
            if !create {
                return Ok(None);
            }
            *db = Some(self.connect()?);
        }
        match db.as_ref() {
            Some(conn) => f(conn).map(Some).map_err(|e| self.err(e)),
            None => Ok(None),
        }
    }

    fn err(&self, source: rusqlite::Error) -> KeyStoreError {
        KeyStoreError::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// Whether any key is configured (revoked ones do not count, expired
    /// ones do: an expired key does not reopen the API to local clients).
    pub fn any(&self) -> bool {
        self.live.read().is_ok_and(|m| !m.is_empty())
    }

    /// Checks a presented key, noting its use.
    pub fn check(&self, key: &str) -> Checked {
        if !key.starts_with(KEY_PREFIX) {
            return Checked::Unknown;
        }
        let found = self
            .live
            .read()
            .ok()
            .and_then(|m| m.get(&digest(key)).cloned());
        let Some(found) = found else {
            return Checked::Unknown;
        };
        let now = now();
        if found.expired(now) {
            return Checked::Expired;
        }
        found.last_used.store(now, Ordering::Relaxed);
        let written = found.last_written.load(Ordering::Relaxed);
        if now - written >= LAST_USE_INTERVAL
            && found
                .last_written
                .compare_exchange(written, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.write_last_use(found.id, now);
        }
        Checked::Valid(found)
    }

    fn write_last_use(&self, id: i64, at: i64) {
        let written = self.with_db(false, |db| {
            db.execute(
                "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2",
                params![at, id],
            )
        });
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot record the last use of an API key");
        }
    }

    /// Makes a key; returns it (the only time it is seen) and its record.
    pub fn create(&self, new: NewKey) -> Result<(String, Arc<StoredKey>), KeyStoreError> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| KeyStoreError::Random(e.to_string()))?;
        let key = format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        );
        let hash = digest(&key);
        let prefix: String = key.chars().take(SHOWN_PREFIX).collect();
        let created_at = now();
        let stored_permissions = if new.role == Role::Custom {
            new.permission_names.clone()
        } else {
            Vec::new()
        };
        let id = self.with_db(true, |db| {
            db.execute(
                "INSERT INTO api_keys (name, prefix, hash, role, permissions, description, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    new.name,
                    prefix,
                    hash.as_slice(),
                    new.role.as_str(),
                    serde_json::to_string(&stored_permissions).unwrap_or_else(|_| "[]".into()),
                    new.description,
                    created_at,
                    new.expires_at,
                ],
            )?;
            Ok(db.last_insert_rowid())
        })?;
        // `with_db(true, …)` opens the database or fails: never `None`.
        let Some(id) = id else {
            return Err(KeyStoreError::Poisoned);
        };
        let stored = Arc::new(StoredKey {
            id,
            name: new.name,
            prefix,
            role: new.role,
            permissions: new.permissions,
            description: new.description,
            created_at,
            expires_at: new.expires_at,
            last_used: AtomicI64::new(0),
            last_written: AtomicI64::new(0),
        });
        if let Ok(mut live) = self.live.write() {
            live.insert(hash, stored.clone());
        }
        Ok((key, stored))
    }

    /// Revokes key `id`; `false` when there is no such key (or it was
    /// revoked already).
    pub fn revoke(&self, id: i64) -> Result<bool, KeyStoreError> {
        let changed = self
            .with_db(false, |db| {
                db.execute(
                    "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                    params![now(), id],
                )
            })?
            .unwrap_or(0);
        if let Ok(mut live) = self.live.write() {
            live.retain(|_, k| k.id != id);
        }
        Ok(changed > 0)
    }

    /// Every key not revoked, by id.
    pub fn list(&self) -> Vec<Arc<StoredKey>> {
        let mut keys: Vec<Arc<StoredKey>> = self
            .live
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        keys.sort_by_key(|k| k.id);
        keys
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn load_live(
    conn: &rusqlite::Connection,
) -> Result<HashMap<[u8; 32], Arc<StoredKey>>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT id, name, prefix, hash, role, permissions, description, created_at, expires_at, last_used_at
         FROM api_keys WHERE revoked_at IS NULL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Vec<u8>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, i64>(7)?,
            r.get::<_, Option<i64>>(8)?,
            r.get::<_, Option<i64>>(9)?,
        ))
    })?;
    let mut live = HashMap::new();
    for row in rows {
        let (id, name, prefix, hash, role, perms, description, created_at, expires_at, last) = row?;
        let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
            tracing::warn!(id, "an API key record has a malformed hash; it is ignored");
            continue;
        };
        // A record this version cannot read grants nothing.
        let Some(role) = Role::parse(&role) else {
            tracing::warn!(id, role, "an API key has an unknown role; it is ignored");
            continue;
        };
        let permissions = if role == Role::Custom {
            let names: Vec<String> = serde_json::from_str(&perms).unwrap_or_default();
            match Permissions::parse(&names) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(id, error = %e, "an API key has an unknown permission; it is ignored");
                    continue;
                }
            }
        } else {
            Permissions::of_role(role)
        };
        let last = last.unwrap_or(0);
        live.insert(
            hash,
            Arc::new(StoredKey {
                id,
                name,
                prefix,
                role,
                permissions,
                description,
                created_at,
                expires_at,
                last_used: AtomicI64::new(last),
                last_written: AtomicI64::new(last),
            }),
        );
    }
    Ok(live)
}

/// Parses `expiresIn`: `never`, or a count of days (`d`), weeks (`w`),
/// 30-day months (`m`) or 365-day years (`y`), e.g. `90d`. Returns seconds.
pub fn parse_expires_in(text: &str) -> Result<Option<i64>, String> {
    if text == "never" {
        return Ok(None);
    }
    let bad = || format!("`{text}` is not `never` or a count with d, w, m or y, such as `90d`");
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = digits.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let day = 86_400;
    let unit = match unit {
        "d" => day,
        "w" => 7 * day,
        "m" => 30 * day,
        "y" => 365 * day,
        _ => return Err(bad()),
    };
    n.checked_mul(unit).map(Some).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked_at(store: &KeyStore, id: i64) -> Option<i64> {
        store
            .with_db(false, |db| {
                db.query_row(
                    "SELECT revoked_at FROM api_keys WHERE id = ?1",
                    params![id],
                    |r| r.get::<_, Option<i64>>(0),
                )
            })
            .ok()
            .flatten()
            .flatten()
    }

    fn new_key(role: Role, expires_at: Option<i64>) -> NewKey {
        NewKey {
            name: "ci".into(),
            role,
            permissions: Permissions::of_role(role),
            permission_names: Vec::new(),
            description: None,
            expires_at,
        }
    }

    #[test]
    fn keys_are_kept_hashed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(Some(dir.path())).expect("open");
        assert!(!store.any());
        assert!(
            !dir.path().join(".buntime").exists(),
            "nothing is written before a key"
        );
        let (key, stored) = store.create(new_key(Role::Viewer, None)).expect("create");
        assert!(key.starts_with(KEY_PREFIX) && key.len() == 4 + 43, "{key}");
        assert_eq!(stored.prefix, key[..12]);
        let file = std::fs::read(dir.path().join(".buntime/keys.db")).unwrap_or_default();
        let wal = std::fs::read(dir.path().join(".buntime/keys.db-wal")).unwrap_or_default();
        let needle = key.as_bytes();
        for bytes in [&file, &wal] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
        drop(store);
        let store = KeyStore::open(Some(dir.path())).expect("reopen");
        assert!(matches!(store.check(&key), Checked::Valid(k) if k.role == Role::Viewer));
        assert!(store.revoke(stored.id).expect("revoke"));
        assert!(!store.revoke(stored.id).expect("revoke twice"));
        assert!(revoked_at(&store, stored.id).is_some());
        assert!(matches!(store.check(&key), Checked::Unknown));
        let (old, _) = store
            .create(new_key(Role::Admin, Some(now() - 1)))
            .expect("create");
        assert!(matches!(store.check(&old), Checked::Expired));
        assert!(store.any(), "an expired key still counts as configured");
    }

    #[test]
    fn expiry_is_the_original_format() {
        assert_eq!(parse_expires_in("never"), Ok(None));
        assert_eq!(parse_expires_in("2d"), Ok(Some(2 * 86_400)));
        assert_eq!(parse_expires_in("1m"), Ok(Some(30 * 86_400)));
        for bad in ["", "d", "0d", "-1d", "5h", "1.5y", "99999999999999999y"] {
            assert!(parse_expires_in(bad).is_err(), "{bad}");
        }
    }
}
