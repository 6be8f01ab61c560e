//! `@buntime/plugin-keyval` spoken to as the original client
//! (`@buntime/keyval`) speaks: raw HTTP requests in its shapes, route by
//! route and mutation kind by mutation kind, checked against the answers it
//! reads — and values checked as text, since a value must come back exactly
//! as it was written (member order, number spelling, unicode).
//!
//! One server serves the whole suite (starting one per test would cost more
//! than the tests); each test works in a tenant of its own, so keys,
//! queues, indexes and watch topics never meet.

mod atomic;
mod keys;
mod queue;
mod watch;

use std::path::Path;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use serde_json::Value;

use crate::server::TestServer;

/// A value whose text must survive: member order that is not sorted,
/// numbers spelled in ways a parser would respell, escapes and non-ASCII.
const VALUE: &str = r#"{"name":"Ada","n":3,"ratio":1.50,"big":123456789012345678901234567890,"exp":1E3,"neg":-0.0,"text":"é\u00e9 \"q\" 😀","nested":{"z":[1.0,2e-3,{"b":true,"a":null}],"a":{}}}"#;

/// The shared server's base URL, started on first use on a runtime of its
/// own (each test has its own runtime; the server outlives them all).
fn base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the compat server's runtime");
            rt.block_on(async move {
                // In the target's scratch dir, which cargo owns: the server
                // runs until the test process exits and never drops it, so
                // earlier runs' dirs (an hour old) are removed here.
                remove_stale(Path::new(env!("CARGO_TARGET_TMPDIR")));
                let dir = tempfile::Builder::new()
                    .prefix("keyval-compat-")
                    .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                    .expect("tempdir");
                std::fs::create_dir_all(dir.path().join("apps")).expect("mkdir");
                std::fs::create_dir_all(dir.path().join("plugins")).expect("mkdir");
                super::kit(
                    dir.path(),
                    "kvuser",
                    r#""base": "kvuser", "dependencies": ["@buntime/plugin-keyval"], "capabilities": {"services": true}"#,
                );
                let server = TestServer::try_start_plugins_in(dir, buntime::plugins::embedded())
                    .await
                    .expect("server with the core plugins");
                tx.send(server.base.clone()).expect("hand over the URL");
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("the compat server started")
    })
}

/// Removes `keyval-compat-*` dirs in `root` last touched over an hour ago.
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with("keyval-compat-")
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The original client's view of the API, in one tenant.
struct Client {
    http: reqwest::Client,
    tenant: &'static str,
}

/// A status and the body's text.
struct Answer {
    status: u16,
    text: String,
}

impl Answer {
    /// The body as JSON (for shapes; values are checked on [`Answer::text`]).
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("status {}: not JSON ({e}): {}", self.status, self.text))
    }

    /// Asserts a 200 and returns the JSON body.
    fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text);
        self.json()
    }
}

impl Client {
    fn new(tenant: &'static str) -> Self {
        Self {
            http: reqwest::Client::new(),
            tenant,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/_/keyval/api{path}", base())
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> Answer {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("x-tenant-id", self.tenant);
        if let Some(b) = body {
            // As the client sends every body: JSON text with this header.
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let res = req.send().await.expect("request");
        Answer {
            status: res.status().as_u16(),
            text: res.text().await.expect("body"),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &str) -> Answer {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: &str) -> Answer {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str, body: Option<&str>) -> Answer {
        self.send(reqwest::Method::DELETE, path, body).await
    }

    /// `kv.set(key, value)`: `PUT /keys/<path>` that must succeed; the versionstamp.
    async fn set(&self, path: &str, value: &str) -> String {
        let out = self.put(&format!("/keys/{path}"), value).await.ok();
        assert_eq!(out["ok"], true, "{out}");
        out["versionstamp"]
            .as_str()
            .expect("versionstamp")
            .to_owned()
    }

    /// `kv.atomic()…commit()`: `POST /atomic` with this body.
    async fn commit(&self, body: &str) -> Answer {
        self.post("/atomic", body).await
    }

    /// The stored value's text at `path` (`GET /keys/<path>`).
    async fn value_text(&self, path: &str) -> String {
        let a = self.get(&format!("/keys/{path}")).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.text);
        value_of(&a.text)
    }

    /// Opens an event stream, as the client's `fetch` with
    /// `Accept: text/event-stream` does.
    async fn stream(&self, path: &str) -> Sse {
        let res = self
            .http
            .get(self.url(path))
            .header("x-tenant-id", self.tenant)
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("stream");
        assert_eq!(res.status(), 200, "{path}");
        Sse {
            body: Box::pin(res.bytes_stream()),
            buf: String::new(),
        }
    }
}

/// The text of the first `"value":` member of an entry's JSON text (the
/// entry's own value: `key` comes first, and keys hold no objects here).
fn value_of(entry: &str) -> String {
    let start = entry.find("\"value\":").expect("a value member") + "\"value\":".len();
    let raw: &serde_json::value::RawValue = serde_json::Deserializer::from_str(&entry[start..])
        .into_iter::<&serde_json::value::RawValue>()
        .next()
        .expect("a value")
        .expect("JSON");
    raw.get().to_owned()
}

/// The client's end of an event stream, read as the client reads it:
/// `event:` and `data:` lines, an event ending at a blank line.
struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    /// The next event named `name` within a few seconds: its `data` text.
    async fn next(&mut self, name: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = "";
                let mut data = "";
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = v.trim();
                    }
                }
                if event == name {
                    return data.to_owned();
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .unwrap_or_else(|_| panic!("no `{name}` event within 5 s"))
                .expect("the stream ended");
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
    }
}
