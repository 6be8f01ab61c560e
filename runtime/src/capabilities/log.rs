//! `log`: writing to the host's log.
//!
//! The Extism ABI's `log_*` functions are the implementation (see
//! `wasm/abi/log.rs`). Apps may always log; a plugin logs only when granted
//! `"log": true` — otherwise its messages are dropped, and each dropped call
//! counts as a denial.

use serde_json::Value;

use super::{Capability, CapabilitySpec, GrantContext, GrantValue, parse_flag};

/// The `log` capability.
pub(super) struct LogSpec;

impl CapabilitySpec for LogSpec {
    fn capability(&self) -> Capability {
        Capability::LOG
    }

    fn syntax(&self) -> &'static str {
        "\"log\": true"
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        parse_flag(declared)
    }
}
