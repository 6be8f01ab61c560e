//! Names and envelopes of the ABI between Buntime and its guests.

use serde::{Deserialize, Serialize};

/// The version of the Buntime ABI this PDK speaks: the host functions, hook
/// exports and message shapes of `docs/abi.md`. A host refuses a module that
/// declares a newer version than its own; a module that declares none is
/// taken as version 1.
pub const ABI_VERSION: u32 = 2;

/// The custom section in which a guest declares [`ABI_VERSION`]: one or more
/// 4-byte little-endian records (a linker concatenates the records of every
/// object that declares one); the highest counts.
pub const ABI_SECTION: &str = "buntime_abi";

/// The Extism ABI's import module (memory, input, output, config, vars, log, HTTP).
pub const ENV_NAMESPACE: &str = "extism:host/env";
/// The import module of Buntime's own host functions.
pub const USER_NAMESPACE: &str = "extism:host/user";

/// The export an app (or a plugin's routes) implements: a request head in, a
/// response head out.
pub const EXPORT_HANDLE: &str = "handle";

/// `buntime_request_body() -> handle`: the request body as a memory block
/// (handle 0 when the body is empty).
pub const FN_REQUEST_BODY: &str = "buntime_request_body";
/// `buntime_request_client() -> handle`: the request's client as JSON
/// ([`crate::Client`]; handle 0 for a request served in process).
pub const FN_REQUEST_CLIENT: &str = "buntime_request_client";
/// `buntime_response_body_write(handle) -> 0`: appends a block to the response body.
pub const FN_RESPONSE_BODY_WRITE: &str = "buntime_response_body_write";

/// The JSON envelope of a capability-gated host function's result:
/// `{"ok": value}` or `{"error": {"code": "...", "message": "..."}}`.
///
/// ```
/// use buntime_pdk::abi::HostResult;
/// let r: HostResult<u32> = serde_json::from_str(r#"{"ok":3}"#).unwrap();
/// assert_eq!(r.into_result().unwrap(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostResult<T> {
    /// Success.
    Ok(T),
    /// Failure, including a capability denial.
    Error(HostErrorBody),
}

impl<T> HostResult<T> {
    /// Converts into a `Result`.
    pub fn into_result(self) -> Result<T, HostErrorBody> {
        match self {
            HostResult::Ok(v) => Ok(v),
            HostResult::Error(e) => Err(e),
        }
    }
}

/// A host function's error as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostErrorBody {
    /// Stable code: `capability_denied`, `invalid_argument`, `not_found`, …
    pub code: String,
    /// What happened and, for denials, which grant to add.
    pub message: String,
}

impl std::fmt::Display for HostErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for HostErrorBody {}

/// What `state_take` answers: a token bucket's verdict
/// (`docs/capabilities.md` §6).
///
/// ```
/// use buntime_pdk::abi::Taken;
/// let t: Taken = serde_json::from_str(
///     r#"{"allowed":true,"remaining":4,"resetMs":1000,"retryAfterMs":0}"#,
/// ).unwrap();
/// assert!(t.allowed && t.remaining == 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Taken {
    /// Whether the tokens were taken.
    pub allowed: bool,
    /// Whole tokens left afterwards.
    pub remaining: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
    /// Milliseconds until the asked tokens are there (0 when allowed).
    pub retry_after_ms: u64,
}
