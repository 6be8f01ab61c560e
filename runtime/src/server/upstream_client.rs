//! The outbound side of host-executed proxying: pooled HTTP/1.1 clients
//! (plain and TLS) whose resolver keeps the `upstream` grant's private
//! network rule at connect time, and a response body that fails when the
//! upstream goes quiet for too long.
//!
//! Clients are kept per (private networks allowed, connect timeout): a
//! pool's connections are reused by every request with the same pair, and
//! in practice there are one or two pairs per process.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use crate::grants::public_addrs;

/// A pooled client for upstreams.
pub(crate) type UpstreamClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector<Resolver>>, Body>;

/// How long an idle upstream connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Names resolved for an upstream connection: every address, or (when the
/// grant does not allow private networks) only the public ones, through the
/// `http` capability's own check, so a name cannot be re-pointed at a
/// private address between the grant check and the connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolver {
    public_only: bool,
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

/// A client and what it was made for: (private allowed, connect timeout).
type Keyed = ((bool, Duration), UpstreamClient);

/// The clients made so far.
static CLIENTS: LazyLock<RwLock<Vec<Keyed>>> = LazyLock::new(RwLock::default);

/// The pooled client for upstreams reached with `allow_private` and
/// `connect_timeout`.
pub(crate) fn client(allow_private: bool, connect_timeout: Duration) -> UpstreamClient {
    let key = (allow_private, connect_timeout);
    if let Ok(clients) = CLIENTS.read()
        && let Some((_, c)) = clients.iter().find(|(k, _)| *k == key)
    {
        return c.clone();
    }
    let mut clients = CLIENTS.write().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
        return c.clone();
    }
    let mut http = HttpConnector::new_with_resolver(Resolver {
        public_only: !allow_private,
    });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let c = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(https);
    clients.push((key, c.clone()));
    c
}

/// An upstream's response body, failed when no frame arrives for `idle`.
pub(crate) struct IdleBody {
    inner: Incoming,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    upstream: Arc<str>,
}

impl IdleBody {
    pub(crate) fn new(inner: Incoming, idle: Duration, upstream: Arc<str>) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            upstream,
        }
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
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| {
                    f.map_err(|e| {
                        tracing::warn!(upstream = %this.upstream, "upstream response body failed: {e}");
                        std::io::Error::other(e)
                    })
                }))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
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
            out = &mut answer => return Some(out),
            () = tokio::time::sleep_until(deadline) => {
                if progress.deadline(quiet) <= tokio::time::Instant::now() {
                    return None;
                }
            }
        }
    }
}
