//! The accept loop: hyper with the protections `axum::serve` does not set.
//!
//! `axum::serve` configures no timer, so hyper's header-read timeout never
//! fires and a client that trickles its headers (or sends none) holds a
//! connection forever. This loop serves each connection with hyper-util's
//! auto (HTTP/1 + HTTP/2) builder plus a tokio timer, a header-read timeout and
//! a cap on header count and size, and implements graceful shutdown: stop
//! accepting, ask every connection to finish its in-flight requests, wait.

use std::time::Duration;

use super::BuntimeService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A client must send its complete request head within this time.
    pub header_read_timeout: Duration,
    /// Most header lines in one request.
    pub max_headers: usize,
    /// Most bytes buffered for one request head (HTTP/1).
    pub max_head_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_head_bytes: 64 << 10,
        }
    }
}

/// Serves `service` until `shutdown` resolves; then stops accepting and waits
/// (up to `grace`) for open connections to finish their requests.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    service: BuntimeService,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
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
        // Responses are written as head and body; without NODELAY, Nagle's
        // algorithm and delayed ACKs add ~40 ms to every small response.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(service.for_peer(peer));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_headers(limits.max_headers)
                .max_buf_size(limits.max_head_bytes.max(8192));
            builder.http2().timer(TokioTimer::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s) => {}
            }
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error while draining");
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver; they are all gone when all are done.
    if tokio::time::timeout(grace, stop_tx.closed()).await.is_err() {
        tracing::warn!("connections still open after {grace:?}; closing");
    }
}
