//! Helpers shared by the tests that run the `buntime` binary.
#![allow(dead_code, reason = "each test binary uses its own part")]

use std::io::{BufRead, BufReader, Read};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_buntime");

/// The `RUNTIME_CACHE_DIR` of the servers these tests start: one
/// compiled-module cache for the whole test build, so the core plugins are
/// compiled once rather than by every `buntime` process.
#[allow(dead_code, reason = "not every test binary starts a server")]
pub(crate) const SHARED_MODULE_CACHE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/module-cache");

/// The port `buntime serve` announces on the first line of its stdout.
pub(crate) fn announced_port(child: &mut std::process::Child) -> u16 {
    let stdout = child.stdout.take().expect("stdout");
    let first = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a first line")
        .expect("utf-8");
    first
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"))
}

pub(crate) fn http_get(port: u16, path: &str) -> String {
    http_get_at("127.0.0.1", port, path)
}

pub(crate) fn http_get_at(host: &str, port: u16, path: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect((host, port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}
