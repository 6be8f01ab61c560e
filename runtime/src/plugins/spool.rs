//! `spoolUploads`: plugin routes whose request body the host streams to a
//! file instead of handing it to the guest.
//!
//! ```jsonc
//! "spoolUploads": {
//!   "routes": { "POST": ["/api/apps/*/*"] },  // as `publicRoutes`
//!   "dir": ".deployments",                    // below the first `fs` root
//!   "maxSize": "1gb"
//! }
//! ```
//!
//! A matching request's body is written frame by frame to a new file in
//! `dir` below the plugin's first `fs` root (so the plugin must hold an `fs`
//! grant) and capped while it arrives; the guest gets the file's path
//! instead of the bytes (`server::upload_spool`). A body the size of an
//! archive never enters the guest's memory, and never sits whole in the
//! host's.

use serde::Deserialize;
use serde_json::Value;

use crate::config::PublicRoutes;

/// Ceiling of `spoolUploads.maxSize`: the largest file `fs` appends to.
pub const MAX_SPOOL_BYTES: u64 = crate::capabilities::fs::MAX_FILE_BYTES;
/// `spoolUploads.maxSize` when not given.
pub const DEFAULT_SPOOL_BYTES: u64 = 256 << 20;

/// A parsed `spoolUploads`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolUploads {
    /// The routes (relative to the base) whose bodies are spooled.
    pub routes: PublicRoutes,
    /// The directory below the first `fs` root, relative and checked.
    pub dir: String,
    /// The most bytes one body may have.
    pub max_size: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    routes: Value,
    dir: String,
    max_size: Option<Value>,
}

impl SpoolUploads {
    /// Parses the manifest's value; the error says what is wrong.
    ///
    /// ```
    /// use buntime::plugins::SpoolUploads;
    /// let s = SpoolUploads::parse(&serde_json::json!({
    ///     "routes": {"POST": ["/api/apps/*/*"]}, "dir": ".uploads", "maxSize": "1mb"
    /// })).unwrap();
    /// assert!(s.routes.matches("POST", "/api/apps/a/1.0.0"));
    /// assert_eq!(s.max_size, 1 << 20);
    /// assert!(SpoolUploads::parse(&serde_json::json!({"routes": [], "dir": "../x"})).is_err());
    /// ```
    pub fn parse(value: &Value) -> Result<Self, String> {
        let raw: Raw = serde_json::from_value(value.clone()).map_err(|e| {
            format!(
                "{e}; expected {{\"routes\": {{\"POST\": [\"/path/*\"]}}, \"dir\": \".uploads\", \"maxSize\": \"1gb\"}}"
            )
        })?;
        let routes = PublicRoutes::parse(&raw.routes).map_err(|m| format!("routes: {m}"))?;
        let rel = crate::capabilities::fs_relative(&raw.dir).map_err(|e| format!("dir: {e}"))?;
        if rel.as_os_str().is_empty() {
            return Err("dir: name a directory below the fs root, e.g. \".uploads\"".into());
        }
        let max_size = match raw.max_size {
            None => DEFAULT_SPOOL_BYTES,
            Some(v) => crate::config::size_value(&v).map_err(|m| format!("maxSize: {m}"))?,
        };
        if max_size == 0 || max_size > MAX_SPOOL_BYTES {
            return Err(format!(
                "maxSize: must be 1 byte to 1gb, got {max_size} bytes"
            ));
        }
        Ok(Self {
            routes,
            dir: rel.to_string_lossy().into_owned(),
            max_size,
        })
    }
}
