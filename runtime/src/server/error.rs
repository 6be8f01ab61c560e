//! JSON errors: `{"code", "message", "requestId"}` with one status per kind,
//! and how much of an internal failure a client may see.
//!
//! Every client-facing error is an [`ApiError`]; its body is written in one
//! place, [`render`] (called by the request-id layer, which knows the id).
//! A message marked internal — trap text, module and config paths, SQLite and
//! I/O messages; by default every 5xx — is shown as written outside
//! production and replaced by a generic one in production
//! ([`ErrorDetail::Hidden`]), the detail then going to the log with the
//! request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::Environment;

/// Declares [`ErrorKind`] from one table: variant, status, code, meaning.
macro_rules! error_kinds {
    ($( $(#[doc = $doc:literal])+ $variant:ident = ($status:ident, $code:literal), )+) => {
        /// Every kind of error the server answers itself, each with one
        /// status and one stable code (the table in
        /// `docs/configuration.md#errors` lists them all).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl ErrorKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant),+];

            /// The HTTP status answered.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(Self::$variant => StatusCode::$status,)+
                }
            }

            /// The stable machine-readable code, e.g. `APP_NOT_FOUND`.
            pub const fn code(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)+
                }
            }
        }
    };
}

error_kinds! {
    /// No route, app file or static file at the path.
    NotFound = (NOT_FOUND, "NOT_FOUND"),
    /// The route does not answer this method.
    MethodNotAllowed = (METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
    /// No app of that name.
    AppNotFound = (NOT_FOUND, "APP_NOT_FOUND"),
    /// The app exists, no installed version matches the range.
    VersionNotFound = (NOT_FOUND, "VERSION_NOT_FOUND"),
    /// The `@range` of the path is not an npm-style semver range.
    BadVersionRange = (BAD_REQUEST, "BAD_VERSION_RANGE"),
    /// The app version's `worker.jsonc` does not parse or validate.
    AppConfigInvalid = (INTERNAL_SERVER_ERROR, "APP_CONFIG_INVALID"),
    /// The app version has neither `index.html` nor a `.wasm` module.
    AppEmpty = (INTERNAL_SERVER_ERROR, "APP_EMPTY"),
    /// The app's module failed to load (read, compile or link).
    AppLoadFailed = (INTERNAL_SERVER_ERROR, "APP_LOAD_FAILED"),
    /// Every instance of the app is busy and its queue is full (or the call
    /// was preempted to keep the server responsive); retry.
    AppBusy = (SERVICE_UNAVAILABLE, "APP_BUSY"),
    /// The app's call ran past its `timeout`.
    AppTimeout = (GATEWAY_TIMEOUT, "APP_TIMEOUT"),
    /// The app's call trapped or returned an error.
    AppFailed = (BAD_GATEWAY, "APP_FAILED"),
    /// The app answered with a response the server will not send.
    AppBadResponse = (BAD_GATEWAY, "APP_BAD_RESPONSE"),
    /// The app's response body is over its cap.
    ResponseTooLarge = (BAD_GATEWAY, "RESPONSE_TOO_LARGE"),
    /// The request body is over the route's cap.
    PayloadTooLarge = (PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
    /// The request body did not arrive within the body read timeout.
    BodyTimeout = (REQUEST_TIMEOUT, "BODY_TIMEOUT"),
    /// The request body could not be read.
    BodyUnreadable = (BAD_REQUEST, "BODY_UNREADABLE"),
    /// An upload could not be spooled to disk.
    UploadFailed = (INTERNAL_SERVER_ERROR, "UPLOAD_FAILED"),
    /// The route needs an API key and none came.
    ApiKeyRequired = (UNAUTHORIZED, "API_KEY_REQUIRED"),
    /// The API key is unknown, revoked or expired.
    ApiKeyInvalid = (UNAUTHORIZED, "API_KEY_INVALID"),
    /// The key's role lacks the route's permission.
    PermissionDenied = (FORBIDDEN, "PERMISSION_DENIED"),
    /// A mutating request from another site without a key header.
    CrossSiteRequest = (FORBIDDEN, "CROSS_SITE_REQUEST"),
    /// Too many invalid API keys from this client address; retry later.
    TooManyKeyAttempts = (TOO_MANY_REQUESTS, "TOO_MANY_KEY_ATTEMPTS"),
    /// A key request (`POST /_/api/keys`) that does not validate.
    InvalidKeyRequest = (BAD_REQUEST, "INVALID_KEY_REQUEST"),
    /// No key with that id.
    KeyNotFound = (NOT_FOUND, "KEY_NOT_FOUND"),
    /// The key store could not be read or written.
    KeyStoreFailed = (INTERNAL_SERVER_ERROR, "KEY_STORE_FAILED"),
    /// No plugin of that name.
    PluginNotFound = (NOT_FOUND, "PLUGIN_NOT_FOUND"),
    /// Other loaded plugins depend on the plugin.
    PluginHasDependents = (CONFLICT, "PLUGIN_HAS_DEPENDENTS"),
    /// `buntime.jsonc` does not parse or validate.
    ConfigInvalid = (UNPROCESSABLE_ENTITY, "CONFIG_INVALID"),
    /// A plugin failed to load.
    PluginLoadFailed = (UNPROCESSABLE_ENTITY, "PLUGIN_LOAD_FAILED"),
    /// A plugin's hook trapped, failed or answered something malformed.
    PluginFailed = (BAD_GATEWAY, "PLUGIN_FAILED"),
    /// A plugin's hook ran past its timeout; retry.
    PluginTimeout = (SERVICE_UNAVAILABLE, "PLUGIN_TIMEOUT"),
    /// Every instance of the plugin is busy past its queue wait; retry.
    PluginBusy = (SERVICE_UNAVAILABLE, "PLUGIN_BUSY"),
    /// The plugin is being unloaded or replaced; retry.
    PluginDraining = (SERVICE_UNAVAILABLE, "PLUGIN_DRAINING"),
    /// A plugin streamed a topic outside its `events` subscribe grant.
    CapabilityDenied = (FORBIDDEN, "CAPABILITY_DENIED"),
    /// This client has too many event streams open.
    TooManyStreams = (TOO_MANY_REQUESTS, "TOO_MANY_STREAMS"),
    /// The server has as many event streams open as it allows.
    StreamsExhausted = (SERVICE_UNAVAILABLE, "STREAMS_EXHAUSTED"),
    /// A proxy route that is not public matched a request without an
    /// identity (no authentication plugin set one).
    AuthenticationRequired = (UNAUTHORIZED, "AUTHENTICATION_REQUIRED"),
    /// A proxy route matched a path with `.` or `..` segments, which is
    /// never forwarded.
    InvalidPath = (BAD_REQUEST, "INVALID_PATH"),
    /// A plugin delegated to an upstream its `upstream` grant does not allow.
    UpstreamDenied = (BAD_GATEWAY, "UPSTREAM_DENIED"),
    /// The upstream could not be connected to.
    UpstreamUnavailable = (BAD_GATEWAY, "UPSTREAM_UNAVAILABLE"),
    /// The upstream gave no valid answer.
    UpstreamFailed = (BAD_GATEWAY, "UPSTREAM_FAILED"),
    /// Connecting to the upstream, or its answer, took longer than allowed.
    UpstreamTimeout = (GATEWAY_TIMEOUT, "UPSTREAM_TIMEOUT"),
    /// An HTTP/2 extended `CONNECT` for a protocol other than `websocket`.
    ProtocolNotSupported = (NOT_IMPLEMENTED, "PROTOCOL_NOT_SUPPORTED"),
    /// A WebSocket over HTTP/2 was answered 2xx without being relayed to an
    /// upstream.
    WebSocketNotRelayed = (BAD_REQUEST, "WEBSOCKET_NOT_RELAYED"),
    /// Anything else that went wrong inside the server.
    Internal = (INTERNAL_SERVER_ERROR, "INTERNAL"),
}

/// An error answered to a client.
///
/// ```
/// use buntime::server::{ApiError, ErrorKind};
///
/// let err = ApiError::new(ErrorKind::AppNotFound, "no app `shop`; try /_/api/apps");
/// assert_eq!(err.kind.status(), 404);
/// assert_eq!(err.kind.code(), "APP_NOT_FOUND");
/// ```
#[derive(Debug, Clone)]
pub struct ApiError {
    /// What kind: the status and the code.
    pub kind: ErrorKind,
    /// What happened and, where useful, what exists or how to fix it.
    pub message: String,
    /// Seconds after which a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
    /// Whether `message` may carry server internals (paths, trap text,
    /// database messages), so production hides it.
    pub internal: bool,
}

impl ApiError {
    /// Builds an error; a 5xx counts as internal (see [`ApiError::public`]).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
            internal: kind.status().is_server_error(),
        }
    }

    /// Marks the message as safe to show in production: written by the host
    /// from settings and names only, with no paths or raw internals.
    pub fn public(mut self) -> Self {
        self.internal = false;
        self
    }

    /// Marks the message as internal (hidden in production) whatever the
    /// status, for client errors whose detail quotes files or guest failures.
    pub fn internal(mut self) -> Self {
        self.internal = true;
        self
    }

    /// Adds `Retry-After: seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

/// How much of an internal failure a client is told; set once at start from
/// `RUNTIME_ENV` (or `NODE_ENV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorDetail {
    /// Messages as written, internals included (development, staging, test).
    #[default]
    Full,
    /// Internal messages replaced by a generic one with the code and the
    /// request id; the detail is logged (production).
    Hidden,
}

impl ErrorDetail {
    /// [`ErrorDetail::Hidden`] in production, [`ErrorDetail::Full`] elsewhere.
    pub fn for_environment(env: Environment) -> Self {
        match env {
            Environment::Production => Self::Hidden,
            _ => Self::Full,
        }
    }
}

/// The request id, carried in request extensions so errors can echo it.
///
/// It is always visible ASCII (a client's id is kept only when it is):
///
/// ```
/// use buntime::server::RequestId;
/// use http::HeaderValue;
///
/// let id = RequestId::new(HeaderValue::from_static("req-1"));
/// assert_eq!(id.as_str(), "req-1");
/// ```
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id whose header value is `value`.
    pub fn new(value: HeaderValue) -> Self {
        Self(value)
    }

    /// The id as text ("" for a value that is not visible ASCII, which
    /// the request-id layer never sets).
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    /// The status and headers, with no body yet: the request-id layer finds
    /// the error in the response's extensions and writes the body once,
    /// with the id (`render`). Every response passes that layer (the core
    /// router's and the service's), so none goes out bodiless.
    fn into_response(self) -> Response {
        let mut res = Response::new(axum::body::Body::empty());
        *res.status_mut() = self.kind.status();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res.extensions_mut().insert(self);
        res
    }
}

/// The client-facing body of `err`, answered with `status` (the error's own,
/// or the one a plugin's `on_response` chose). With [`ErrorDetail::Hidden`]
/// an internal message is replaced by a generic one and logged with the
/// request id.
pub(crate) fn render(
    err: &ApiError,
    status: StatusCode,
    request_id: &str,
    detail: ErrorDetail,
) -> Response {
    let code = err.kind.code();
    let message = if err.internal && detail == ErrorDetail::Hidden {
        tracing::warn!(
            request_id,
            code,
            status = err.kind.status().as_u16(),
            detail = %err.message,
            "request failed (detail hidden from the client in production)"
        );
        generic(err.kind, request_id)
    } else {
        err.message.clone()
    };
    let body = serde_json::json!({ "code": code, "message": message, "requestId": request_id });
    (status, axum::Json(body)).into_response()
}

/// The message shown instead of an internal one.
fn generic(kind: ErrorKind, request_id: &str) -> String {
    let what = kind
        .status()
        .canonical_reason()
        .unwrap_or("error")
        .to_lowercase();
    let code = kind.code();
    if request_id.is_empty() {
        format!("{what} ({code}); the server log has the details")
    } else {
        format!("{what} ({code}); the server log has the details under request id {request_id}")
    }
}

/// A failed plugin call as an answer: 503 with `Retry-After` for a timeout,
/// an instance pool busy past its queue wait, or a plugin being drained;
/// 502 otherwise; all naming the plugin. Shared by the chain and the plugin
/// routes.
pub(super) fn hook_error_response(e: &crate::plugins::HookError) -> Response {
    use crate::plugins::HookFailure;
    use crate::wasm::CallError;
    let unavailable = |kind| {
        ApiError::new(kind, e.to_string())
            .public()
            .retry_after(1)
            .into_response()
    };
    match e.failure {
        HookFailure::Call(CallError::Timeout(_)) => unavailable(ErrorKind::PluginTimeout),
        HookFailure::Call(CallError::Busy(_)) => unavailable(ErrorKind::PluginBusy),
        HookFailure::Call(CallError::Draining) => unavailable(ErrorKind::PluginDraining),
        _ => bad_gateway(e),
    }
}

/// 502 naming the plugin. A malformed answer is described by the host from
/// the answer itself and shown as is; a trap or a guest error may carry
/// internals, so production hides it.
pub(super) fn bad_gateway(e: &crate::plugins::HookError) -> Response {
    let err = ApiError::new(ErrorKind::PluginFailed, e.to_string());
    match e.failure {
        crate::plugins::HookFailure::Malformed(_) => err.public(),
        _ => err,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{HookError, HookFailure};
    use crate::wasm::CallError;
    use std::time::Duration;

    #[test]
    fn a_busy_or_draining_plugin_is_a_503_to_retry_not_a_timeout() {
        for (failure, kind) in [
            (
                HookFailure::Call(CallError::Timeout(Duration::from_secs(1))),
                ErrorKind::PluginTimeout,
            ),
            (
                HookFailure::Call(CallError::Busy(Duration::from_secs(1))),
                ErrorKind::PluginBusy,
            ),
            (
                HookFailure::Call(CallError::Draining),
                ErrorKind::PluginDraining,
            ),
        ] {
            let res = hook_error_response(&HookError {
                plugin: "p".into(),
                hook: "on_request".into(),
                failure,
            });
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{kind:?}");
            assert_eq!(res.headers()["retry-after"], "1", "{kind:?}");
            let err = res.extensions().get::<ApiError>().expect("an ApiError");
            assert_eq!(err.kind, kind);
        }
        let failed = hook_error_response(&HookError {
            plugin: "p".into(),
            hook: "on_request".into(),
            failure: HookFailure::Call(CallError::Trap("unreachable".into())),
        });
        assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    }

    async fn body(res: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn production_hides_internal_messages_only() {
        let trap = ApiError::new(ErrorKind::AppFailed, "/srv/apps/x/app.wasm: wasm backtrace");
        let status = trap.kind.status();
        let full = body(render(&trap, status, "id-1", ErrorDetail::Full)).await;
        assert_eq!(full["message"], "/srv/apps/x/app.wasm: wasm backtrace");
        let hidden = body(render(&trap, status, "id-1", ErrorDetail::Hidden)).await;
        let text = hidden["message"].as_str().unwrap_or_default();
        assert!(!text.contains("/srv") && text.contains("id-1"), "{text}");
        assert_eq!(hidden["code"], "APP_FAILED");
        assert_eq!(hidden["requestId"], "id-1");
        let busy = ApiError::new(ErrorKind::AppBusy, "retry").public();
        let shown = body(render(
            &busy,
            busy.kind.status(),
            "id-2",
            ErrorDetail::Hidden,
        ))
        .await;
        assert_eq!(shown["message"], "retry");
        let missing = ApiError::new(ErrorKind::NotFound, "`/x` was not found");
        assert!(!missing.internal);
    }

    #[tokio::test]
    async fn the_body_is_written_once_by_the_request_id_layer() {
        let res = ApiError::new(ErrorKind::AppTimeout, "slow")
            .retry_after(3)
            .into_response();
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(res.headers()["retry-after"], "3");
        assert_eq!(res.headers()["content-type"], "application/json");
        let err = res.extensions().get::<ApiError>().cloned().expect("error");
        assert!(body_bytes(res).await.is_empty(), "no body before the layer");
        let rendered = body(render(&err, err.kind.status(), "id-3", ErrorDetail::Full)).await;
        assert_eq!(
            rendered,
            serde_json::json!({ "code": "APP_TIMEOUT", "message": "slow", "requestId": "id-3" })
        );
    }

    async fn body_bytes(res: Response) -> bytes::Bytes {
        axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .expect("body")
    }

    /// Each code is one kind's, and `docs/configuration.md` lists each with
    /// its status.
    #[test]
    fn every_code_is_unique_and_documented() {
        let docs = include_str!("../../../docs/configuration.md");
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(seen.insert(kind.code()), "{} twice", kind.code());
            let row = format!("| `{}` | {} |", kind.code(), kind.status().as_u16());
            assert!(
                docs.contains(&row),
                "docs/configuration.md lacks the row `{row}`"
            );
        }
    }
}
