//! Helpers shared by the end-to-end tests (`tests/all`) and the demo
//! (`examples/demo.rs`).

use buntime::capabilities::Capability;
use buntime::wasm::{HostError, HostFunction, ResultEncoding};

/// `reverse` (raw result, capability `reverse`) and `stamp` (envelope result,
/// capability `stamp`): the host functions the `basics` fixtures import.
pub fn test_host_functions() -> Vec<HostFunction> {
    vec![
        HostFunction::new(
            "reverse",
            Capability::new("reverse"),
            1,
            ResultEncoding::Raw,
            |state, args| {
                let result = state
                    .block(args[0])
                    .map(|b| Some(b.iter().rev().copied().collect::<Vec<u8>>()))
                    .map_err(|e| HostError::invalid_argument(e.to_string()));
                Box::pin(async move { result })
            },
        ),
        HostFunction::new(
            "stamp",
            Capability::new("stamp"),
            1,
            ResultEncoding::Envelope,
            |state, args| {
                let result = state
                    .block(args[0])
                    .map(|b| {
                        Some(
                            serde_json::to_vec(&format!("{}!", String::from_utf8_lossy(b)))
                                .unwrap_or_default(),
                        )
                    })
                    .map_err(|e| HostError::invalid_argument(e.to_string()));
                Box::pin(async move { result })
            },
        ),
    ]
}
