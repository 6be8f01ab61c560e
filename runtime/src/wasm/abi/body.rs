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

/// The most bytes [`ResponseBody`] may gather during the current call (set
/// by the caller as an extension, from `maxResponseBodySize`; absent, the
/// default of 10 MiB applies). A write past it is refused with `limit_exceeded`, appends nothing, and is recorded in
/// `refused` (the size the body would have had) so the caller answers 502
/// even if the guest ignores the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseBodyLimit {
    /// The limit, in bytes.
    pub max: u64,
    /// The size of the first refused write's would-be body.
    pub refused: Option<u64>,
}

impl ResponseBodyLimit {
    /// A limit of `max` bytes, nothing refused yet.
    pub fn new(max: u64) -> Self {
        Self { max, refused: None }
    }
}

/// The functions of the HTTP protocol itself: `buntime_request_body() ->
/// handle`, `buntime_response_body_write(handle) -> 0` and
/// `buntime_request_client() -> handle` ([`super::client_function`]).
pub fn body_functions() -> Vec<HostFunction> {
    vec![
        super::client_function(),
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
                    let written = state
                        .extensions
                        .get::<ResponseBody>()
                        .map_or(0, |b| b.0.len());
                    let total = (written + chunk.len()) as u64;
                    let max = state
                        .extensions
                        .get::<ResponseBodyLimit>()
                        .map_or(crate::config::DEFAULT_MAX_RESPONSE_BODY, |l| l.max);
                    if total > max {
                        state
                            .extensions
                            .get_or_insert_with(|| ResponseBodyLimit::new(max))
                            .refused
                            .get_or_insert(total);
                        return Err(HostError::new(
                            "limit_exceeded",
                            format!(
                                "the response body would be {total} bytes, over this module's limit of {max} bytes (`maxResponseBodySize`)"
                            ),
                        ));
                    }
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
