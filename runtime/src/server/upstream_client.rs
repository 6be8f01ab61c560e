//! The outbound side of host-executed proxying around the connections
//! (`upstream_pool`): the resolver that keeps the `upstream` grant's
//! private-network rule at connect time, a response body that fails when
//! the upstream goes quiet for too long (and gives its connection back when
//! read to its end), and the request body's progress that the wait for an
//! answer is measured from.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::dns::Name;

use super::upstream_pool::Lease;
use crate::grants::public_addrs;

/// Names resolved for an upstream connection: every address, or (when the
/// grant does not allow private networks) only the public ones, through the
/// `http` capability's own check, so a name cannot be re-pointed at a
/// private address between the grant check and the connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolver {
    public_only: bool,
}

impl Resolver {
    pub(crate) fn new(public_only: bool) -> Self {
        Self { public_only }
    }
}

type Resolving =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let public_only = self.public_only;
        Box::pin(async move {
            let addrs = if public_only {
                public_addrs(name.as_str()).await?
            } else {
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect()
            };
            Ok(addrs.into_iter())
        })
    }
}

/// An upstream's response body, failed when no frame arrives for `idle`
/// once it is waited for. The timer is made and set only when a read has
/// to wait (a body already buffered, like most small answers, costs no
/// timer). Its connection goes back to the pool when the body is read to its end
/// (seen as the last frame, or as an empty body at the end of the stream
/// when the reader stops on its own after the announced length).
pub(crate) struct IdleBody {
    inner: Incoming,
    idle: Duration,
    /// Running from the first wait after the last frame.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
    upstream: Arc<str>,
    lease: Option<Lease>,
}

impl IdleBody {
    pub(crate) fn new(inner: Incoming, idle: Duration, upstream: Arc<str>, lease: Lease) -> Self {
        let mut body = Self {
            inner,
            idle,
            timer: None,
            waiting: false,
            upstream,
            lease: Some(lease),
        };
        body.release_at_end();
        body
    }

    /// Gives the connection back once nothing is left to read.
    fn release_at_end(&mut self) {
        if self.inner.is_end_stream()
            && let Some(lease) = self.lease.take()
        {
            lease.release();
        }
    }

    /// The silence timer, started at the first wait after a frame.
    fn wait(&mut self) -> Pin<&mut tokio::time::Sleep> {
        let idle = self.idle;
        let first = !std::mem::replace(&mut self.waiting, true);
        let fresh = self.timer.is_none();
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if first && !fresh {
            timer.as_mut().reset(tokio::time::Instant::now() + idle);
        }
        timer.as_mut()
    }
}

impl Drop for IdleBody {
    fn drop(&mut self) {
        // A body left half-read drops its lease, closing the connection.
        self.release_at_end();
    }
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                match &frame {
                    Some(Ok(_)) => this.release_at_end(),
                    // The end: release whatever `is_end_stream` said.
                    None => {
                        if let Some(lease) = this.lease.take() {
                            lease.release();
                        }
                    }
                    // A broken body: its connection is not reused.
                    Some(Err(_)) => this.lease = None,
                }
                this.waiting = false;
                Poll::Ready(frame.map(|f| {
                    f.map_err(|e| {
                        tracing::warn!(upstream = %this.upstream, "upstream response body failed: {e}");
                        std::io::Error::other(e)
                    })
                }))
            }
            Poll::Pending => match this.wait().poll(cx) {
                Poll::Ready(()) => {
                    tracing::warn!(
                        upstream = %this.upstream,
                        "upstream sent nothing for {:?} in the middle of its body; the response is cut",
                        this.idle
                    );
                    Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "upstream read timeout",
                    ))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// When the request body last moved, shared between the body going up and
/// the wait for the upstream's answer.
#[derive(Debug)]
pub(crate) struct Progress {
    start: tokio::time::Instant,
    /// Milliseconds after `start` of the last frame sent.
    last_ms: std::sync::atomic::AtomicU64,
}

impl Progress {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the upstream has been silent for `quiet` since the body last
    /// moved (or the request started).
    fn deadline(&self, quiet: Duration) -> tokio::time::Instant {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.start + Duration::from_millis(last) + quiet
    }
}

/// The client's body on its way up, noting each frame in [`Progress`].
pub(crate) struct ProgressBody {
    inner: Body,
    progress: Arc<Progress>,
}

impl ProgressBody {
    pub(crate) fn new(inner: Body, progress: Arc<Progress>) -> Self {
        Self { inner, progress }
    }
}

impl HttpBody for ProgressBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &frame {
            this.progress.touch();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Waits for `answer` until nothing has moved for `quiet`: neither the
/// request body (per `progress`) nor an answer. `None`: timed out.
pub(crate) async fn within_silence<F: Future>(
    answer: F,
    progress: &Progress,
    quiet: Duration,
) -> Option<F::Output> {
    tokio::pin!(answer);
    loop {
        let deadline = progress.deadline(quiet);
        tokio::select! {
            // In order: the answer first (no random pick per wait).
            biased;
            out = &mut answer => return Some(out),
            () = tokio::time::sleep_until(deadline) => {
                if progress.deadline(quiet) <= tokio::time::Instant::now() {
                    return None;
                }
            }
        }
    }
}
