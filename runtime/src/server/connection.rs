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
//! - later, an HTTP/1 connection has waited for a request head for the
//!   header timeout: hyper's header-read deadline ([`HeadWaits`]), or
//! - no request is in flight and no byte has moved either way for the idle
//!   timeout (a keep-alive connection left open, or a client that stopped
//!   reading a response).
//!
//! A request in flight is never cut by this: its own deadlines (the app's
//! `timeout`, the body read timeout) bound it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Requests started, and waits for a request head hyper began
    /// ([`HeadWaits`]): more waits than requests means one is under way.
    requests: AtomicU64,
    head_waits: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            accepted: Instant::now(),
            events: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            head_waits: AtomicU64::new(0),
        })
    }

    /// hyper's timer for this connection's HTTP/1 side.
    pub(crate) fn head_timer(self: &Arc<Self>) -> HeadWaits {
        HeadWaits(self.clone())
    }

    fn touch(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// A request started; it counts as in flight until the guard drops
    /// (answered, or its future dropped because the client went away).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::SeqCst);
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

/// How many looks per period: a connection is closed between its limit and
/// the limit plus one look (a quarter of the shorter of the header and idle
/// timeouts).
const LOOKS_PER_PERIOD: u32 = 4;

/// Resolves when the connection has outstayed its welcome (see the module
/// docs): before its first request, `header` after the accept; then when
/// a wait for a request head has lasted `header`, or `idle` has passed
/// without a request in flight or a byte moved.
pub(crate) async fn idle(activity: &Activity, header: Duration, idle: Duration) {
    let look = (idle.min(header) / LOOKS_PER_PERIOD).max(Duration::from_millis(1));
    let first_due = activity.accepted + header;
    let mut seen = activity.events.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    // The head wait under way (by number) and when it was first seen: it
    // began at most one look before.
    let mut head_wait: Option<(u64, Instant)> = None;
    loop {
        let now = Instant::now();
        let events = activity.events.load(Ordering::Relaxed);
        let busy = activity.in_flight.load(Ordering::Relaxed) > 0;
        if events != seen || busy {
            seen = events;
            quiet_since = now;
        }
        // Waits read before requests (both counted in one order for all,
        // `SeqCst`): a head that arrives between the two reads counts as
        // arrived, so a wait is taken for under way only if it still was
        // at the second read.
        let waits = activity.head_waits.load(Ordering::SeqCst);
        let requests = activity.requests.load(Ordering::SeqCst);
        if requests == 0 {
            // Before the first request only its deadline counts, however
            // many bytes trickle in.
            if now >= first_due {
                return;
            }
            tokio::time::sleep_until(first_due.min(now + look)).await;
            continue;
        }
        if waits > requests {
            match head_wait {
                Some((wait, since)) if wait == waits => {
                    if now.duration_since(since) >= header {
                        return;
                    }
                }
                _ => head_wait = Some((waits, now)),
            }
        } else {
            head_wait = None;
        }
        if !busy && now.duration_since(quiet_since) >= idle {
            return;
        }
        tokio::time::sleep(look).await;
    }
}

/// hyper's timer for an HTTP/1 connection, whose one use of it is the
/// header-read deadline: a timer started before each request head is read
/// and dropped once it is.
///
/// Rather than a tokio timer armed and cancelled for every request (about
/// 1,500 instructions of a proxied request, most of them in the timer
/// wheel), each wait is counted on the connection's [`Activity`] and the
/// watchdog ([`idle`]) ends a connection whose wait has lasted the header
/// timeout. The sleep hyper gets never resolves: hyper's own timeout never
/// fires, and the watchdog's drops the connection, as hyper's closes it,
/// without an answer.
#[derive(Debug, Clone)]
pub(crate) struct HeadWaits(Arc<Activity>);

impl HeadWaits {
    fn wait(&self) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.0.head_waits.fetch_add(1, Ordering::SeqCst);
        // Zero-sized: boxing it allocates nothing.
        Box::pin(Unresolved)
    }
}

impl hyper::rt::Timer for HeadWaits {
    fn sleep(&self, _: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.wait()
    }

    fn sleep_until(&self, _: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.wait()
    }

    /// hyper reads the time only to make the deadline it hands to
    /// `sleep_until`, which this timer does not read (the watchdog times
    /// the wait): no clock read per request.
    fn now(&self) -> std::time::Instant {
        self.0.accepted.into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, _: std::time::Instant) {
        *sleep = self.wait();
    }
}

/// A sleep that never ends (see [`HeadWaits`]).
struct Unresolved;

impl std::future::Future for Unresolved {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl hyper::rt::Sleep for Unresolved {}

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
    async fn a_wait_for_a_later_head_ends_at_the_header_timeout_while_bytes_move() {
        let activity = Activity::new();
        let timer = activity.head_timer();
        // The first head, waited for and answered.
        let _first = hyper::rt::Timer::sleep(&timer, Duration::ZERO);
        drop(activity.begin());
        // The second, waited for while a byte arrives every half second:
        // the idle timeout never runs out.
        let _second = hyper::rt::Timer::sleep(&timer, Duration::ZERO);
        let started = Instant::now();
        let watchdog = idle(&activity, Duration::from_secs(10), Duration::from_secs(60));
        tokio::pin!(watchdog);
        let given_up = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(given_up);
        loop {
            tokio::select! {
                () = &mut watchdog => break,
                () = &mut given_up => panic!("a head wait of 30 s was not cut"),
                () = tokio::time::sleep(Duration::from_millis(500)) => activity.touch(),
            }
        }
        let took = started.elapsed();
        // Within the timeout plus one look (a quarter of it).
        assert!(
            (Duration::from_secs(10)..=Duration::from_millis(12_500)).contains(&took),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_arrives_ends_its_wait() {
        let activity = Activity::new();
        let timer = activity.head_timer();
        let _first = hyper::rt::Timer::sleep(&timer, Duration::ZERO);
        drop(activity.begin());
        let watchdog = idle(&activity, Duration::from_secs(10), Duration::from_secs(60));
        tokio::pin!(watchdog);
        // Each head arrives 8 s into its wait, bytes moving meanwhile: the
        // waits add up to far more than the header timeout, none reaches it.
        for _ in 0..5 {
            let _wait = hyper::rt::Timer::sleep(&timer, Duration::ZERO);
            let head = tokio::time::sleep(Duration::from_secs(8));
            tokio::pin!(head);
            loop {
                tokio::select! {
                    () = &mut watchdog => panic!("cut while each head came in time"),
                    () = &mut head => break,
                    () = tokio::time::sleep(Duration::from_millis(500)) => activity.touch(),
                }
            }
            drop(activity.begin());
        }
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
