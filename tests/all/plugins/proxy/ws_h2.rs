//! WebSocket over HTTP/2 (RFC 8441): an extended CONNECT through the chain,
//! relayed to an HTTP/1.1 upstream; other protocols, and WebSockets no
//! upstream relays, refused with a clear status.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::ws::{echo_then_stop, echo_upstream, ended_by_relay, relay_ws};
use super::{MIB, rule, start, start_limited, upstream};
use crate::server::TestServer;

type H2 = SendRequest<Empty<Bytes>>;

/// An HTTP/2 connection (prior knowledge) to `server`, once the server's
/// settings (`SETTINGS_ENABLE_CONNECT_PROTOCOL`) have arrived.
async fn h2(server: &TestServer) -> H2 {
    let addr = server.url("").trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    // The settings come before any answer: one request reads them. (A
    // server that does not offer extended CONNECT resets the stream of one.)
    let res = get(&mut send, server, "/_/api/health").await;
    assert_eq!(res.status(), 200);
    send
}

async fn get(
    send: &mut H2,
    server: &TestServer,
    path: &str,
) -> hyper::Response<hyper::body::Incoming> {
    let req = hyper::Request::get(server.url(path))
        .body(Empty::new())
        .expect("request");
    send.send_request(req).await.expect("an answer")
}

/// An extended CONNECT to `path` for `protocol`, as a browser sends it.
async fn connect(
    send: &mut H2,
    server: &TestServer,
    path: &str,
    protocol: &'static str,
) -> hyper::Response<hyper::body::Incoming> {
    let req = hyper::Request::builder()
        .method(hyper::Method::CONNECT)
        .uri(server.url(path))
        .header("sec-websocket-version", "13")
        .header("x-test-identity", "ws-user")
        .extension(hyper::ext::Protocol::from_static(protocol))
        .body(Empty::new())
        .expect("request");
    send.send_request(req).await.expect("an answer")
}

/// The JSON error body of `res`, after checking its status and code.
async fn error(res: hyper::Response<hyper::body::Incoming>, status: u16, code: &str) -> Value {
    assert_eq!(res.status(), status);
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let body: Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["requestId"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    body
}

/// The WebSocket on the stream a 200 opened.
async fn websocket(
    res: hyper::Response<hyper::body::Incoming>,
) -> WebSocketStream<TokioIo<hyper::upgrade::Upgraded>> {
    let stream = hyper::upgrade::on(res).await.expect("the stream");
    WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await
}

#[tokio::test]
async fn a_websocket_over_http2_is_relayed_to_an_http1_upstream() {
    let up = echo_upstream().await;
    // `methods: GET`: the plugin sees the handshake as a GET, as over HTTP/1.1.
    let server = start(
        json!({ "rules": [rule("^/ws/", &format!("http://{up}"), json!({
            "websocket": true, "methods": ["GET"], "public": false
        }))] }),
        None,
    )
    .await;
    let mut send = h2(&server).await;
    let res = connect(&mut send, &server, "/ws/chat", "websocket").await;
    assert_eq!(
        res.status(),
        200,
        "an HTTP/2 WebSocket is opened with a 200"
    );
    assert_eq!(
        res.headers()["x-kit"],
        "seen",
        "the chain saw the handshake"
    );
    for gone in [
        "sec-websocket-accept",
        "upgrade",
        "connection",
        "content-length",
    ] {
        assert!(res.headers().get(gone).is_none(), "{gone}: {res:?}");
    }
    let mut ws = websocket(res).await;

    for i in 0..5 {
        let text = Message::text(format!("message {i}"));
        ws.send(text.clone()).await.expect("send text");
        assert_eq!(ws.next().await.expect("a message").expect("ok"), text);
        let binary = Message::binary(vec![i as u8; 1 + i * 1000]);
        ws.send(binary.clone()).await.expect("send binary");
        assert_eq!(ws.next().await.expect("a message").expect("ok"), binary);
    }
    // A message larger than the relay's buffer and HTTP/2's default window.
    let big = Message::binary(vec![9u8; MIB]);
    ws.send(big.clone()).await.expect("send");
    assert_eq!(ws.next().await.expect("a message").expect("ok"), big);

    // A clean close: the upstream's close frame answers the client's.
    ws.close(None).await.expect("close");
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the close was answered");
    assert!(matches!(reply, Some(Ok(Message::Close(_)))), "{reply:?}");
    let after = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the stream ended");
    assert!(after.is_none(), "{after:?}");

    // The relay had a stream, not the connection: it still serves requests.
    let res = get(&mut send, &server, "/_/api/health").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_silent_websocket_over_http2_is_closed_at_its_idle_limit() {
    let up = echo_upstream().await;
    let server = start(
        json!({ "rules": [rule("^/ws/", &format!("http://{up}"), json!({
            "websocket": true, "idleTimeoutMs": 300
        }))] }),
        None,
    )
    .await;
    let mut send = h2(&server).await;
    let res = connect(&mut send, &server, "/ws/quiet", "websocket").await;
    assert_eq!(res.status(), 200);
    let mut ws = websocket(res).await;
    ended_by_relay(&mut ws, Duration::from_millis(250)).await;
}

/// Hostile: an extended CONNECT for another protocol is refused before the
/// chain runs, whatever the route; the connection goes on.
#[tokio::test]
async fn an_extended_connect_for_another_protocol_is_501() {
    let up = echo_upstream().await;
    let server = start(relay_ws(up), None).await;
    let mut send = h2(&server).await;
    for path in ["/ws/chat", "/_/api/health"] {
        let res = connect(&mut send, &server, path, "connect-udp").await;
        assert!(res.headers().get("x-request-id").is_some());
        let body = error(res, 501, "PROTOCOL_NOT_SUPPORTED").await;
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`connect-udp`") && message.contains("websocket"),
            "{body}"
        );
    }
    let res = get(&mut send, &server, "/_/api/health").await;
    assert_eq!(res.status(), 200);
}

/// Hostile: a 2xx to an extended CONNECT tells the client its WebSocket is
/// open. A route that answers one without relaying it (a rule with
/// WebSocket off whose upstream answers the plain GET, a core route) is a
/// 400 instead; other answers pass as they are.
#[tokio::test]
async fn a_websocket_over_http2_nobody_relays_is_refused() {
    let (up, _) = upstream().await;
    let server = start(
        json!({ "rules": [rule("^/plain/(.*)$", &format!("http://{up}/echo/$1"), json!({}))] }),
        None,
    )
    .await;

    // Over HTTP/1.1 the same rule forwards a plain GET: the upstream
    // answers it, and no WebSocket opens.
    let res = crate::server::client()
        .get(server.url("/plain/chat"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "the upstream's answer to a plain GET");
    let seen: Value = res.json().await.expect("json");
    assert_eq!(seen["method"], "GET");
    for gone in ["upgrade", "connection"] {
        assert_eq!(crate::plugins::seen_header(&seen, gone), None, "{seen}");
    }

    let mut send = h2(&server).await;
    for path in ["/plain/chat", "/_/api/health"] {
        let res = connect(&mut send, &server, path, "websocket").await;
        let body = error(res, 400, "WEBSOCKET_NOT_RELAYED").await;
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(path) && message.contains("\"websocket\": true"),
            "{body}"
        );
    }
    // An error answer is the client's as it is: no app `nowhere`.
    let res = connect(&mut send, &server, "/nowhere/", "websocket").await;
    assert_eq!(res.status(), 404);
    let res = get(&mut send, &server, "/_/api/health").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_websocket_over_http2_gets_a_close_frame_at_shutdown() {
    let up = echo_upstream().await;
    let server = start(relay_ws(up), None).await;
    let mut send = h2(&server).await;
    let res = connect(&mut send, &server, "/ws/live", "websocket").await;
    assert_eq!(res.status(), 200);
    let mut ws = websocket(res).await;
    // The HTTP/2 connection drains around the stream: the close frame
    // still reaches the client, well within the 30 s grace period.
    let (started, stopping) = echo_then_stop(&mut ws, server).await;
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

/// A relay holds its HTTP/2 connection busy: the server's idle timeout,
/// which closes a connection with no request in flight and no byte moving,
/// does not cut a silent WebSocket under its own (longer) idle limit.
#[tokio::test]
async fn a_silent_websocket_over_http2_outlives_the_connection_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = echo_upstream().await;
    let idle = Duration::from_millis(300);
    let server = start_limited(
        relay_ws(up),
        buntime::server::ConnectionLimits {
            idle_timeout: idle,
            ..Default::default()
        },
    )
    .await;
    let mut send = h2(&server).await;
    let res = connect(&mut send, &server, "/ws/quiet", "websocket").await;
    assert_eq!(res.status(), 200);
    let mut ws = websocket(res).await;
    ws.send(Message::text("first")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("a message").expect("ok"),
        Message::text("first")
    );

    // Two idle connections in turn, each opened after the WebSocket went
    // quiet, are closed by the server: by then it has been silent for more
    // than the idle timeout and one look of the watchdog.
    let addr = server.url("").trim_start_matches("http://").to_owned();
    for _ in 0..2 {
        let mut control = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        control
            .write_all(format!("GET /_/api/health HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), control.read_to_end(&mut all))
            .await
            .expect("the idle connection was closed")
            .expect("read");
        assert!(
            all.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&all)
        );
    }

    let sent = ws.send(Message::text("still here")).await;
    assert!(
        sent.is_ok(),
        "the relay's connection was closed as idle: {sent:?}"
    );
    let back = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer");
    assert!(
        matches!(&back, Some(Ok(m)) if *m == Message::text("still here")),
        "the relay's connection was closed as idle: {back:?}"
    );
}

/// Hostile upstream: it switches protocols with a `Sec-WebSocket-Accept`
/// that does not answer the key the host sent, so it did not read the
/// handshake as a WebSocket server would. The client gets a 502, not a 200.
#[tokio::test]
async fn an_upstream_switching_with_a_wrong_accept_is_502() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let up = listener.local_addr().expect("addr");
    let (head_tx, mut head_rx) = tokio::sync::mpsc::channel::<String>(1);
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = head_tx
            .send(String::from_utf8_lossy(&head).into_owned())
            .await;
        let _ = stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
                  sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            )
            .await;
        // Held open: the host must not wait on it.
        let _ = stream.read(&mut buf).await;
    });
    let server = start(relay_ws(up), None).await;
    let mut send = h2(&server).await;
    let res = connect(&mut send, &server, "/ws/chat", "websocket").await;
    let body = error(res, 502, "UPSTREAM_FAILED").await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Sec-WebSocket-Accept")),
        "{body}"
    );
    // What the upstream got: an HTTP/1.1 handshake with the host's key.
    let head = head_rx.recv().await.expect("the upstream's request head");
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("GET /ws/chat HTTP/1.1\r\n"), "{head}");
    for line in [
        "upgrade: websocket",
        "connection: upgrade",
        "sec-websocket-version: 13",
        "sec-websocket-key: ",
    ] {
        assert!(lower.contains(line), "`{line}` not in {head}");
    }
}
