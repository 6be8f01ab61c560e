//! The operator's caps on shared resources that several layers read: the
//! configuration parses them from the environment, the capabilities enforce
//! them.

/// Tenants per database unless `RUNTIME_MAX_TENANTS` says otherwise.
pub const DEFAULT_MAX_TENANTS: usize = 1000;

/// Open streams allowed in total unless `RUNTIME_MAX_STREAMS` says otherwise.
pub const DEFAULT_MAX_STREAMS: usize = 1024;
/// Open streams allowed per client address unless
/// `RUNTIME_MAX_STREAMS_PER_CLIENT` says otherwise.
pub const DEFAULT_MAX_STREAMS_PER_CLIENT: usize = 32;

/// Caps on open event streams (plugin streams and `/_/sse`). Each holds a
/// connection and a task, and wakes on every published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Most streams open at once.
    pub total: usize,
    /// Most streams open at once from one client address.
    pub per_client: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            total: DEFAULT_MAX_STREAMS,
            per_client: DEFAULT_MAX_STREAMS_PER_CLIENT,
        }
    }
}
