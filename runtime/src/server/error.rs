//! JSON errors: `{"code", "message", "requestId"}` with one status per kind.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

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
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 404 with a code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

/// The request id, carried in request extensions so errors can echo it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        let mut res = (self.status, axum::Json(body)).into_response();
        // The request-id middleware adds `requestId` to the body.
        res.extensions_mut().insert(self.clone());
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}
