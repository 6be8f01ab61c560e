//! Upstream connections: kept alive across requests, and one the upstream
//! closed while idle is replaced instead of failing the next request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::{rule, start};
use crate::server::client;

/// What the test sees of the upstream's connections.
struct Connections {
    /// Accepted so far.
    accepted: AtomicUsize,
    /// Open now.
    open: AtomicUsize,
}

/// A minimal HTTP/1.1 upstream that keeps connections alive and answers
/// every request `hello`; bumping the returned sender closes every
/// connection it has open (as an upstream's idle timeout would).
async fn keep_alive_upstream() -> (SocketAddr, Arc<Connections>, watch::Sender<u32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Connections {
        accepted: AtomicUsize::new(0),
        open: AtomicUsize::new(0),
    });
    let (close, closed) = watch::channel(0u32);
    let conns = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            conns.accepted.fetch_add(1, Ordering::SeqCst);
            conns.open.fetch_add(1, Ordering::SeqCst);
            let conns = conns.clone();
            let mut closed = closed.clone();
            closed.mark_unchanged();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    tokio::select! {
                        _ = closed.changed() => break,
                        n = tcp.read(&mut chunk) => match n {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        },
                    }
                    // Requests without bodies: each ends at an empty line.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                        if tcp.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                }
                drop(tcp);
                conns.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen, close)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_one_closed_while_idle_is_replaced() {
    let (up, conns, close) = keep_alive_upstream().await;
    let server = start(
        json!({ "rules": [rule("^/ka/(.*)$", &format!("http://{up}/$1"), json!({}))] }),
        None,
    )
    .await;
    let get = || async {
        let res = client()
            .get(server.url("/ka/x"))
            .send()
            .await
            .expect("request");
        let status = res.status();
        (status, res.text().await.expect("body"))
    };
    for _ in 0..10 {
        assert_eq!(get().await, (reqwest::StatusCode::OK, "hello".to_owned()));
    }
    // Each connection goes back for the next request once its answer is
    // read; one more may open while the first is on its way back.
    let accepted = conns.accepted.load(Ordering::SeqCst);
    assert!(
        accepted <= 2,
        "10 sequential requests opened {accepted} upstream connections"
    );

    // The upstream closes its idle connections; the next request opens a
    // new one instead of failing on a closed one.
    close.send_modify(|n| *n += 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while conns.open.load(Ordering::SeqCst) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream did not close its connections"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(get().await, (reqwest::StatusCode::OK, "hello".to_owned()));
    assert_eq!(conns.accepted.load(Ordering::SeqCst), accepted + 1);
}
