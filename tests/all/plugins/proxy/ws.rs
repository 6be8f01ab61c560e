//! WebSocket pass-through: the handshake through the chain, frames relayed
//! both ways by the host, and its idle limit.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{MIB, rule, start};

/// A WebSocket server on loopback that echoes every text and binary
/// message.
async fn echo_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn ws_url(server: &crate::server::TestServer, path: &str) -> String {
    server.url(path).replacen("http://", "ws://", 1)
}

#[tokio::test]
async fn websocket_frames_are_relayed_both_ways() {
    let up = echo_upstream().await;
    let server = start(
        json!({ "rules": [rule("^/ws/", &format!("http://{up}"), json!({ "websocket": true }))] }),
        None,
    )
    .await;
    let (mut ws, res) = tokio_tungstenite::connect_async(ws_url(&server, "/ws/chat"))
        .await
        .expect("handshake through the proxy");
    assert_eq!(res.status(), 101);
    assert_eq!(
        res.headers()["x-kit"],
        "seen",
        "the chain saw the handshake"
    );

    ws.send(Message::text("hello")).await.expect("send");
    let back = ws.next().await.expect("a message").expect("ok");
    assert_eq!(back, Message::text("hello"));
    let big = vec![9u8; MIB];
    ws.send(Message::binary(big.clone())).await.expect("send");
    let back = ws.next().await.expect("a message").expect("ok");
    assert_eq!(back.into_data().len(), big.len());
    ws.close(None).await.expect("close");
}

#[tokio::test]
async fn a_silent_websocket_is_closed_at_its_idle_limit() {
    let up = echo_upstream().await;
    let server = start(
        json!({ "rules": [rule("^/ws/", &format!("http://{up}"), json!({
            "websocket": true, "idleTimeoutMs": 300
        }))] }),
        None,
    )
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&server, "/ws/quiet"))
        .await
        .expect("handshake");
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    let took = started.elapsed();
    assert!(
        matches!(ended, Ok(None | Some(Err(_)))),
        "the relay should have closed the connection: {ended:?}"
    );
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
}
