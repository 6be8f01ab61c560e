//! Ends a sampled request's server span when its response body ends, not
//! when the head is ready: a streamed body (a large file, a server-sent
//! event stream, a proxied download) is part of the request's time.
//!
//! The body is wrapped only for a sampled request; the span ends at the
//! body's last frame, at its first error, or when the body is dropped
//! unfinished (the client went away) — whichever comes first.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::apps::X_BUNTIME_APP;

/// `response` with `finish` called when its body has been sent (at once
/// for a body known to be empty).
///
/// `finish` gets the status and the app version that answered (the
/// response's `x-buntime-app`), the only part of the head a span reads.
pub(super) fn end_with_body<F>(response: Response, finish: F) -> Response
where
    F: FnOnce(StatusCode, Option<&HeaderValue>) + Send + 'static,
{
    let status = response.status();
    if response.body().is_end_stream() {
        finish(status, response.headers().get(X_BUNTIME_APP));
        return response;
    }
    let app = response.headers().get(X_BUNTIME_APP).cloned();
    response.map(|inner| {
        Body::new(SpanBody {
            inner,
            end: Some(End {
                finish,
                status,
                app,
            }),
        })
    })
}

/// What ends the span, kept until the body ends.
struct End<F> {
    finish: F,
    status: StatusCode,
    app: Option<HeaderValue>,
}

/// A response body that ends its request's span when it ends.
struct SpanBody<F: FnOnce(StatusCode, Option<&HeaderValue>)> {
    inner: Body,
    end: Option<End<F>>,
}

impl<F: FnOnce(StatusCode, Option<&HeaderValue>)> SpanBody<F> {
    fn end(&mut self) {
        if let Some(end) = self.end.take() {
            (end.finish)(end.status, end.app.as_ref());
        }
    }
}

// `Unpin` whatever `F` is: the body is polled through `Pin<&mut Self>`
// and moved only as a whole.
impl<F: FnOnce(StatusCode, Option<&HeaderValue>)> Unpin for SpanBody<F> {}

impl<F> HttpBody for SpanBody<F>
where
    F: FnOnce(StatusCode, Option<&HeaderValue>),
{
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.end();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<F: FnOnce(StatusCode, Option<&HeaderValue>)> Drop for SpanBody<F> {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt as _;

    use super::*;

    type Ended = Arc<Mutex<Option<(StatusCode, Option<String>)>>>;

    fn recorder(ended: &Ended) -> impl FnOnce(StatusCode, Option<&HeaderValue>) + Send + 'static {
        let ended = ended.clone();
        move |status, app| {
            let app = app.and_then(|v| v.to_str().ok()).map(str::to_owned);
            *ended.lock().expect("lock") = Some((status, app));
        }
    }

    #[tokio::test]
    async fn the_span_ends_with_the_last_frame_not_the_head() {
        let ended = Ended::default();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, axum::Error>>(1);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let mut response = Response::new(Body::new(http_body_util::StreamBody::new(stream)));
        response
            .headers_mut()
            .insert(X_BUNTIME_APP, http::HeaderValue::from_static("shop@1.0.0"));
        let mut body = end_with_body(response, recorder(&ended)).into_body();
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .expect("send");
        assert!(body.frame().await.is_some());
        assert!(ended.lock().expect("lock").is_none(), "ended at the head");
        drop(tx);
        assert!(body.frame().await.is_none());
        assert_eq!(
            *ended.lock().expect("lock"),
            Some((StatusCode::OK, Some("shop@1.0.0".into())))
        );
    }

    #[test]
    fn an_empty_body_ends_it_at_once_and_a_dropped_one_when_dropped() {
        let ended = Ended::default();
        let _ = end_with_body(Response::new(Body::empty()), recorder(&ended));
        assert!(ended.lock().expect("lock").is_some());
        let ended = Ended::default();
        let response = end_with_body(Response::new(Body::from("unsent")), recorder(&ended));
        assert!(ended.lock().expect("lock").is_none());
        drop(response);
        assert!(ended.lock().expect("lock").is_some());
    }
}
