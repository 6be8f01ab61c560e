//! Configuration: environment variables, `buntime.jsonc` and the per-app
//! `worker.jsonc`.
//!
//! Every error names the file (or variable), the field and what is allowed.

mod access;
mod ceiling;
mod env;
mod limits;
mod public_routes;
mod runtime_file;
mod traces;
mod units;
mod worker;

use std::fmt;
use std::path::{Path, PathBuf};

pub use access::{
    ATTEMPT_WINDOW, FAILED_ATTEMPTS, MAX_ATTEMPT_WINDOW, MAX_FAILED_ATTEMPTS, Secret,
    TrustedProxies,
};
pub use ceiling::{AppCeiling, LIMITS, Limit, Unit};
pub use env::{Environment, RuntimeEnv, VARIABLES, unknown_variables};
pub use limits::{
    DEFAULT_MAX_STREAMS, DEFAULT_MAX_STREAMS_PER_CLIENT, DEFAULT_MAX_TENANTS, StreamLimits,
};
pub use public_routes::PublicRoutes;
pub use runtime_file::{PluginEntry, RUNTIME_CONFIG_FILE, RuntimeFile};
pub use traces::{SamplerChoice, TraceConfig};
pub use units::{duration_from_secs, parse_duration, parse_size};
pub use worker::{
    AppConfig, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_MAX_REQUESTS,
    DEFAULT_MAX_RESPONSE_BODY, DEFAULT_MEMORY, DEFAULT_TIMEOUT, LOW_MEMORY, MAX_BODY_CEILING,
    WORKER_CONFIG_FILE,
};
pub(crate) use worker::{duration_value, json5_message, response_size_value, size_value};

/// A configuration value that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file or environment variable.
    pub source: PathBuf,
    /// The field (empty for the whole file).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// Builds an error about `field` of `source`.
    pub fn new(source: &Path, field: &str, message: impl Into<String>) -> Self {
        Self {
            source: source.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.source.display(), self.message)
        } else {
            write!(
                f,
                "{}: `{}`: {}",
                self.source.display(),
                self.field,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}
