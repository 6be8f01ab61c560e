//! `@buntime/plugin-keyval` end to end, the parts that move or that clients
//! can abuse: the queue (delays, retries, dead letters, `GET /queue/listen`),
//! watch streams, full-text indexes, hostile input and metrics — the real
//! server on loopback over SQLite files in `dir/data`.

use std::collections::HashSet;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use serde_json::{Value, json};

use crate::server::TestServer;

/// Where the plugin's REST API is mounted.
const API: &str = "/_/keyval/api";

/// How long a test waits for an event or a message it expects: they take
/// milliseconds; the margin is for a loaded machine, and only a failing
/// test waits this long.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// A server with the core plugins and an HTTP client for the keyval API.
struct Kv {
    server: TestServer,
    http: reqwest::Client,
}

/// A status and JSON body (`Null` when the body is empty).
type Answer = (u16, Value);

impl Kv {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server with this `buntime.jsonc`, if any.
    async fn start_with(buntime_jsonc: Option<&str>) -> Self {
        let server = TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
            if let Some(text) = buntime_jsonc {
                super::config(root, text);
            }
        })
        .await
        .expect("server with the core plugins");
        Self {
            server,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        self.server.url(&format!("{API}{path}"))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        answer(req.send().await.expect("request")).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    async fn put(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send(self.http.delete(self.url(path))).await
    }

    /// `method path` with `body` sent as it is (not necessarily JSON).
    async fn raw(&self, method: reqwest::Method, path: &str, body: impl Into<String>) -> Answer {
        let body: String = body.into();
        self.send(
            self.http
                .request(method, self.url(path))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// `PUT /keys/<path>` that must succeed; returns the versionstamp.
    async fn set(&self, path: &str, value: &Value) -> String {
        let (status, body) = self.put(&format!("/keys/{path}"), value).await;
        assert_eq!(status, 200, "PUT {path}: {body}");
        body["versionstamp"]
            .as_str()
            .expect("a versionstamp")
            .to_owned()
    }

    /// `POST /atomic` that must succeed.
    async fn atomic(&self, body: &Value) -> Value {
        let (status, answer) = self.post("/atomic", body).await;
        assert_eq!(status, 200, "{body}: {answer}");
        answer
    }

    async fn stats(&self) -> Value {
        let (status, body) = self.get("/queue/stats").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `POST /queue/enqueue` that must succeed; returns the message id.
    async fn enqueue(&self, body: &Value) -> String {
        let (status, answer) = self.post("/queue/enqueue", body).await;
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(answer["ok"], true);
        answer["id"].as_str().expect("an id").to_owned()
    }

    /// `GET /queue/poll`: the message, or `None` when it answers
    /// `{"message": null}`.
    async fn poll(&self) -> Option<Value> {
        let (status, body) = self.get("/queue/poll").await;
        assert_eq!(status, 200, "poll: {body}");
        Some(body["message"].clone()).filter(|m| !m.is_null())
    }

    /// Polls until a message comes or `within` passes.
    async fn poll_until(&self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.poll().await {
                return Some(m);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the server has exactly `n` event streams open (a stream
    /// whose client left is gone once the server has dropped it).
    async fn wait_for_streams(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, metrics) = self
                .send(
                    self.http
                        .get(self.server.url("/_/metrics"))
                        .header("accept", "application/json"),
                )
                .await;
            assert_eq!(status, 200, "{metrics}");
            if metrics["eventStreams"] == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} event streams open, waiting for {n}",
                metrics["eventStreams"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens an SSE stream at `path`.
    async fn stream(&self, path: &str) -> Sse {
        let res = self.http.get(self.url(path)).send().await.expect("stream");
        assert_eq!(res.status(), 200, "{path}");
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{path}: {content_type}"
        );
        Sse::new(res)
    }

    /// Everything a client can see of the store: all entries, the indexes
    /// and the queue's counts.
    async fn snapshot(&self) -> Value {
        let (_, entries) = self.get("/keys?limit=1000").await;
        let (_, indexes) = self.get("/indexes").await;
        json!({ "entries": entries, "indexes": indexes, "queue": self.stats().await })
    }
}

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    if text.is_empty() {
        return (status, Value::Null);
    }
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: not JSON ({e}): {text}"));
    (status, body)
}

/// One server-sent event.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) data: Value,
}

/// A client's end of an event stream.
pub(crate) struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    /// Reads the event stream of `res`.
    pub(crate) fn new(res: reqwest::Response) -> Self {
        Sse {
            body: Box::pin(res.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event within `within` (`None`: none came, or the stream ended).
    pub(crate) async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let text = data.join("\n");
                let data = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("event `{name}`: data is not JSON ({e}): {text}"));
                return Some(Event { name, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
    }
}

/// Asserts an error answer: `status`, a JSON `message` containing `needle`.
fn refused((status, body): &Answer, want: u16, needle: &str) {
    assert_eq!(*status, want, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "`{needle}` not in {body}");
}

/// The keys of a search answer, in its order.
fn hits(body: &Value) -> Vec<Value> {
    body.as_array()
        .unwrap_or_else(|| panic!("not an array of entries: {body}"))
        .iter()
        .map(|e| e["key"].clone())
        .collect()
}

mod fts;
mod hostile;
mod metrics;
mod queue;
mod watch;
