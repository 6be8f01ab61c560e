//! Where a `sql_*` call runs: a quick read on the asking async worker, the
//! rest off the scheduler.

use std::time::Duration;

use serde_json::Value;

use crate::wasm::HostError;

/// The work of one `sql_*` call.
pub(super) struct SqlJob {
    /// A first attempt on the calling async worker, for reads that finish
    /// within [`INLINE_BUDGET`]; `None` from it means "run `full`".
    inline: Option<InlineAttempt>,
    /// The whole job, run where blocking is allowed.
    full: Box<dyn FnOnce() -> Result<Value, HostError> + Send>,
}

/// See [`SqlJob::inline`].
pub(super) type InlineAttempt = Box<dyn FnOnce() -> Option<Value> + Send>;

impl SqlJob {
    pub(super) fn new(full: impl FnOnce() -> Result<Value, HostError> + Send + 'static) -> Self {
        Self {
            inline: None,
            full: Box::new(full),
        }
    }

    pub(super) fn with_inline(mut self, attempt: InlineAttempt) -> Self {
        self.inline = Some(attempt);
        self
    }

    /// Runs the job here, synchronously (tests, and the blocking side).
    #[cfg(test)]
    pub(super) fn run_here(self) -> Result<Value, HostError> {
        (self.full)()
    }
}

/// How long a read may run on the async worker that asked for it before
/// it is stopped and run again where blocking is allowed. A point query takes
/// a few microseconds; handing a worker over to another thread and back
/// (`block_in_place`) costs tens of microseconds on small VMs, which made it
/// most of a keyval `get` (see `benches/benches/keyval.rs`). Reads have no
/// side effects, so the rerun is safe; the budget bounds how long a worker is
/// held (tokio's guidance: well under a millisecond between yields).
pub(super) const INLINE_BUDGET: Duration = Duration::from_micros(100);

/// Runs a database job: a quick read right here (see [`INLINE_BUDGET`]);
/// anything else off the async scheduler — on a multi-thread runtime with
/// `block_in_place`, which runs it on this thread after handing the worker's
/// other tasks to another one (no wake-up on the way in or out), elsewhere
/// on the blocking pool.
pub(super) async fn run_blocking(job: SqlJob) -> Result<Value, HostError> {
    if let Some(done) = job.inline.and_then(|attempt| attempt()) {
        return Ok(done);
    }
    let full = job.full;
    let handle = tokio::runtime::Handle::try_current();
    match handle.map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(full),
        _ => tokio::task::spawn_blocking(full)
            .await
            .map_err(|_| HostError::new("internal", "the database task was interrupted"))?,
    }
}
