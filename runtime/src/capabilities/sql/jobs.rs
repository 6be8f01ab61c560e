//! Where a `sql_*` call runs: a quick read right where the guest asked, the
//! rest after handing the async worker's other tasks to another thread
//! ([`HostState::block_off_worker`]).
//!
//! The call itself never waits on the scheduler: a statement is SQLite work
//! on this thread, bounded by its own deadline ([`super::STATEMENT_TIMEOUT`],
//! a progress handler). So the `sql_*` functions are sync host functions,
//! and a guest whose other imports do not wait either (the proxy, keyval and
//! database plugins) is called without a fiber (docs/engine.md §8).

use std::time::Duration;

use serde_json::Value;

use crate::wasm::{HostError, HostState};

/// The work of one `sql_*` call.
pub(super) struct SqlJob {
    /// A first attempt on the calling async worker, for reads that finish
    /// within [`INLINE_BUDGET`]; `None` from it means "run `full`".
    inline: Option<InlineAttempt>,
    /// The whole job, run where blocking is allowed.
    full: FullJob,
}

/// See [`SqlJob::full`].
pub(super) type FullJob = Box<dyn FnOnce() -> Result<Value, HostError> + Send>;

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

    /// The quick read right here (see [`INLINE_BUDGET`]) if the job has
    /// one and it finishes within the budget, else `blocking` running the
    /// whole job.
    pub(super) fn run(
        self,
        blocking: impl FnOnce(FullJob) -> Result<Value, HostError>,
    ) -> Result<Value, HostError> {
        match self.inline.and_then(|attempt| attempt()) {
            Some(done) => Ok(done),
            None => blocking(self.full),
        }
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

/// Runs a database job for a guest (`state`): the quick read right here,
/// anything else through [`HostState::block_off_worker`].
pub(super) fn run_now(state: &mut HostState, job: SqlJob) -> Result<Value, HostError> {
    job.run(|full| state.block_off_worker(full))
}
