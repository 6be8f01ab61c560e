//! What a server adds to one request's latency, measured precisely enough to
//! read single microseconds.
//!
//! ```text
//! latency <requests per URL> [-H 'name: value']... <url> <url>...
//! ```
//!
//! `-H` adds a header to every request (e.g. an `Origin`, for CORS).
//!
//! One keep-alive connection per URL, one request in flight at a time, the
//! URLs taken in turn (a, b, c, a, b, c, …) so that every URL sees the same
//! drift of the machine's speed, and many thousands of samples. Prints one
//! line per URL: `p50 p90 p99` in microseconds. wrk at one connection runs
//! each URL in its own few seconds, and the machine's drift between them
//! (often several microseconds at p50) is as large as what a plugin adds.
//!
//! The client speaks just enough HTTP/1.1 for this: a `GET`, a response
//! with `Content-Length`. Anything else is an error naming the URL.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Instant;

/// Requests per URL before measuring (connections, caches, instances warm).
const WARMUP: usize = 2_000;

struct Target {
    url: String,
    request: Vec<u8>,
    reader: BufReader<TcpStream>,
    samples: Vec<u32>,
}

impl Target {
    fn connect(url: &str, headers: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let stream =
            TcpStream::connect(authority).map_err(|e| format!("{url}: cannot connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Self {
            url: url.to_owned(),
            request: format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n{headers}\r\n")
                .into_bytes(),
            reader: BufReader::new(stream),
            samples: Vec::new(),
        })
    }

    /// One request and its whole response; returns the round trip in ns.
    fn round_trip(&mut self) -> Result<u32, String> {
        let started = Instant::now();
        self.reader
            .get_mut()
            .write_all(&self.request)
            .map_err(|e| format!("{}: write: {e}", self.url))?;
        let mut line = String::new();
        let mut status_line = true;
        let mut length = None;
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| format!("{}: read: {e}", self.url))?;
            if n == 0 {
                return Err(format!("{}: the server closed the connection", self.url));
            }
            let text = line.trim_end();
            if status_line {
                if !text.starts_with("HTTP/1.1 200") {
                    return Err(format!("{}: answered `{text}`", self.url));
                }
                status_line = false;
            } else if text.is_empty() {
                break;
            } else if let Some((name, value)) = text.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length =
            length.ok_or_else(|| format!("{}: response without Content-Length", self.url))?;
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| format!("{}: body: {e}", self.url))?;
        Ok(started.elapsed().as_nanos().min(u32::MAX as u128) as u32)
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn run(per_url: usize, headers: &str, urls: &[String]) -> Result<(), String> {
    let mut targets = urls
        .iter()
        .map(|u| Target::connect(u, headers))
        .collect::<Result<Vec<_>, _>>()?;
    for _ in 0..WARMUP {
        for t in &mut targets {
            t.round_trip()?;
        }
    }
    for _ in 0..per_url {
        for t in &mut targets {
            let ns = t.round_trip()?;
            t.samples.push(ns);
        }
    }
    for t in &mut targets {
        t.samples.sort_unstable();
        let s = &t.samples;
        println!(
            "{} {:.1} {:.1} {:.1}",
            t.url,
            percentile(s, 0.5),
            percentile(s, 0.9),
            percentile(s, 0.99)
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: latency <requests per URL> [-H 'name: value']... <url> <url>...";
    let Some((count, mut rest)) = args.split_first() else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let Ok(per_url) = count.parse::<usize>() else {
        eprintln!("latency: `{count}` is not a number of requests");
        return ExitCode::from(2);
    };
    let mut headers = String::new();
    while let [flag, header, more @ ..] = rest
        && flag == "-H"
    {
        if !header.contains(':') || header.contains(['\r', '\n']) {
            eprintln!("latency: `-H {header}` is not one `name: value` header");
            return ExitCode::from(2);
        }
        headers.push_str(header);
        headers.push_str("\r\n");
        rest = more;
    }
    if rest.is_empty() {
        eprintln!("{usage}");
        return ExitCode::from(2);
    }
    match run(per_url.max(1), &headers, rest) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency: {e}");
            ExitCode::FAILURE
        }
    }
}
