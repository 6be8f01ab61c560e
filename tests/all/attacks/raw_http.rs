//! Blocking HTTP/1.1 over plain sockets, for tests whose server may be
//! wedged: these clients run on their own threads, never on the server's
//! runtime, so a stalled server fails the test instead of stalling it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response as read off the wire.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// `GET path` on a fresh connection (closed after the answer); `Err` if no
/// complete answer came within `timeout`.
pub(crate) fn get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<RawResponse> {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
        timeout,
    )
}

/// Sends `raw` on a fresh connection and reads until the server closes it.
pub(crate) fn request(addr: &str, raw: &str, timeout: Duration) -> std::io::Result<RawResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(raw.as_bytes())?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    parse(&bytes)
}

/// Splits one response (`connection: close`, so the body runs to the end).
pub(crate) fn parse(bytes: &[u8]) -> std::io::Result<RawResponse> {
    let text = String::from_utf8_lossy(bytes);
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP response: {text:?}"),
        )
    };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok(RawResponse {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// The `host:port` of a test server's base URL.
pub(crate) fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}
