//! HTTP bodies for app and plugin calls, without base64 and without copies the
//! guest did not ask for.
//!
//! The request head travels as the call's JSON input; the body stays in the
//! host as [`RequestBody`] until the guest calls `buntime_request_body`. A
//! binary response body is appended with `buntime_response_body_write` into
//! [`ResponseBody`]; the response head is the call's JSON output. Both
//! functions are part of the HTTP protocol itself and need no grant.

use bytes::{Bytes, BytesMut};

use super::super::host_fn::{HostError, HostFunction, ResultEncoding};

/// The request body of the current call (set by the caller as an extension).
#[derive(Debug, Clone, Default)]
pub struct RequestBody(pub Bytes);

/// The response body written by the guest during the current call.
#[derive(Debug, Clone, Default)]
pub struct ResponseBody(pub BytesMut);

/// `buntime_request_body() -> handle` and `buntime_response_body_write(handle) -> 0`.
pub fn body_functions() -> Vec<HostFunction> {
    vec![
        HostFunction::ungated_sync(
            "buntime_request_body",
            0,
            ResultEncoding::Raw,
            |state, _| {
                let body = state
                    .extensions
                    .get::<RequestBody>()
                    .map(|b| b.0.to_vec())
                    .filter(|b| !b.is_empty());
                Ok(body)
            },
        ),
        HostFunction::ungated_sync(
            "buntime_response_body_write",
            1,
            ResultEncoding::Raw,
            |state, args| match state.block(args[0]) {
                Ok(chunk) => {
                    let chunk = chunk.to_vec();
                    state
                        .extensions
                        .get_or_insert_default::<ResponseBody>()
                        .0
                        .extend_from_slice(&chunk);
                    Ok(None)
                }
                Err(e) => Err(HostError::invalid_argument(e.to_string())),
            },
        ),
    ]
}
