//! The accept loop: hyper with the protections `axum::serve` does not set.
//!
//! `axum::serve` configures no timer, so hyper's header-read timeout never
//! fires and a client that trickles its headers (or sends none) holds a
//! connection forever. This loop serves each connection with hyper-util's
//! auto (HTTP/1 + HTTP/2) builder plus a header-read timeout (kept by the
//! connection's watchdog, [`connection::HeadWaits`]), a cap on header count
//! and size, a cap on open connections, idle and
//! first-request timeouts ([`super::connection`]), and graceful shutdown:
//! stop accepting, ask every connection to finish its in-flight requests,
//! wait up to the shutdown timeout, then close what is left.

use std::sync::Arc;
use std::time::Duration;

use super::BuntimeService;
use super::connection::{self, Activity, Watched};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A client must send its complete request head within this time; a new
    /// connection must start its first request within it
    /// (`RUNTIME_HEADER_TIMEOUT`).
    pub header_read_timeout: Duration,
    /// Most header lines in one request (`RUNTIME_MAX_HEADERS`).
    pub max_headers: usize,
    /// Most bytes buffered for one request head, HTTP/1
    /// (`RUNTIME_MAX_HEADER_SIZE`).
    pub max_head_bytes: usize,
    /// A connection with no request in flight and no byte moving either way
    /// for this long is closed (`RUNTIME_IDLE_TIMEOUT`).
    pub idle_timeout: Duration,
    /// A request body must deliver its next bytes within this
    /// (`RUNTIME_BODY_TIMEOUT`); a stalled upload is answered 408.
    pub body_read_timeout: Duration,
    /// Most connections open at once (`RUNTIME_MAX_CONNECTIONS`); one more
    /// is answered 503 and closed.
    pub max_connections: usize,
    /// After a shutdown signal, how long in-flight requests may take before
    /// their connections are cut (`RUNTIME_SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_head_bytes: 64 << 10,
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Where the server is in its life, as the connection tasks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// Finish in-flight requests, take no new ones.
    Draining,
    /// The grace period is over: close now.
    Closing,
}

/// The body of the answer to a connection over `max_connections`.
const OVER_CAPACITY: &str = r#"{"code":"TOO_MANY_CONNECTIONS","message":"the server is at its connection limit (RUNTIME_MAX_CONNECTIONS); retry shortly"}"#;

/// Answers a connection over the cap and closes it, rather than leave the
/// client waiting in the backlog. The request it may already have sent is
/// read (briefly, boundedly) first: closing a socket with unread data
/// resets it, and the client would see the reset instead of the answer.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A fresh socket's send buffer is empty: this write does not wait.
    // HTTP/1 (an HTTP/2 client sees the connection close).
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{OVER_CAPACITY}",
        OVER_CAPACITY.len()
    );
    if stream.try_write(answer.as_bytes()).is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut total = 0;
        while let Ok(n @ 1..) = stream.read(&mut sink).await {
            total += n;
            if total > 64 << 10 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Serves `service` until `shutdown` resolves; then stops accepting, lets
/// open connections finish their requests for up to
/// `limits.shutdown_timeout`, and cuts the rest.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    service: BuntimeService,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE or a reset during the handshake: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(
                max = limits.max_connections,
                "connection refused: at RUNTIME_MAX_CONNECTIONS"
            );
            tokio::spawn(refuse(stream));
            continue;
        };
        // Responses are written as head and body; without NODELAY, Nagle's
        // algorithm and delayed ACKs add ~40 ms to every small response.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let activity = Activity::new();
        let open_connection = OpenConnection::enter(service.state().clone());
        let service = TowerToHyperService::new(service.for_connection(
            activity.clone(),
            limits.body_read_timeout,
            peer,
        ));
        let io = TokioIo::new(Watched::new(stream, activity.clone()));
        let mut phase = phase_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open_connection = open_connection;
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                // The header-read deadline, kept by the watchdog below.
                .timer(activity.head_timer())
                .header_read_timeout(limits.header_read_timeout)
                .max_headers(limits.max_headers)
                .max_buf_size(limits.max_head_bytes.max(8192));
            // WebSocket over HTTP/2 (RFC 8441, `extended_connect.rs`).
            builder
                .http2()
                .timer(TokioTimer::new())
                .enable_connect_protocol();
            let conn = builder.serve_connection_with_upgrades(io, service);
            let mut conn = std::pin::pin!(conn);
            let idle = connection::idle(&activity, limits.header_read_timeout, limits.idle_timeout);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = idle => {
                    tracing::debug!("closing an idle connection");
                    return;
                }
                _ = phase.wait_for(|p| *p >= Phase::Draining) => {}
            }
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error while draining");
                    }
                }
                _ = phase.wait_for(|p| *p == Phase::Closing) => {
                    tracing::debug!("shutdown grace over: closing a connection with a request in flight");
                }
            }
        });
    }
    drop(listener);
    drop(phase_rx);
    let _ = phase_tx.send(Phase::Draining);
    // Every connection task holds a receiver; they are all gone when all are done.
    let grace = limits.shutdown_timeout;
    if tokio::time::timeout(grace, phase_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {grace:?} (RUNTIME_SHUTDOWN_TIMEOUT); closing their connections"
        );
        let _ = phase_tx.send(Phase::Closing);
        // Each task is now at a select that returns at once; a guest call
        // that holds its thread is bounded by its own deadline.
        let _ = tokio::time::timeout(Duration::from_secs(1), phase_tx.closed()).await;
    }
}

/// Counts a client connection as open (`/_/metrics`) until dropped.
struct OpenConnection(super::AppState);

impl OpenConnection {
    fn enter(state: super::AppState) -> Self {
        state.http.opened.add(1);
        Self(state)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.http.closed.add(1);
    }
}
