//! Reading a capability call's arguments: the memory blocks the guest
//! passed, as bytes or as JSON. Every capability function starts here, so a
//! bad handle or malformed JSON is always the guest's `invalid_argument`,
//! with serde's account of what was wrong and where. [`to_json`] is the
//! other end: a result for the `{"ok": …}` envelope.

use serde::de::DeserializeOwned;

use crate::wasm::{HostError, HostState};

/// The bytes of the block `handle` the guest passed.
pub(crate) fn argument(state: &HostState, handle: u64) -> Result<&[u8], HostError> {
    state
        .block(handle)
        .map_err(|e| HostError::invalid_argument(e.to_string()))
}

/// `input` parsed as the JSON of `T`.
pub(crate) fn parse<T: DeserializeOwned>(input: &[u8]) -> Result<T, HostError> {
    serde_json::from_slice(input).map_err(|e| HostError::invalid_argument(e.to_string()))
}

/// The block `handle` parsed as the JSON of `T`.
pub(crate) fn json_argument<T: DeserializeOwned>(
    state: &HostState,
    handle: u64,
) -> Result<T, HostError> {
    parse(argument(state, handle)?)
}

/// `value` as the JSON of an envelope function's result.
pub(crate) fn to_json(value: impl serde::Serialize) -> Result<Option<Vec<u8>>, HostError> {
    serde_json::to_vec(&value)
        .map(Some)
        .map_err(|e| HostError::new("internal", e.to_string()))
}
