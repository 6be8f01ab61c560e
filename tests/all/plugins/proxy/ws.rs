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
pub(super) async fn echo_upstream() -> SocketAddr {
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
    let server = start(relay_ws(up), None).await;
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
    ended_by_relay(&mut ws, Duration::from_millis(250)).await;
}

#[tokio::test]
async fn a_relay_is_closed_with_a_close_frame_to_both_ends_at_shutdown() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    // An echo upstream that reports the close code it receives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let up = listener.local_addr().expect("addr");
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        // Read on after the close, so the reply to it goes out.
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Close(frame) => {
                    let _ = closed_tx.send(frame.map(|f| f.code)).await;
                }
                m if m.is_text() => {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
                _ => {}
            }
        }
    });
    let server = start(relay_ws(up), None).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&server, "/ws/live"))
        .await
        .expect("handshake");
    // The default grace period is 30 s: the relay must not wait for it.
    let (started, stopping) = echo_then_stop(&mut ws, server).await;
    let code = tokio::time::timeout(Duration::from_secs(10), closed_rx.recv())
        .await
        .expect("the upstream got a close frame");
    assert_eq!(code, Some(Some(CloseCode::Away)));
    // The client's reply goes out; the relay then ends the connection.
    let after = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the connection ended");
    assert!(
        !matches!(after, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{after:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stopped")
        .expect("join");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        started.elapsed()
    );
}

/// Echoes one message through `ws`, starts stopping `server`, and expects a
/// close frame "going away" (1001) from the relay within 10 s; returns when
/// the stop began and its task.
pub(super) async fn echo_then_stop<S, E>(
    ws: &mut S,
    server: crate::server::TestServer,
) -> (Instant, tokio::task::JoinHandle<()>)
where
    S: futures_util::Sink<Message> + futures_util::Stream<Item = Result<Message, E>> + Unpin,
    <S as futures_util::Sink<Message>>::Error: std::fmt::Debug,
    E: std::fmt::Debug,
{
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    ws.send(Message::text("before")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("a message").expect("ok"),
        Message::text("before")
    );
    let started = Instant::now();
    let stopping = tokio::spawn(server.stop());
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the client heard from the relay at shutdown")
        .expect("a message, not a cut connection")
        .expect("a valid frame");
    match msg {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    (started, stopping)
}

/// The proxy config relaying `/ws/…` to `up` with WebSocket on.
pub(super) fn relay_ws(up: SocketAddr) -> serde_json::Value {
    json!({ "rules": [rule("^/ws/", &format!("http://{up}"), json!({ "websocket": true }))] })
}

/// Waits (up to 10 s) for the relay to end `ws`, a stream the client left
/// silent, and checks it did not end before `at_least`.
pub(super) async fn ended_by_relay<S, E>(ws: &mut S, at_least: Duration)
where
    S: futures_util::Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Debug,
{
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    let took = started.elapsed();
    assert!(
        matches!(ended, Ok(None | Some(Err(_)))),
        "the relay should have ended the stream: {ended:?}"
    );
    assert!(took >= at_least, "ended after {took:?}");
}
