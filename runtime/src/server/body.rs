//! Reading a request body whole, within a size limit and the body read
//! timeout, with one answer per way it can fail.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;

use super::{ApiError, ErrorKind};

/// Why a request body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// It is longer than the limit (the caller says which setting).
    TooLarge,
    /// The client stopped sending it for longer than the body read timeout.
    TimedOut,
    /// The connection failed while reading it.
    Failed(String),
}

impl BodyError {
    /// The answer for a failure other than [`BodyError::TooLarge`], whose
    /// message names a limit only the caller knows.
    pub(crate) fn into_response(self, too_large: impl FnOnce() -> Response) -> Response {
        match self {
            BodyError::TooLarge => too_large(),
            BodyError::TimedOut => ApiError::new(ErrorKind::BodyTimeout, "the request body stopped arriving for longer than the server waits (RUNTIME_BODY_TIMEOUT)",
            )
            .into_response(),
            BodyError::Failed(detail) => ApiError::new(ErrorKind::BodyUnreadable, format!("the request body could not be read: {detail}"),
            )
            .into_response(),
        }
    }
}

/// Reads `body` whole, refusing more than `limit` bytes.
pub(crate) async fn collect(body: Body, limit: u64) -> Result<Bytes, BodyError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(classify(&*e)),
    }
}

pub(crate) fn classify(e: &(dyn std::error::Error + 'static)) -> BodyError {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err.is::<http_body_util::LengthLimitError>() {
            return BodyError::TooLarge;
        }
        if err.is::<tower_http::timeout::TimeoutError>() {
            return BodyError::TimedOut;
        }
        cause = err.source();
    }
    BodyError::Failed(e.to_string())
}
