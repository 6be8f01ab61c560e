//! `clock`: the host's wall-clock time.

use serde_json::Value;

use super::{Capability, CapabilitySpec, GrantContext, GrantValue, parse_flag};
use crate::wasm::{HostFunction, ResultEncoding};

/// The `clock` capability.
pub(super) struct ClockSpec;

impl CapabilitySpec for ClockSpec {
    fn capability(&self) -> Capability {
        Capability::new("clock")
    }

    /// Shown in parse errors and in every denial's hint.
    fn syntax(&self) -> &'static str {
        "\"clock\": true"
    }

    /// The manifest's JSON (already narrowed) into the grant the functions
    /// read: `Ok(None)` = not granted, `Err` = a message for the load error.
    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        parse_flag(declared)
    }

    fn host_functions(&self) -> Vec<HostFunction> {
        // new_sync: it never waits, so guests that import only such
        // functions are called without a fiber (docs/engine.md §8). A
        // function that does I/O uses HostFunction::new and returns a future.
        vec![HostFunction::new_sync(
            "clock_now",
            Capability::new("clock"),
            0,                        // i64 parameters
            ResultEncoding::Envelope, // {"ok"} / {"error"}; the bytes must be JSON
            |_state, _args| {
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                Ok(Some(ms.to_string().into_bytes()))
            },
        )]
    }
}
