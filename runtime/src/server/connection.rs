//! What one client connection may hold, and for how long.
//!
//! hyper's own header-read timer starts only once HTTP/1 has been chosen:
//! a client that sends nothing, or part of the HTTP/2 preface, or an
//! HTTP/2 connection with no stream open, is never timed out by it. So each
//! connection carries an [`Activity`]: its socket ([`Watched`]) counts
//! whenever bytes move, and the service counts the requests in flight
//! ([`InFlight`]). [`idle`] resolves — and the accept loop drops the
//! connection — when
//!
//! - no request has started within the header timeout of the accept
//!   (however many bytes trickled in), or
//! - later, no request is in flight and no byte has moved either way for
//!   the idle timeout (a keep-alive connection left open, or a client that
//!   stopped reading a response).
//!
//! A request in flight is never cut by this: its own deadlines (the app's
//! `timeout`, the body read timeout) bound it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The activity of one connection, shared by its socket, its requests and
/// its watchdog.
///
/// The socket and the requests only bump a counter (a relaxed add on a line
/// no other connection touches); reading the clock there, twice per request,
/// was a measurable share of a warm request. The watchdog, which wakes a few
/// times per idle period, is the one that looks at the time.
#[derive(Debug)]
pub(crate) struct Activity {
    accepted: Instant,
    /// Bumped whenever bytes move or a request ends.
    events: AtomicU64,
    in_flight: AtomicUsize,
    started_any: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            accepted: Instant::now(),
            events: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started_any: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// A request started; it counts as in flight until the guard drops
    /// (answered, or its future dropped because the client went away).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started_any.store(true, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many looks per idle period: a quiet connection is closed between
/// `idle` and `idle` plus one look after its last activity.
const LOOKS_PER_PERIOD: u32 = 4;

/// Resolves when the connection has outstayed its welcome (see the module
/// docs): before its first request, `first_request` after the accept; then
/// `idle` without a request in flight or a byte moved.
pub(crate) async fn idle(activity: &Activity, first_request: Duration, idle: Duration) {
    let look = (idle / LOOKS_PER_PERIOD).max(Duration::from_millis(1));
    let first_due = activity.accepted + first_request;
    let mut seen = activity.events.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    loop {
        let now = Instant::now();
        let events = activity.events.load(Ordering::Relaxed);
        let busy = activity.in_flight.load(Ordering::Relaxed) > 0;
        if events != seen || busy {
            seen = events;
            quiet_since = now;
        }
        if !activity.started_any.load(Ordering::Relaxed) {
            // Before the first request only its deadline counts, however
            // many bytes trickle in.
            if now >= first_due {
                return;
            }
            tokio::time::sleep_until(first_due.min(now + look)).await;
            continue;
        }
        if !busy && now.duration_since(quiet_since) >= idle {
            return;
        }
        tokio::time::sleep(look).await;
    }
}

/// A socket that counts on its connection's [`Activity`] whenever bytes move.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_is_due_after_the_first_request_timeout() {
        let activity = Activity::new();
        let started = Instant::now();
        idle(&activity, Duration::from_secs(10), Duration::from_secs(60)).await;
        assert!(started.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_its_connection() {
        let activity = Activity::new();
        let request = activity.begin();
        let watchdog = idle(&activity, Duration::from_secs(1), Duration::from_secs(2));
        tokio::pin!(watchdog);
        // Far past both limits with the request still running: not due.
        assert!(
            tokio::time::timeout(Duration::from_secs(30), watchdog.as_mut())
                .await
                .is_err()
        );
        drop(request);
        watchdog.await;
    }
}
