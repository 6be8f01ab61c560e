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

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `APP_NOT_FOUND`.
    pub code: &'static str,
    /// What happened and, where useful, what exists or how to fix it.
    pub message: String,
    /// Seconds after which a retry may succeed (503s).
    pub retry_after: Option<u32>,
    /// Whether `message` may carry server internals (paths, trap text,
    /// database messages), so production hides it.
    pub internal: bool,
}

impl ApiError {
    /// Builds an error; a 5xx counts as internal (see [`ApiError::public`]).
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            internal: status.is_server_error(),
        }
    }

    /// 404 with a code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
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
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl IntoResponse for ApiError {
    /// A placeholder that the request-id layer replaces through [`render`]
    /// (it finds the error in the response's extensions). Its body is the
    /// generic one, so a response that somehow missed the layer leaks nothing.
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": generic(self.status, self.code, "") });
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
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
    let message = if err.internal && detail == ErrorDetail::Hidden {
        tracing::warn!(
            request_id,
            code = err.code,
            status = err.status.as_u16(),
            detail = %err.message,
            "request failed (detail hidden from the client in production)"
        );
        generic(err.status, err.code, request_id)
    } else {
        err.message.clone()
    };
    let body = serde_json::json!({ "code": err.code, "message": message, "requestId": request_id });
    (status, axum::Json(body)).into_response()
}

/// The message shown instead of an internal one.
fn generic(status: StatusCode, code: &str, request_id: &str) -> String {
    let what = status.canonical_reason().unwrap_or("error").to_lowercase();
    if request_id.is_empty() {
        format!("{what} ({code}); the server log has the details")
    } else {
        format!("{what} ({code}); the server log has the details under request id {request_id}")
    }
}

/// The answers to a failed plugin call, shared by the chain and the plugin
/// routes.
/// A failed plugin call as an answer: 503 with `Retry-After` for a timeout,
/// an instance pool busy past its queue wait, or a plugin being drained;
/// 502 otherwise; all naming the plugin.
pub(super) fn hook_error_response(e: &crate::plugins::HookError) -> Response {
    use crate::plugins::HookFailure;
    let unavailable = |code| {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string()).public()
        }
        .into_response()
    };
    match e.failure {
        HookFailure::Timeout(_) => unavailable("PLUGIN_TIMEOUT"),
        HookFailure::Busy(_) => unavailable("PLUGIN_BUSY"),
        HookFailure::Draining(_) => unavailable("PLUGIN_DRAINING"),
        _ => bad_gateway(e),
    }
}

/// 502 naming the plugin. A malformed answer is described by the host from
/// the answer itself and shown as is; a trap or a guest error may carry
/// internals, so production hides it.
pub(super) fn bad_gateway(e: &crate::plugins::HookError) -> Response {
    let err = ApiError::new(StatusCode::BAD_GATEWAY, "PLUGIN_FAILED", e.to_string());
    match e.failure {
        crate::plugins::HookFailure::Malformed(_) => err.public(),
        _ => err,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use crate::plugins::{HookError, HookFailure};

    #[test]
    fn a_busy_or_draining_plugin_is_a_503_to_retry_not_a_timeout() {
        for (failure, code) in [
            (HookFailure::Timeout("t".into()), "PLUGIN_TIMEOUT"),
            (HookFailure::Busy("b".into()), "PLUGIN_BUSY"),
            (HookFailure::Draining("d".into()), "PLUGIN_DRAINING"),
        ] {
            let res = super::hook_error_response(&HookError {
                plugin: "p".into(),
                hook: "on_request".into(),
                failure,
            });
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
            assert_eq!(res.headers()["retry-after"], "1", "{code}");
            let err = res.extensions().get::<ApiError>().expect("an ApiError");
            assert_eq!(err.code, code);
        }
        let failed = super::hook_error_response(&HookError {
            plugin: "p".into(),
            hook: "on_request".into(),
            failure: HookFailure::Failed("trap".into()),
        });
        assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    }

    use super::*;

    async fn body(res: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn production_hides_internal_messages_only() {
        let trap = ApiError::new(
            StatusCode::BAD_GATEWAY,
            "APP_FAILED",
            "/srv/apps/x/app.wasm: wasm backtrace",
        );
        let full = body(render(&trap, trap.status, "id-1", ErrorDetail::Full)).await;
        assert_eq!(full["message"], "/srv/apps/x/app.wasm: wasm backtrace");
        let hidden = body(render(&trap, trap.status, "id-1", ErrorDetail::Hidden)).await;
        let text = hidden["message"].as_str().unwrap_or_default();
        assert!(!text.contains("/srv") && text.contains("id-1"), "{text}");
        assert_eq!(hidden["code"], "APP_FAILED");
        assert_eq!(hidden["requestId"], "id-1");
        let busy = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "APP_BUSY", "retry").public();
        let shown = body(render(&busy, busy.status, "id-2", ErrorDetail::Hidden)).await;
        assert_eq!(shown["message"], "retry");
        let missing = ApiError::not_found("NOT_FOUND", "`/x` was not found");
        assert!(!missing.internal);
    }
}
