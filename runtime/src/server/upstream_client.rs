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
/// request body (per `progress`) nor an answer. `None`: timed out. The
/// timer is one of `timers`, given back when the wait ends.
pub(crate) async fn within_silence<F: Future>(
    answer: F,
    progress: &Progress,
    quiet: Duration,
    timers: &Timers,
) -> Option<F::Output> {
    tokio::pin!(answer);
    let mut timer = timers.take(progress.deadline(quiet));
    let out = loop {
        tokio::select! {
            // In order: the answer first (no random pick per wait).
            biased;
            out = &mut answer => break Some(out),
            () = timer.as_mut() => {
                let deadline = progress.deadline(quiet);
                if deadline <= tokio::time::Instant::now() {
                    break None;
                }
                timer.as_mut().reset(deadline);
            }
        }
    };
    timers.give_back(timer);
    out
}

/// Timers kept for the waits for upstream answers, reused from one wait to
/// the next.
///
/// A new tokio timer is registered in the runtime's timer wheel when first
/// polled and removed when dropped, each under the wheel's lock; a timer
/// that is still registered and is moved to a later deadline only has its
/// deadline swapped atomically. Every wait moves its timer some seconds
/// ahead of where the last wait left it, so reuse makes a wait's timer
/// almost free. A wait that is cancelled keeps its timer (it is dropped).
#[derive(Default)]
pub(crate) struct Timers {
    idle: std::sync::Mutex<Vec<Pin<Box<tokio::time::Sleep>>>>,
}

/// The most timers kept: about the concurrent waits of a busy server.
const MAX_KEPT_TIMERS: usize = 1024;

impl Timers {
    /// A timer set to `deadline`.
    fn take(&self, deadline: tokio::time::Instant) -> Pin<Box<tokio::time::Sleep>> {
        let kept = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match kept {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    fn give_back(&self, timer: Pin<Box<tokio::time::Sleep>>) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_KEPT_TIMERS {
            idle.push(timer);
        }
    }
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reused timer keeps each wait's own deadline, earlier or later than
    /// the one it was last set to.
    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_keeps_each_waits_own_deadline() {
        let timers = Timers::default();
        let progress = Progress::new();
        let long = Duration::from_secs(30);
        assert_eq!(
            within_silence(async { 1 }, &progress, long, &timers).await,
            Some(1)
        );
        assert_eq!(timers.idle.lock().unwrap().len(), 1, "the timer was kept");

        // Earlier than the kept timer's deadline: fires then.
        let start = tokio::time::Instant::now();
        let quiet = Duration::from_millis(100);
        let silent = std::future::pending::<()>();
        assert_eq!(
            within_silence(silent, &progress, quiet, &timers).await,
            None
        );
        let waited = start.elapsed();
        assert!(waited >= quiet && waited < long, "{waited:?}");

        // An answer inside the silence wins; the same timer serves again.
        let answer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            2
        };
        let progress = Progress::new();
        assert_eq!(
            within_silence(answer, &progress, quiet, &timers).await,
            Some(2)
        );
        assert_eq!(timers.idle.lock().unwrap().len(), 1);

        // A later deadline than the last: not cut at the old one.
        let progress = Progress::new();
        let start = tokio::time::Instant::now();
        let late = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            3
        };
        assert_eq!(
            within_silence(late, &progress, Duration::from_secs(1), &timers).await,
            Some(3)
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
    }
}
