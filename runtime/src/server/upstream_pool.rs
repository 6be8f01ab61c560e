//! Kept-alive HTTP/1.1 connections to upstreams.
//!
//! Each connection is a `hyper::client::conn::http1` pair: its `Connection`
//! future runs on a task spawned by the request that opened it, and its
//! `SendRequest` is lent to one request at a time. A request takes an idle
//! sender of its upstream (same scheme, host and port, opened under the same
//! private-network rule and connect timeout) or opens a connection; the
//! sender comes back ([`Lease::release`]) once the response body has been
//! read to its end. A body dropped before its end takes its connection
//! with it (HTTP/1 cannot resume a half-read answer).
//!
//! Unlike hyper-util's pooled client, a request whose connection is ready
//! again when its body ends spawns nothing (that client spawns a task per
//! request to wait for readiness), and no lock is held across a connect.
//! A request that finds its kept-alive connection closed before anything
//! was sent is retried on another one (the upstream may close an idle
//! connection at any time); one that fails on a fresh connection is not.
//!
//! The connection's own task stays, though it costs a wake-up of another
//! task for each request and each answer: driving the `Connection` from
//! the request's task instead (polled while waiting for the head and at
//! each read of the body) was measured at 3 % more instructions per
//! proxied request and as many context switches, and an idle connection
//! would no longer see its upstream close it.
//!
//! The pool is the server's ([`super::Shared::upstreams`]): two servers in
//! one process share no connections, and a server's idle connections close
//! when it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::Service;

use super::upstream_client::Resolver;

/// How long an idle upstream connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// The most idle connections kept per upstream; more are closed.
const MAX_IDLE_PER_UPSTREAM: usize = 256;

type Connector = hyper_rustls::HttpsConnector<HttpConnector<Resolver>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream as connections are kept for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// `scheme://host:port`.
    pub(crate) origin: Arc<str>,
    /// Whether the private-network rule let the connection reach private
    /// addresses (a connection opened under the stricter rule is never
    /// lent to a request under the looser one, and the other way round).
    pub(crate) allow_private: bool,
    pub(crate) connect_timeout: Duration,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection: the name did not resolve (to an allowed address),
    /// the connection was refused or timed out, or TLS failed.
    #[error("connecting failed")]
    Connect(#[source] BoxError),
    /// The connection broke or the answer was not HTTP.
    #[error("the request failed")]
    Request(#[source] hyper::Error),
}

impl SendError {
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// A sender lent to one request, to give back when its answer is read.
#[derive(Debug)]
pub(crate) struct Lease {
    pool: Arc<Pool>,
    key: Key,
    sender: SendRequest<Body>,
}

impl Lease {
    /// Gives the connection back for the next request: at once when it is
    /// ready for one, else once it is (the request body may still be going
    /// up after the answer came). A closed connection is dropped.
    pub(crate) fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        if self.sender.is_ready() {
            self.pool.clone().put(self);
            return;
        }
        // Outside a runtime (a body dropped at shutdown) it is not kept.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let mut lease = self;
            rt.spawn(async move {
                if lease.sender.ready().await.is_ok() {
                    lease.pool.clone().put(lease);
                }
            });
        }
    }
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// A server's kept-alive upstream connections, and a connector per
/// private-network rule and connect timeout.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>, foldhash::fast::RandomState>>,
    connectors: RwLock<Vec<((bool, Duration), Connector)>>,
    /// The timers of the waits for answers.
    pub(crate) timers: super::upstream_client::Timers,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self
            .idle
            .lock()
            .map_or(0, |m| m.values().map(Vec::len).sum::<usize>());
        f.debug_struct("Pool").field("idle", &idle).finish()
    }
}

impl Pool {
    /// The newest idle, ready sender for `key`; expired and closed ones
    /// found on the way are dropped.
    fn take(&self, key: &Key) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(entry) = list.pop() {
            if now.duration_since(entry.since) < POOL_IDLE
                && entry.sender.is_ready()
                && !entry.sender.is_closed()
            {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put(&self, lease: Lease) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let list = idle.entry(lease.key).or_default();
        // The oldest are first: drop the expired ones, then make room.
        let expired = list
            .iter()
            .take_while(|e| now.duration_since(e.since) >= POOL_IDLE)
            .count();
        list.drain(..expired);
        if list.len() >= MAX_IDLE_PER_UPSTREAM {
            list.remove(0);
        }
        list.push(Idle {
            sender: lease.sender,
            since: now,
        });
    }

    /// The connector for `key`'s rule and timeout, made once per pair.
    fn connector(&self, key: &Key) -> Connector {
        let pair = (key.allow_private, key.connect_timeout);
        if let Ok(all) = self.connectors.read()
            && let Some((_, c)) = all.iter().find(|(k, _)| *k == pair)
        {
            return c.clone();
        }
        let mut all = self.connectors.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = all.iter().find(|(k, _)| *k == pair) {
            return c.clone();
        }
        let mut http = HttpConnector::new_with_resolver(Resolver::new(!key.allow_private));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(key.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        all.push((pair, https.clone()));
        https
    }

    /// A new connection to `authority` (`scheme://host:port`), its
    /// `Connection` driven by a task of its own.
    async fn connect(&self, key: &Key, authority: Uri) -> Result<SendRequest<Body>, SendError> {
        let mut connector = self.connector(key);
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(SendError::Connect)?;
        let io = connector
            .call(authority)
            .await
            .map_err(SendError::Connect)?;
        let (sender, connection) = http1::handshake(io).await.map_err(SendError::Request)?;
        let origin = key.origin.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(upstream = %origin, "upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }
}

/// Sends `req` (origin-form URI, `Host` set) to the upstream `authority`
/// (`scheme://host:port`) on a kept-alive connection of `key`, or a new
/// one. The lease is for the response body's end.
pub(crate) async fn send(
    pool: &Arc<Pool>,
    key: Key,
    authority: &Uri,
    mut req: Request<Body>,
) -> Result<(Response<Incoming>, Lease), SendError> {
    let lease = |key, sender| Lease {
        pool: pool.clone(),
        key,
        sender,
    };
    while let Some(mut sender) = pool.take(&key) {
        match sender.try_send_request(req).await {
            Ok(res) => return Ok((res, lease(key, sender))),
            Err(mut e) => match e.take_message() {
                // Not sent: the upstream closed the idle connection.
                Some(back) => req = back,
                None => return Err(SendError::Request(e.into_error())),
            },
        }
    }
    // Boxed, in a statement of its own: connecting (DNS, TCP, TLS and the
    // handshake, with the TLS stream inline) is a future of several KiB
    // that a request on a kept-alive connection never polls, and inline it
    // would size (and be copied with) every proxied request's future.
    let connect = Box::pin(pool.connect(&key, authority.clone()));
    let mut sender = connect.await?;
    let res = sender.send_request(req).await.map_err(SendError::Request)?;
    Ok((res, lease(key, sender)))
}
