//! Connections cannot exhaust the server: a client that sends nothing, part
//! of the HTTP/2 preface, an HTTP/2 connection without a stream, an idle
//! keep-alive connection or a stalled body is cut off in bounded time, and
//! the number of open connections is capped with the accept loop healthy
//! at the cap.

use std::time::{Duration, Instant};

use buntime::server::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::raw_http;
use crate::server::{TestServer, install_echo};

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..ConnectionLimits::default()
    }
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(raw_http::addr(&server.base))
        .await
        .expect("connect")
}

/// How long a connection these tests expect to be cut may stay open. The
/// limits above are 300 ms; a server that ignored them would wait for the
/// defaults (header 10 s, body 30 s, idle 60 s), so half the shortest of
/// those tells the two apart and leaves a loaded machine room.
fn cut_within() -> Duration {
    ConnectionLimits::default().header_read_timeout / 2
}

/// Reads until the server closes the connection; what it sent. Fails the
/// test if it stays open for [`cut_within`].
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(cut_within(), stream.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {:?}: {:?}",
        cut_within(),
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_nothing_is_dropped() {
    let server = TestServer::start_full(4, limits(), |_| {}).await;
    let mut silent = connect(&server).await;
    let sent = until_closed(&mut silent).await;
    assert_eq!(sent, "");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_of_the_http2_preface_is_dropped() {
    let server = TestServer::start_full(4, limits(), |_| {}).await;
    let mut partial = connect(&server).await;
    partial
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    until_closed(&mut partial).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_opens_no_stream_is_dropped() {
    let server = TestServer::start_full(4, limits(), |_| {}).await;
    let mut h2 = connect(&server).await;
    // The preface and an empty SETTINGS frame, then nothing.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write");
    until_closed(&mut h2).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    // hyper's own header timer would also end an idle HTTP/1 connection;
    // set it far out so that the idle timeout is what is tested.
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(30),
        ..limits()
    };
    let server = TestServer::start_full(4, limits, |_| {}).await;
    let mut idle = connect(&server).await;
    idle.write_all(b"GET /_/api/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let sent = until_closed(&mut idle).await;
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    assert!(!sent.contains("connection: close"), "{sent}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_request_head_trickled_byte_by_byte_is_cut_off() {
    // The first request is answered; the second head never ends, one byte
    // every 50 ms: bytes keep moving, so the idle timeout alone would
    // never close the connection, and the header timeout must.
    let server = TestServer::start_full(4, limits(), |_| {}).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(b"GET /_/api/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 12];
    stream
        .read_exact(&mut first)
        .await
        .expect("the first answer");
    assert_eq!(&first, b"HTTP/1.1 200");
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let _ = writer
            .write_all(b"GET /_/api/health HTTP/1.1\r\nx-slow: ")
            .await;
        let mut interval = tokio::time::interval(Duration::from_millis(50));
        loop {
            interval.tick().await;
            if writer.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let mut rest = Vec::new();
    let read = tokio::time::timeout(cut_within(), reader.read_to_end(&mut rest)).await;
    trickle.abort();
    assert!(
        read.is_ok(),
        "the server kept a connection trickling its second head open for {:?}",
        cut_within()
    );
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("HTTP/1.1"),
        "the unfinished head got an answer: {rest}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_answered_408() {
    let server = TestServer::start_full(4, limits(), |root| {
        install_echo(root, "echo", None);
    })
    .await;
    // Compiled first, so that what is timed is the body's wait alone.
    assert_eq!(
        crate::server::get(&server.url("/echo/")).await.status(),
        200
    );
    let mut stalled = connect(&server).await;
    stalled
        .write_all(b"POST /echo/ HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly ten b")
        .await
        .expect("write");
    let sent = until_closed(&mut stalled).await;
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(sent.contains("BODY_TIMEOUT"), "{sent}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_and_the_cap_frees_up() {
    let server = TestServer::start_full(
        4,
        ConnectionLimits {
            max_connections: 2,
            ..ConnectionLimits::default()
        },
        |_| {},
    )
    .await;
    // Two keep-alive connections, each with a request answered.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect(&server).await;
        c.write_all(b"GET /_/api/health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).await.expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(c);
    }
    let addr = raw_http::addr(&server.base);
    let refused = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            raw_http::get(&addr, "/_/api/health", Duration::from_secs(5))
        })
        .await
        .expect("join")
        .expect("an answer")
    };
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.body.contains("TOO_MANY_CONNECTIONS"), "{refused:?}");
    assert!(refused.head.contains("retry-after: 1"), "{refused:?}");
    // One leaves: new connections are served again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let addr = addr.clone();
        let res = tokio::task::spawn_blocking(move || {
            raw_http::get(&addr, "/_/api/health", Duration::from_secs(5))
        })
        .await
        .expect("join")
        .expect("an answer");
        if res.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the cap never freed up: {res:?}");
    }
    server.stop().await;
}
