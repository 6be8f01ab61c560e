//! The database files behind the `sql` capability: names, tenants, opening
//! (WAL, busy timeout, the rules of [`super::guard`]), a few idle connections
//! per database, and running a job with a statement deadline.
//!
//! Reads create nothing: a database the operator did not configure (and not
//! `default`) is created by the first statement that writes to it, a tenant
//! only by `sql_tenant_create`; anything else addressed to a missing file is
//! `not_found`, with no file and no connection made.
//!
//! Durability is the host's: every connection is opened in WAL mode with
//! `synchronous = NORMAL`, and guests cannot change either
//! ([`super::guard`]). A commit is acknowledged once it is in the WAL, before
//! an fsync; the WAL is synced at checkpoints. A crash of the process loses no
//! acknowledged commit; a power loss or OS crash may lose the most recent
//! ones, never the file's consistency.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use super::{INLINE_BUDGET, STATEMENT_TIMEOUT, SqlJob, guard};
use crate::wasm::HostError;

pub use crate::config::DEFAULT_MAX_TENANTS;

/// The named databases of a server.
///
/// ```
/// use buntime::capabilities::SqlDatabases;
/// let dir = tempfile::tempdir().unwrap();
/// let dbs = SqlDatabases::new(dir.path());
/// assert!(dbs.path("default").unwrap().ends_with("default.db"));
/// assert!(dbs.path("../etc").is_err());
/// ```
#[derive(Debug)]
pub struct SqlDatabases {
    dir: PathBuf,
    named: HashMap<String, PathBuf>,
    /// Most tenants per database (`RUNTIME_MAX_TENANTS`): each is a file,
    /// and tenant ids often come from clients, so creation is bounded.
    pub(super) max_tenants: usize,
    pub(super) idle: Mutex<HashMap<String, Vec<rusqlite::Connection>>>,
    writers: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Durations of `sql_query`, `sql_execute` and `sql_batch` calls
    /// ([`STATEMENT_FUNCTIONS`] order), from the call to the answer.
    pub durations: [crate::metrics::Histogram; 3],
}

/// The functions whose durations [`SqlDatabases::durations`] keeps.
pub const STATEMENT_FUNCTIONS: [&str; 3] = ["query", "execute", "batch"];

/// One database's writer lock. Every writer is in this process, so writes
/// queue here (a futex hand-off) rather than in SQLite's busy handler, which
/// sleeps 1 to 100 ms between retries and turns contention into tail latency.
#[derive(Debug, Clone)]
pub(super) struct WriteLock(Arc<Mutex<()>>);

impl WriteLock {
    /// Waits for the database's write turn.
    pub(super) fn hold(&self) -> std::sync::MutexGuard<'_, ()> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SqlDatabases {
    /// Databases as files in `dir` (`<name>.db`).
    pub fn new(dir: &Path) -> Arc<Self> {
        Self::with_named(dir, HashMap::new())
    }

    /// Databases in `dir`, except those in `named` (name → file), which the
    /// operator put elsewhere (`databases` in `buntime.jsonc`).
    pub fn with_named(dir: &Path, named: HashMap<String, PathBuf>) -> Arc<Self> {
        Self::with_limits(dir, named, DEFAULT_MAX_TENANTS)
    }

    /// [`SqlDatabases::with_named`] with at most `max_tenants` tenants per
    /// database.
    pub fn with_limits(
        dir: &Path,
        named: HashMap<String, PathBuf>,
        max_tenants: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            dir: dir.to_owned(),
            named,
            max_tenants,
            idle: Mutex::default(),
            writers: Mutex::default(),
            durations: Default::default(),
        })
    }

    /// The databases that exist or are configured: `default`, every
    /// configured name and every `<name>.db` in the data dir; sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_suffix(".db")?.to_owned();
                valid_name(&name, "").is_ok().then_some(name)
            })
            .chain(self.named.keys().cloned())
            .chain(std::iter::once("default".to_owned()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The file of database `name`: a configured path, or `<dir>/<name>.db`.
    /// Names are letters, digits, `-` and `_` (so a name cannot leave the dir).
    /// A tenant's database is `db/tenant`, the file `<dir>/<db>.tenants/<tenant>.db`.
    pub fn path(&self, name: &str) -> Result<PathBuf, HostError> {
        if let Some((db, tenant)) = name.split_once('/') {
            valid_name(tenant, "tenant id")?;
            return Ok(self.tenant_dir(db)?.join(format!("{tenant}.db")));
        }
        if let Some(p) = self.named.get(name) {
            return Ok(p.clone());
        }
        valid_name(name, "database name")?;
        Ok(self.dir.join(format!("{name}.db")))
    }

    /// The tenants of `db`, sorted.
    pub(super) fn tenants(&self, db: &str) -> Result<Vec<String>, HostError> {
        let mut tenants: Vec<String> = std::fs::read_dir(self.tenant_dir(db)?)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".db")
                    .map(str::to_owned)
            })
            .collect();
        tenants.sort();
        Ok(tenants)
    }

    /// The directory of `db`'s tenant databases.
    pub(super) fn tenant_dir(&self, db: &str) -> Result<PathBuf, HostError> {
        valid_name(db, "database name")?;
        Ok(self.dir.join(format!("{db}.tenants")))
    }

    /// Whether `name` is a database the operator configured (or `default`):
    /// those exist from the start, so using one may create its file.
    fn configured(&self, name: &str) -> bool {
        name == "default" || self.named.contains_key(name)
    }

    /// Whether database `db` exists: configured, or with a file or tenants.
    pub(super) fn known(&self, db: &str) -> Result<bool, HostError> {
        Ok(self.configured(db) || self.path(db)?.exists() || self.tenant_dir(db)?.exists())
    }

    /// A connection to `name` for a job running `statements`. A tenant's
    /// database is created only by `sql_tenant_create`; a database that is
    /// not configured only by a job that writes ([`writes_to_empty`]).
    fn open(&self, name: &str, statements: &[String]) -> Result<rusqlite::Connection, HostError> {
        if let Some(c) = self.idle_connection(name) {
            return Ok(c);
        }
        let tenant = name.contains('/');
        let create = !tenant
            && (self.configured(name)
                || self.path(name)?.exists()
                || writes_to_empty(name, statements)?);
        if !create && !tenant {
            return Err(HostError::new(
                "not_found",
                format!(
                    "database `{name}` does not exist: a database is created by its first write \
                     (such as CREATE TABLE), or configured under `databases` in buntime.jsonc"
                ),
            ));
        }
        self.open_or_create(name, create)
    }

    fn idle_connection(&self, name: &str) -> Option<rusqlite::Connection> {
        self.idle
            .lock()
            .ok()
            .and_then(|mut m| m.get_mut(name)?.pop())
    }

    pub(super) fn open_or_create(
        &self,
        name: &str,
        create: bool,
    ) -> Result<rusqlite::Connection, HostError> {
        if let Some(c) = self.idle_connection(name) {
            return Ok(c);
        }
        let path = self.path(name)?;
        if !create && !path.exists() {
            let (db, tenant) = name.split_once('/').unwrap_or((name, ""));
            return Err(HostError::new(
                "not_found",
                format!(
                    "tenant `{tenant}` of database `{db}` does not exist; create it with sql_tenant_create"
                ),
            ));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                HostError::new(
                    "unavailable",
                    format!("database `{name}`: cannot create {}: {e}", parent.display()),
                )
            })?;
        }
        let conn = rusqlite::Connection::open(&path)
            .map_err(|e| HostError::new("unavailable", format!("database `{name}`: {e}")))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(STATEMENT_TIMEOUT))
            .and_then(|_| guard::harden(&conn))
            .map_err(|e| HostError::new("unavailable", format!("database `{name}`: {e}")))?;
        Ok(conn)
    }

    /// Keeps `conn` for the next job on `name`, unless a job left a
    /// transaction open on it (the guard refuses `BEGIN`; a failed `COMMIT`
    /// could still): such a connection is closed, which rolls it back, so
    /// nothing of one call reaches the next.
    pub(super) fn release(&self, name: &str, conn: rusqlite::Connection) {
        if !conn.is_autocommit() {
            return;
        }
        if let Ok(mut m) = self.idle.lock() {
            let list = m.entry(name.to_owned()).or_default();
            if list.len() < 8 {
                list.push(conn);
            }
        }
    }

    pub(super) fn writer(&self, name: &str) -> WriteLock {
        let mut writers = self
            .writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        WriteLock(writers.entry(name.to_owned()).or_default().clone())
    }

    /// Prepares a job running `work` on a connection to `name` with a
    /// deadline and the database's writer lock (for `work` to take when it
    /// writes).
    pub(super) fn run(
        self: Arc<Self>,
        name: &str,
        statements: Vec<String>,
        work: impl FnOnce(&mut rusqlite::Connection, Instant, &WriteLock) -> Result<Value, String>
        + Send
        + 'static,
    ) -> Result<SqlJob, HostError> {
        let name = name.to_owned();
        self.path(&name)?;
        Ok(SqlJob::new(move || {
            guard::clear_denial();
            let mut conn = self.open(&name, &statements)?;
            let writer = self.writer(&name);
            let deadline = Instant::now() + STATEMENT_TIMEOUT;
            conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
            let result = work(&mut conn, deadline, &writer);
            conn.progress_handler(0, None::<fn() -> bool>);
            self.release(&name, conn);
            result.map_err(|m| refused(&name, m))
        }))
    }
}

impl SqlDatabases {
    /// Runs `work` on an idle connection to `name` right here, stopping it
    /// once it has run for [`INLINE_BUDGET`]. `None` when there is no idle
    /// connection (opening one is file I/O), when `work` declines (returns
    /// `None`), fails, or would wait for a lock, or when the budget ran out:
    /// the caller then runs the job the blocking way.
    pub(super) fn try_inline(
        &self,
        name: &str,
        work: impl FnOnce(&rusqlite::Connection, Instant) -> Option<Result<Value, String>>,
    ) -> Option<Value> {
        let conn = self.idle.lock().ok()?.get_mut(name)?.pop()?;
        let started = Instant::now();
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        // SQLite calls this every 1000 virtual-machine steps (a few µs).
        conn.progress_handler(
            1_000,
            Some(move || {
                let over = started.elapsed() > INLINE_BUDGET;
                flag.store(over, Ordering::Relaxed);
                over
            }),
        );
        // No waiting for a lock here either: SQLite's busy handler sleeps,
        // and this is an async worker. A busy database is an error now, and
        // any error sends the job the blocking way, which waits as it should
        // (and reports a real error the same as always).
        let _ = conn.busy_timeout(std::time::Duration::ZERO);
        let result = work(&conn, started + STATEMENT_TIMEOUT);
        conn.progress_handler(0, None::<fn() -> bool>);
        let restored = conn.busy_timeout(STATEMENT_TIMEOUT).is_ok();
        if restored {
            self.release(name, conn);
        }
        if stopped.load(Ordering::Relaxed) {
            return None;
        }
        result?.ok()
    }
}

/// The guest's error for a failed job on `name`: `sql_denied` when the
/// guard refused a statement (the message says what and why), else
/// `sql_error`.
fn refused(name: &str, message: String) -> HostError {
    let (message, denied) = guard::explain(message);
    if !denied {
        return HostError::new("sql_error", format!("database `{name}`: {message}"));
    }
    tracing::warn!(database = name, "sql statement refused: {message}");
    HostError::new("sql_denied", format!("database `{name}`: {message}"))
}

/// Whether any of `statements` writes when run on an empty database: whether
/// a job may create database `name`, which does not exist yet. A statement
/// that reads, or names a table that does not exist, is no reason to make a
/// file. Prepared on a private in-memory database under the same rules, so a
/// refused statement is reported as such.
fn writes_to_empty(name: &str, statements: &[String]) -> Result<bool, HostError> {
    let conn = rusqlite::Connection::open_in_memory()
        .and_then(|c| guard::harden(&c).map(|()| c))
        .map_err(|e| HostError::new("internal", format!("an in-memory database: {e}")))?;
    let mut writes = false;
    for sql in statements {
        match conn.prepare(sql) {
            Ok(st) => writes |= !st.readonly(),
            Err(e) => {
                let (message, denied) = guard::explain(e.to_string());
                if denied {
                    return Err(HostError::new(
                        "sql_denied",
                        format!("database `{name}`: {message}"),
                    ));
                }
            }
        }
    }
    Ok(writes)
}

/// 1 to 64 letters, digits, `-` and `_`: safe as a file name.
pub(super) fn valid_name(name: &str, what: &str) -> Result<(), HostError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(HostError::invalid_argument(format!(
            "`{name}` is not a valid {what}: use 1 to 64 letters, digits, `-` and `_`"
        )))
    }
}
