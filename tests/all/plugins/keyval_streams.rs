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

    /// `GET /queue/poll`: the message, or `None` on 204.
    async fn poll(&self) -> Option<Value> {
        let (status, body) = self.get("/queue/poll").await;
        match status {
            200 => Some(body),
            204 => None,
            other => panic!("poll answered {other}: {body}"),
        }
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
        Sse {
            body: Box::pin(res.bytes_stream()),
            buf: String::new(),
        }
    }

    /// Everything a client can see of the store: all entries, the indexes
    /// and the queue's counts.
    async fn snapshot(&self) -> Value {
        let (_, entries) = self.get("/keys?limit=1000").await;
        let (_, indexes) = self.get("/indexes").await;
        json!({ "entries": entries, "indexes": indexes["indexes"], "queue": self.stats().await })
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
struct Event {
    name: String,
    data: Value,
}

/// A client's end of an event stream.
struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    /// The next event within `within` (`None`: none came, or the stream ended).
    async fn next(&mut self, within: Duration) -> Option<Event> {
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

    /// Asserts no event comes within `within`.
    async fn quiet(&mut self, within: Duration) {
        if let Some(e) = self.next(within).await {
            panic!("an unexpected event: {e:?}");
        }
    }
}

/// Asserts an error answer: `status`, a JSON `message` containing `needle`.
fn refused((status, body): &Answer, want: u16, needle: &str) {
    assert_eq!(*status, want, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "`{needle}` not in {body}");
}

// ---------------------------------------------------------------- queue

#[tokio::test]
async fn queue_enqueue_poll_ack_and_stats() {
    let kv = Kv::start().await;
    assert_eq!(kv.poll().await, None, "an empty queue");
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 0, "processing": 0, "dlq": 0, "total": 0 })
    );

    let id = kv
        .enqueue(&json!({ "value": { "job": "resize", "n": 1 } }))
        .await;
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 1, "processing": 0, "dlq": 0, "total": 1 })
    );

    let m = kv.poll().await.expect("the message");
    assert_eq!(m["id"], id);
    assert_eq!(m["value"], json!({ "job": "resize", "n": 1 }));
    assert_eq!(m["attempts"], 1);
    assert_eq!(m["maxAttempts"], 4, "the default schedule has 3 retries");
    assert!(m["createdAt"].as_i64().is_some_and(|t| t > 0), "{m}");
    assert_eq!(
        kv.poll().await,
        None,
        "a locked message is not delivered twice"
    );
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 0, "processing": 1, "dlq": 0, "total": 1 })
    );

    let (status, body) = kv.post("/queue/ack", &json!({ "id": id })).await;
    assert_eq!((status, body), (200, json!({ "ok": true })));
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 0, "processing": 0, "dlq": 0, "total": 0 })
    );

    // Acking again, or an id that never existed, is a 404 naming the id.
    let again = kv.post("/queue/ack", &json!({ "id": id })).await;
    refused(
        &again,
        404,
        &format!("message {id} is not waiting for an ack"),
    );
    assert_eq!(again.1["code"], "NOT_FOUND");
    refused(
        &kv.post("/queue/ack", &json!({ "id": "987654" })).await,
        404,
        "message 987654",
    );
    refused(
        &kv.post("/queue/nack", &json!({ "id": 987654 })).await,
        404,
        "message 987654",
    );
    refused(
        &kv.post("/queue/ack", &json!({ "id": "seven" })).await,
        400,
        "`id` must be a message id",
    );
    // A message that is waiting (not dequeued) cannot be acked either.
    let waiting = kv.enqueue(&json!({ "value": 2 })).await;
    refused(
        &kv.post("/queue/ack", &json!({ "id": waiting })).await,
        404,
        "not dequeued",
    );
    assert_eq!(kv.stats().await["pending"], 1);
    kv.server.stop().await;
}

#[tokio::test]
async fn a_delayed_message_waits_for_its_delay() {
    let kv = Kv::start().await;
    kv.enqueue(&json!({ "value": "warm-up" })).await;
    let warm = kv.poll().await.expect("warm-up");
    kv.post("/queue/ack", &json!({ "id": warm["id"] })).await;

    let sent = Instant::now();
    let id = kv
        .enqueue(&json!({ "value": "later", "options": { "delay": 300 } }))
        .await;
    assert_eq!(kv.poll().await, None, "not pollable at once");
    assert_eq!(kv.stats().await["pending"], 1);
    let m = kv
        .poll_until(Duration::from_secs(3))
        .await
        .expect("delivered after its delay");
    let waited = sent.elapsed();
    assert_eq!(m["id"], id);
    assert_eq!(m["value"], "later");
    // The delay runs on the database's clock, which the test does not
    // share to the millisecond; 250 ms leaves room for that.
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_millis(1500), "{waited:?}");

    refused(
        &kv.post(
            "/queue/enqueue",
            &json!({ "value": 1, "options": { "delay": -5 } }),
        )
        .await,
        400,
        "`options.delay`",
    );
    kv.server.stop().await;
}

#[tokio::test]
async fn a_late_answer_never_acks_a_newer_delivery() {
    let kv = Kv::start_with(Some(
        r#"{ "plugins": [["@buntime/plugin-keyval", { "queueLockDuration": 300 }]] }"#,
    ))
    .await;
    let id = kv.enqueue(&json!({ "value": "job" })).await;
    let first = kv.poll().await.expect("first delivery");
    assert_eq!(first["attempts"], 1);

    // Consumer A is too slow: its lock runs out before it answers.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = kv.post("/queue/ack", &json!({ "id": id })).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "LOCK_EXPIRED", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("queueLockDuration"),
        "{body}"
    );

    // Consumer B gets it again; A's answers for attempt 1 are refused and
    // leave B's delivery alone.
    let second = kv.poll().await.expect("redelivered after the lock ran out");
    assert_eq!(second["attempts"], 2);
    for path in ["/queue/ack", "/queue/nack"] {
        let (status, body) = kv
            .post(path, &json!({ "id": id, "attempts": 1, "error": "late" }))
            .await;
        assert_eq!(status, 409, "{path}: {body}");
        assert_eq!(body["code"], "REDELIVERED", "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains("attempt 2"),
            "{body}"
        );
    }
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 0, "processing": 1, "dlq": 0, "total": 1 })
    );
    // A bad attempt number is a 400 that changes nothing.
    let (status, body) = kv
        .post("/queue/ack", &json!({ "id": id, "attempts": "two" }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("`attempts`"),
        "{body}"
    );

    // B answers for its own delivery.
    let (status, body) = kv
        .post("/queue/ack", &json!({ "id": id, "attempts": 2 }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 0, "processing": 0, "dlq": 0, "total": 0 })
    );
    let (status, body) = kv.post("/queue/ack", &json!({ "id": id })).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn nack_retries_after_the_backoff_then_dead_letters() {
    let kv = Kv::start().await;
    let value = json!({ "email": "ada@example.com" });
    let id = kv
        .enqueue(&json!({
            "value": value,
            "options": { "backoffSchedule": [200], "keysIfUndelivered": [["failed", "mail", 1]] },
        }))
        .await;

    let first = kv.poll().await.expect("first delivery");
    assert_eq!(first["id"], id);
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["maxAttempts"], 2);
    let (status, body) = kv
        .post("/queue/nack", &json!({ "id": id, "error": "smtp down" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "ok": true, "retry": true, "delay": 200, "attempts": 1 })
    );
    let nacked = Instant::now();
    assert_eq!(kv.poll().await, None, "not before the backoff delay");
    assert_eq!(kv.stats().await["pending"], 1);

    let second = kv
        .poll_until(Duration::from_secs(3))
        .await
        .expect("retried");
    assert!(
        nacked.elapsed() >= Duration::from_millis(150),
        "{:?}",
        nacked.elapsed()
    );
    assert_eq!(second["id"], id);
    assert_eq!(second["attempts"], 2);
    assert_eq!(second["value"], value);

    // The last attempt fails: the value lands at keysIfUndelivered, the
    // message in the dead-letter queue.
    assert_eq!(kv.get("/keys/failed/mail/1").await.0, 404);
    let (status, body) = kv
        .post(
            "/queue/nack",
            &json!({ "id": id, "error": "smtp still down" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deadLettered"], true);
    assert_eq!(body["retry"], false);
    let (status, entry) = kv.get("/keys/failed/mail/1").await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["key"], json!(["failed", "mail", 1]));
    assert_eq!(entry["value"], value);
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 0, "processing": 0, "dlq": 1, "total": 0 })
    );
    assert_eq!(kv.poll().await, None);

    // The dead-letter queue: list, get, requeue.
    let (status, list) = kv.get("/queue/dlq").await;
    assert_eq!(status, 200, "{list}");
    let messages = list["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{list}");
    let dead = &messages[0];
    assert_eq!(dead["originalId"], id);
    assert_eq!(dead["value"], value);
    assert_eq!(dead["errorMessage"], "smtp still down");
    assert_eq!(dead["attempts"], 2);
    let dead_id = dead["id"].as_str().expect("dlq id").to_owned();
    let (status, one) = kv.get(&format!("/queue/dlq/{dead_id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(&one, dead);

    let (status, body) = kv
        .post(&format!("/queue/dlq/{dead_id}/requeue"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let requeued = body["id"].as_str().expect("new id").to_owned();
    assert_ne!(requeued, id);
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 1, "processing": 0, "dlq": 0, "total": 1 })
    );
    refused(
        &kv.get(&format!("/queue/dlq/{dead_id}")).await,
        404,
        "no dead letter",
    );
    let again = kv.poll().await.expect("requeued message");
    assert_eq!(again["id"], requeued);
    assert_eq!(again["value"], value);
    assert_eq!(again["attempts"], 1, "fresh attempts");
    assert_eq!(again["maxAttempts"], 2, "the same schedule");
    kv.post("/queue/ack", &json!({ "id": requeued })).await;

    // Three messages with no retries go straight to the DLQ on one nack.
    for n in 0..3 {
        kv.enqueue(&json!({ "value": n, "options": { "backoffSchedule": [] } }))
            .await;
        let m = kv.poll().await.expect("message");
        let (_, body) = kv.post("/queue/nack", &json!({ "id": m["id"] })).await;
        assert_eq!(body["deadLettered"], true, "{body}");
    }
    let (_, list) = kv.get("/queue/dlq?limit=2").await;
    assert_eq!(list["messages"].as_array().map(Vec::len), Some(2), "{list}");
    let (_, rest) = kv.get("/queue/dlq?limit=2&offset=2").await;
    assert_eq!(rest["messages"].as_array().map(Vec::len), Some(1), "{rest}");
    assert_eq!(rest["messages"][0]["value"], 2);
    assert_eq!(rest["messages"][0]["errorMessage"], Value::Null);

    let first_dead = list["messages"][0]["id"].as_str().expect("id").to_owned();
    let (status, body) = kv.delete(&format!("/queue/dlq/{first_dead}")).await;
    assert_eq!(
        (status, body),
        (200, json!({ "ok": true, "deletedCount": 1 }))
    );
    refused(
        &kv.delete(&format!("/queue/dlq/{first_dead}")).await,
        404,
        &format!("no dead letter {first_dead}"),
    );
    refused(
        &kv.post(&format!("/queue/dlq/{first_dead}/requeue"), &json!({}))
            .await,
        404,
        "no dead letter",
    );
    assert_eq!(kv.stats().await["dlq"], 2);
    let (status, body) = kv.delete("/queue/dlq").await;
    assert_eq!(
        (status, body),
        (200, json!({ "ok": true, "deletedCount": 2 }))
    );
    let (_, list) = kv.get("/queue/dlq").await;
    assert_eq!(list["messages"], json!([]));
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 0, "processing": 0, "dlq": 0, "total": 0 })
    );
    // The undelivered value stayed where the first dead letter put it.
    assert_eq!(kv.get("/keys/failed/mail/1").await.1["value"], value);
    kv.server.stop().await;
}

#[tokio::test]
async fn listen_streams_messages_and_listeners_never_share_one() {
    let kv = Kv::start().await;
    let mut a = kv.stream("/queue/listen").await;
    a.quiet(Duration::from_millis(200)).await;

    let sent = Instant::now();
    let id = kv
        .enqueue(&json!({ "value": { "hello": "listener" } }))
        .await;
    let e = a
        .next(Duration::from_secs(2))
        .await
        .expect("the message streamed");
    let took = sent.elapsed();
    assert_eq!(e.name, "message");
    assert_eq!(e.data["id"], id);
    assert_eq!(e.data["value"], json!({ "hello": "listener" }));
    assert_eq!(e.data["attempts"], 1);
    // Woken by the enqueue, not by the once-a-second poll.
    assert!(took < Duration::from_millis(500), "{took:?}");
    let (status, _) = kv.post("/queue/ack", &json!({ "id": id })).await;
    assert_eq!(status, 200);

    // Two listeners, twenty messages: each delivered once, to one of them.
    let mut b = kv.stream("/queue/listen").await;
    b.quiet(Duration::from_millis(100)).await;
    let mut sent_ids = HashSet::new();
    for n in 0..20 {
        sent_ids.insert(kv.enqueue(&json!({ "value": n })).await);
    }
    let mut got: Vec<String> = Vec::new();
    let mut per_stream = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 20 && Instant::now() < deadline {
        for (i, s) in [&mut a, &mut b].into_iter().enumerate() {
            while let Some(e) = s.next(Duration::from_millis(50)).await {
                assert_eq!(e.name, "message", "{e:?}");
                got.push(e.data["id"].as_str().expect("id").to_owned());
                per_stream[i] += 1;
            }
        }
    }
    let unique: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "a message went out twice: {got:?}");
    assert_eq!(unique, sent_ids, "every message delivered ({per_stream:?})");
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 0, "processing": 20, "dlq": 0, "total": 20 })
    );
    for id in &got {
        let (status, body) = kv.post("/queue/ack", &json!({ "id": id })).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(kv.stats().await["total"], 0);
    a.quiet(Duration::from_millis(100)).await;
    b.quiet(Duration::from_millis(100)).await;

    // Gone listeners take nothing: after both leave, a message waits for a poll.
    drop(a);
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = kv.enqueue(&json!({ "value": "after" })).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let m = kv.poll().await.expect("no closed stream took the message");
    assert_eq!(m["id"], id);
    kv.server.stop().await;
}

// ---------------------------------------------------------------- watch

#[tokio::test]
async fn watch_sends_the_entries_then_each_change_within_50ms() {
    let kv = Kv::start().await;
    let first = kv.set("a/b", &json!({ "n": 0 })).await;
    kv.set("a/c", &json!("other")).await;

    let mut w = kv.stream("/watch?keys=a/b,a/missing").await;
    let initial = w.next(Duration::from_secs(2)).await.expect("initial");
    assert_eq!(initial.name, "change");
    assert_eq!(
        initial.data,
        json!([
            { "key": ["a", "b"], "value": { "n": 0 }, "versionstamp": first },
            { "key": ["a", "missing"], "value": null, "versionstamp": null },
        ])
    );

    let mut best = Duration::MAX;
    for n in 1..=3 {
        let http = kv.http.clone();
        let url = kv.url("/keys/a/b");
        let sent = Instant::now();
        let put = tokio::spawn(async move {
            http.put(url)
                .json(&json!({ "n": n }))
                .send()
                .await
                .expect("put")
                .json::<Value>()
                .await
                .expect("json")
        });
        let e = w.next(Duration::from_secs(2)).await.expect("a change");
        best = best.min(sent.elapsed());
        let written = put.await.expect("join");
        assert_eq!(e.name, "change");
        assert_eq!(
            e.data,
            json!([{ "key": ["a", "b"], "value": { "n": n }, "versionstamp": written["versionstamp"] }])
        );
    }
    assert!(best < Duration::from_millis(50), "best of 3: {best:?}");

    // Other keys are not this stream's business; a delete is `value: null`.
    kv.set("a/c", &json!("still other")).await;
    kv.set("a/b/deeper", &json!(1)).await;
    let (status, body) = kv
        .raw(reqwest::Method::DELETE, "/keys/a/b", r#"{"exact": true}"#)
        .await;
    assert_eq!((status, body), (200, json!({ "deletedCount": 1 })));
    let e = w.next(Duration::from_secs(2)).await.expect("the delete");
    assert_eq!(
        e.data,
        json!([{ "key": ["a", "b"], "value": null, "versionstamp": null }])
    );
    // The absent key is watched too: writing it is a change.
    let vs = kv.set("a/missing", &json!("here")).await;
    let e = w.next(Duration::from_secs(2)).await.expect("the new key");
    assert_eq!(
        e.data,
        json!([{ "key": ["a", "missing"], "value": "here", "versionstamp": vs }])
    );
    // Writes through an atomic commit are changes as well.
    let done = kv
        .atomic(&json!({ "mutations": [{ "type": "sum", "key": ["a", "b"], "value": 5 }] }))
        .await;
    let e = w.next(Duration::from_secs(2)).await.expect("the sum");
    assert_eq!(e.data[0]["value"], 5);
    assert_eq!(e.data[0]["versionstamp"], done["versionstamp"]);
    w.quiet(Duration::from_millis(200)).await;

    // Without the initial entries the first event is the first change.
    let mut quiet_start = kv.stream("/watch?keys=a/c&initial=false").await;
    quiet_start.quiet(Duration::from_millis(200)).await;
    kv.set("a/c", &json!("third")).await;
    let e = quiet_start
        .next(Duration::from_secs(2))
        .await
        .expect("change");
    assert_eq!(e.data[0]["value"], "third");
    kv.server.stop().await;
}

#[tokio::test]
async fn prefix_watch_sees_its_subtree_only() {
    let kv = Kv::start().await;
    kv.set("a/old", &json!("before")).await;
    let mut all = kv.stream("/watch/prefix?prefix=a").await;
    let initial = all.next(Duration::from_secs(2)).await.expect("initial");
    assert_eq!(initial.name, "change");
    assert_eq!(initial.data.as_array().map(Vec::len), Some(1));
    assert_eq!(initial.data[0]["key"], json!(["a", "old"]));

    let mut w = kv.stream("/watch/prefix?prefix=a&initial=false").await;
    w.quiet(Duration::from_millis(200)).await;
    // Not under ["a"]: another string, the prefix key itself, a string
    // that merely starts with "a", a string with an "a" then a NUL.
    kv.set("ab", &json!(1)).await;
    kv.set("b/a", &json!(1)).await;
    kv.set("a", &json!("the prefix itself")).await;
    kv.atomic(&json!({ "mutations": [{ "type": "set", "key": ["a\u{0}"], "value": 1 }] }))
        .await;
    let (_, listed) = kv.get("/keys?prefix=a").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // Under it, at any depth and of any type.
    let vs = kv.set("a/x", &json!({ "v": 1 })).await;
    let e = w
        .next(Duration::from_secs(2))
        .await
        .expect("a change under a");
    assert_eq!(
        e.data,
        json!([{ "key": ["a", "x"], "value": { "v": 1 }, "versionstamp": vs }])
    );
    kv.atomic(&json!({ "mutations": [
        { "type": "set", "key": ["a", 7, true], "value": "deep" },
        { "type": "set", "key": ["z"], "value": "elsewhere" },
    ] }))
    .await;
    let e = w.next(Duration::from_secs(2)).await.expect("deep change");
    assert_eq!(e.data[0]["key"], json!(["a", 7, true]));
    let (status, _) = kv.delete("/keys/a/x").await;
    assert_eq!(status, 200);
    let e = w.next(Duration::from_secs(2)).await.expect("the delete");
    assert_eq!(
        e.data,
        json!([{ "key": ["a", "x"], "value": null, "versionstamp": null }])
    );
    w.quiet(Duration::from_millis(200)).await;

    // The other prefix stream saw the same subtree changes, nothing else.
    let mut seen = Vec::new();
    while let Some(e) = all.next(Duration::from_millis(200)).await {
        seen.push(e.data[0]["key"].clone());
    }
    assert_eq!(
        seen,
        vec![json!(["a", "x"]), json!(["a", 7, true]), json!(["a", "x"])]
    );

    // The poll variants: the prefix's entries, and whether keys changed.
    let (status, body) = kv.get("/watch/prefix/poll?prefix=a").await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&Value> = body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["key"])
        .collect();
    assert_eq!(keys, [&json!(["a", "old"]), &json!(["a", 7, true])]);

    let vs = kv.set("p/1", &json!(1)).await;
    let path = format!("/watch/poll?keys=p/1,p/2&versionstamps={vs},null");
    let (status, body) = kv.get(&path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], false, "{body}");
    assert_eq!(body["entries"][0]["versionstamp"], vs);
    assert_eq!(body["entries"][1]["value"], Value::Null);
    kv.set("p/2", &json!(2)).await;
    let (_, body) = kv.get(&path).await;
    assert_eq!(body["changed"], true, "a new key: {body}");
    let vs2 = body["entries"][1]["versionstamp"].as_str().expect("vs");
    let (_, body) = kv
        .get(&format!(
            "/watch/poll?keys=p/1,p/2&versionstamps={vs},{vs2}"
        ))
        .await;
    assert_eq!(body["changed"], false, "{body}");
    kv.set("p/1", &json!("rewritten")).await;
    let (_, body) = kv
        .get(&format!(
            "/watch/poll?keys=p/1,p/2&versionstamps={vs},{vs2}"
        ))
        .await;
    assert_eq!(body["changed"], true, "a rewrite: {body}");
    refused(&kv.get("/watch/poll").await, 400, "`keys` is required");
    kv.server.stop().await;
}

#[tokio::test]
async fn streams_end_when_the_client_leaves() {
    let kv = Kv::start().await;
    // Many streams opened and dropped, some of them mid-stream.
    for n in 0..24 {
        let mut w = kv
            .stream(&format!("/watch?keys=gone/{}&initial=false", n % 3))
            .await;
        if n % 2 == 0 {
            kv.set(&format!("gone/{}", n % 3), &json!(n)).await;
            assert!(w.next(Duration::from_secs(2)).await.is_some());
        }
        drop(w);
    }
    let (status, list) = kv.server_json("/_/api/plugins").await;
    assert_eq!(status, 200);
    let keyval = list["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "@buntime/plugin-keyval"))
        .expect("keyval loaded");
    assert_eq!(keyval["state"], "loaded", "{keyval}");
    assert_eq!(keyval["instances"]["inFlight"], 0, "{keyval}");
    assert_eq!(keyval["stats"]["errors"], 0, "{keyval}");

    // A new watch still works.
    let mut w = kv.stream("/watch?keys=gone/1&initial=false").await;
    kv.set("gone/1", &json!("fresh")).await;
    let e = w.next(Duration::from_secs(2)).await.expect("a change");
    assert_eq!(e.data[0]["value"], "fresh");

    // A listener that left dequeues nothing more.
    let listener = kv.stream("/queue/listen").await;
    drop(listener);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = kv.enqueue(&json!({ "value": "for a poll" })).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let m = kv.poll().await.expect("the message is still there");
    assert_eq!(m["id"], id);
    kv.server.stop().await;
}

impl Kv {
    /// GET a server path outside the plugin (e.g. `/_/api/plugins`).
    async fn server_json(&self, path: &str) -> Answer {
        self.send(self.http.get(self.server.url(path))).await
    }
}

// ---------------------------------------------------------------- FTS

/// The keys of a search answer, in its order.
fn hits(body: &Value) -> Vec<Value> {
    body["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries: {body}"))
        .iter()
        .map(|e| e["key"].clone())
        .collect()
}

#[tokio::test]
async fn full_text_indexes_follow_every_write() {
    let kv = Kv::start().await;
    // Written before the index exists.
    kv.set(
        "docs/old",
        &json!({ "title": "Archive", "body": "the lighthouse keeper" }),
    )
    .await;
    kv.set(
        "notes/1",
        &json!({ "title": "lighthouse", "body": "outside the prefix" }),
    )
    .await;

    let (status, body) = kv
        .post(
            "/indexes",
            &json!({ "prefix": "docs", "options": { "fields": ["title", "body"] } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({ "ok": true, "prefix": ["docs"], "fields": ["title", "body"], "tokenize": "unicode61" })
    );
    let (status, list) = kv.get("/indexes").await;
    assert_eq!(status, 200);
    let indexes = list["indexes"].as_array().expect("indexes");
    assert_eq!(indexes.len(), 1, "{list}");
    assert_eq!(indexes[0]["prefix"], json!(["docs"]));
    assert_eq!(indexes[0]["fields"], json!(["title", "body"]));
    assert_eq!(indexes[0]["tokenize"], "unicode61");
    refused(
        &kv.post(
            "/indexes",
            &json!({ "prefix": ["docs"], "options": { "fields": ["title"] } }),
        )
        .await,
        409,
        "an index on this prefix exists",
    );

    let search = |q: &str| kv.get_owned(format!("/search?prefix=docs&query={q}"));
    let (status, body) = search("lighthouse").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        hits(&body),
        [json!(["docs", "old"])],
        "an entry from before the index"
    );

    kv.set(
        "docs/1",
        &json!({ "title": "Rust at sea", "body": "a lighthouse in rust", "year": 2024 }),
    )
    .await;
    kv.set(
        "docs/2",
        &json!({ "title": "Gardening", "body": "rust on the leaves", "year": 2019 }),
    )
    .await;
    kv.atomic(&json!({ "mutations": [
        { "type": "set", "key": ["docs", 3], "value": { "title": "Sailing", "body": "wind" } },
    ] }))
    .await;
    let (_, body) = search("rust").await;
    let mut found = hits(&body);
    found.sort_by_key(Value::to_string);
    assert_eq!(found, [json!(["docs", 1]), json!(["docs", 2])]);
    assert!(body["entries"][0]["value"]["title"].is_string(), "{body}");
    let (_, body) = search("sailing").await;
    assert_eq!(hits(&body), [json!(["docs", 3])], "a write through /atomic");
    let (_, body) = search("lighthouse").await;
    assert_eq!(hits(&body).len(), 2, "{body}");

    // An update replaces what was indexed; a delete removes it.
    kv.set(
        "docs/2",
        &json!({ "title": "Gardening", "body": "roses", "year": 2019 }),
    )
    .await;
    let (_, body) = search("rust").await;
    assert_eq!(hits(&body), [json!(["docs", 1])]);
    let (_, body) = search("roses").await;
    assert_eq!(hits(&body), [json!(["docs", 2])]);
    // A column filter: f0 is the first of `fields` (title), f1 the body.
    let (_, body) = search("f0:lighthouse").await;
    assert_eq!(hits(&body), Vec::<Value>::new(), "no title has it");
    let (_, body) = search("f1:lighthouse").await;
    let mut found = hits(&body);
    found.sort_by_key(Value::to_string);
    assert_eq!(found, [json!(["docs", "old"]), json!(["docs", 1])]);
    let (status, _) = kv.delete("/keys/docs/old").await;
    assert_eq!(status, 200);
    let (_, body) = search("lighthouse").await;
    assert_eq!(hits(&body), [json!(["docs", 1])]);
    let (_, body) = search("keeper").await;
    assert_eq!(hits(&body), Vec::<Value>::new());

    // POST /search narrows with a where filter.
    kv.set(
        "docs/4",
        &json!({ "title": "Rust belt", "body": "steel", "year": 2010 }),
    )
    .await;
    let (status, body) = kv
        .post(
            "/search",
            &json!({ "prefix": ["docs"], "query": "rust", "where": { "year": { "$gte": 2020 } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(hits(&body), [json!(["docs", 1])]);
    let (_, body) = kv
        .post(
            "/search",
            &json!({ "prefix": "docs", "query": "rust", "where": { "title": { "$containsi": "BELT" } } }),
        )
        .await;
    assert_eq!(hits(&body), [json!(["docs", 4])]);
    let (_, body) = kv
        .post(
            "/search",
            &json!({ "prefix": "docs", "query": "rust", "limit": 1 }),
        )
        .await;
    assert_eq!(hits(&body).len(), 1);
    // FTS5 syntax: a prefix query, a phrase, a boolean.
    let (_, body) = search("sail*").await;
    assert_eq!(hits(&body), [json!(["docs", 3])]);
    let (_, body) = search("%22rust%20belt%22").await;
    assert_eq!(hits(&body), [json!(["docs", 4])]);
    let (_, body) = search("rust%20NOT%20steel").await;
    assert_eq!(hits(&body), [json!(["docs", 1])]);

    // Deleting the index: searches are 404, the entries stay.
    let (status, body) = kv.delete("/indexes?prefix=docs").await;
    assert_eq!((status, body), (200, json!({ "ok": true })));
    let gone = search("rust").await;
    refused(&gone, 404, "no index on prefix");
    assert_eq!(kv.get("/indexes").await.1, json!({ "indexes": [] }));
    refused(&kv.delete("/indexes?prefix=docs").await, 404, "no index");
    let (_, count) = kv.get("/keys/count?prefix=docs").await;
    assert_eq!(count, json!({ "count": 4 }));
    // Writes under the old prefix go on working without the triggers.
    kv.set("docs/5", &json!({ "title": "after" })).await;
    // And an index can be made again, with what is there now.
    let (status, _) = kv
        .post(
            "/indexes",
            &json!({ "prefix": "docs", "options": { "fields": ["title"], "tokenize": "porter" } }),
        )
        .await;
    assert_eq!(status, 201);
    let (_, body) = search("gardens").await;
    assert_eq!(hits(&body), [json!(["docs", 2])], "porter stems: {body}");
    kv.server.stop().await;
}

impl Kv {
    /// [`Kv::get`] with an owned path (for closures).
    async fn get_owned(&self, path: String) -> Answer {
        self.get(&path).await
    }
}

// ---------------------------------------------------------------- hostile input

#[tokio::test]
async fn hostile_input_is_refused_and_changes_nothing() {
    let kv = Kv::start().await;
    kv.set("seed/1", &json!({ "name": "Ada", "tags": ["x"] }))
        .await;
    kv.set("seed/2", &json!({ "name": "Bob" })).await;
    kv.set("docs/1", &json!({ "title": "kept", "body": "safe" }))
        .await;
    let (status, _) = kv
        .post(
            "/indexes",
            &json!({ "prefix": "docs", "options": { "fields": ["title", "body"] } }),
        )
        .await;
    assert_eq!(status, 201);
    kv.set("seed/list", &json!(["a"])).await;
    kv.enqueue(&json!({ "value": "queued" })).await;
    let before = kv.snapshot().await;
    assert_eq!(before["entries"].as_array().map(Vec::len), Some(4));

    use reqwest::Method as M;
    let long = "k".repeat(1025);
    let many = vec!["p"; 21].join("/");
    let big = format!("\"{}\"", "x".repeat(65_535)); // 65 537 bytes of JSON
    let bytes_1025 = base64_of(&[7u8; 1025]);
    let cases: Vec<(M, String, String, u16, &str)> = vec![
        // SQL in index definitions.
        (
            M::POST,
            "/indexes".into(),
            json!({ "prefix": "x", "options": { "fields": ["title'); DROP TABLE kv_entries; --"] } })
                .to_string(),
            400,
            "is not a field path",
        ),
        (
            M::POST,
            "/indexes".into(),
            json!({ "prefix": "x", "options": { "fields": ["title"], "tokenize": "porter'); DROP TABLE kv_entries; --" } })
                .to_string(),
            400,
            "is not a tokenizer",
        ),
        (
            M::POST,
            "/indexes".into(),
            json!({ "prefix": "x", "options": { "fields": ["$.title"] } }).to_string(),
            400,
            "is not a field path",
        ),
        (
            M::POST,
            "/indexes".into(),
            json!({ "prefix": "x", "options": { "fields": "title" } }).to_string(),
            400,
            "`options.fields` is a list",
        ),
        (
            M::POST,
            "/indexes".into(),
            json!({ "prefix": "x", "options": { "fields": [] } }).to_string(),
            400,
            "1 to 16 `fields`",
        ),
        // Field paths in where filters.
        (
            M::POST,
            "/keys/list".into(),
            json!({ "prefix": "seed", "where": { "name') OR 1=1 --": "x" } }).to_string(),
            400,
            "is not a field path",
        ),
        (
            M::POST,
            "/keys/list".into(),
            json!({ "prefix": "seed", "where": { "first name": "Ada" } }).to_string(),
            400,
            "is not a field path",
        ),
        (
            M::POST,
            "/keys/list".into(),
            json!({ "prefix": "seed", "where": { "$.name": "Ada" } }).to_string(),
            400,
            "unknown operator `$.name`",
        ),
        (
            M::POST,
            "/keys/list".into(),
            json!({ "prefix": "seed", "where": { "name": { "$.x": 1 } } }).to_string(),
            400,
            "unknown operator `$.x`",
        ),
        (
            M::POST,
            "/keys/list".into(),
            json!({ "prefix": "seed", "where": { "name": { "$eq": ["a"] } } }).to_string(),
            400,
            "cannot be compared",
        ),
        (
            M::POST,
            "/search".into(),
            json!({ "prefix": "docs", "query": "kept", "where": { "title\"": 1 } }).to_string(),
            400,
            "is not a field path",
        ),
        // A delete with a bad filter deletes nothing.
        (
            M::DELETE,
            "/keys/seed".into(),
            json!({ "where": { "x' OR '1'='1": 1 } }).to_string(),
            400,
            "is not a field path",
        ),
        (
            M::POST,
            "/keys/delete-batch".into(),
            json!({ "keys": [["seed", 1]], "where": { "a..b": 1 } }).to_string(),
            400,
            "is not a field path",
        ),
        // Keys too long or too deep.
        (M::PUT, format!("/keys/{long}"), "1".into(), 400, "at most 1024"),
        (M::PUT, format!("/keys/{many}"), "1".into(), 400, "at most 20 parts"),
        (
            M::POST,
            "/atomic".into(),
            json!({ "mutations": [{ "type": "set", "key": vec!["p"; 21], "value": 1 }] }).to_string(),
            400,
            "at most 20 parts",
        ),
        (
            M::POST,
            "/atomic".into(),
            json!({ "mutations": [{ "type": "set", "key": [{ "$bytes": bytes_1025 }], "value": 1 }] })
                .to_string(),
            400,
            "at most 1024",
        ),
        (
            M::POST,
            "/atomic".into(),
            json!({ "mutations": [
                { "type": "set", "key": ["seed", 3], "value": 1 },
                { "type": "set", "key": [long.clone()], "value": 1 },
            ] })
            .to_string(),
            400,
            "at most 1024",
        ),
        // Values too large.
        (M::PUT, "/keys/seed/big".into(), big.clone(), 413, "at most 65536"),
        (
            M::POST,
            "/atomic".into(),
            format!(
                r#"{{"mutations": [{{"type": "set", "key": ["seed", 1], "value": "short"}}, {{"type": "set", "key": ["seed", 2], "value": {big}}}]}}"#
            ),
            413,
            "at most 65536",
        ),
        (
            M::POST,
            "/queue/enqueue".into(),
            format!(r#"{{"value": {big}}}"#),
            413,
            "at most 65536",
        ),
        // Appends whose operands fit but whose result would not.
        (
            M::POST,
            "/atomic".into(),
            json!({ "mutations": [
                { "type": "append", "key": ["seed", "list"], "value": ["y".repeat(40_000)] },
                { "type": "append", "key": ["seed", "list"], "value": ["z".repeat(40_000)] },
            ] })
            .to_string(),
            413,
            "would grow past 65536 bytes",
        ),
        (
            M::POST,
            "/atomic".into(),
            json!({ "mutations": [
                { "type": "prepend", "key": ["seed", "list"], "value": ["y".repeat(40_000)] },
                { "type": "prepend", "key": ["seed", "list"], "value": ["z".repeat(40_000)] },
            ] })
            .to_string(),
            413,
            "would grow past 65536 bytes",
        ),
        // Bodies that are not JSON.
        (M::PUT, "/keys/seed/1".into(), "{\"name\": ".into(), 400, "JSON"),
        (M::PUT, "/keys/seed/9".into(), "".into(), 400, "JSON"),
        (M::POST, "/atomic".into(), "{mutations: []}".into(), 400, "not valid JSON"),
        (M::POST, "/keys/list".into(), "[1, 2".into(), 400, "not valid JSON"),
        (M::POST, "/queue/enqueue".into(), "value=1".into(), 400, "not valid JSON"),
        (M::POST, "/indexes".into(), "{".into(), 400, "not valid JSON"),
        (M::POST, "/search".into(), "}".into(), 400, "not valid JSON"),
        (M::POST, "/queue/ack".into(), "nope".into(), 400, "not valid JSON"),
        // JSON of the wrong shape.
        (M::POST, "/atomic".into(), "{}".into(), 400, "needs `checks` and/or `mutations`"),
        (
            M::POST,
            "/atomic".into(),
            json!({ "mutations": [{ "type": "drop", "key": ["seed", 1] }] }).to_string(),
            400,
            "unknown mutation type `drop`",
        ),
        (M::POST, "/queue/enqueue".into(), "{}".into(), 400, "enqueue needs `value`"),
        (M::POST, "/keys/batch".into(), "{}".into(), 400, "the body needs `keys`"),
        (
            M::POST,
            "/keys/list".into(),
            json!({ "prefix": [{ "$bigint": "x" }] }).to_string(),
            400,
            "not a 64-bit integer",
        ),
        // FTS5 query syntax.
        (
            M::POST,
            "/search".into(),
            json!({ "prefix": "docs", "query": "\"unbalanced" }).to_string(),
            400,
            "not valid FTS5 syntax",
        ),
        (
            M::POST,
            "/search".into(),
            json!({ "prefix": "docs", "query": "AND" }).to_string(),
            400,
            "not valid FTS5 syntax",
        ),
        (
            M::POST,
            "/search".into(),
            json!({ "prefix": "docs", "query": "nosuchcolumn: kept" }).to_string(),
            400,
            "not valid FTS5 syntax",
        ),
        (
            M::POST,
            "/search".into(),
            json!({ "prefix": "docs", "query": "kept) OR (1" }).to_string(),
            400,
            "not valid FTS5 syntax",
        ),
        (
            M::POST,
            "/search".into(),
            json!({ "prefix": "docs", "query": "  " }).to_string(),
            400,
            "`query` is empty",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let what = format!(
            "{method} {path} {}",
            body.chars().take(120).collect::<String>()
        );
        let got = kv.raw(method, &path, body).await;
        assert_eq!(got.0, status, "{what}: {}", got.1);
        let message = got.1["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{what}: `{needle}` not in {}",
            got.1
        );
        assert!(got.1["code"].is_string(), "{what}: {}", got.1);
        assert_eq!(kv.snapshot().await, before, "{what} changed the store");
    }

    // FTS still answers, and the values at the limits are accepted.
    let (status, body) = kv.get("/search?prefix=docs&query=kept").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(hits(&body), [json!(["docs", 1])]);
    let exact = format!("\"{}\"", "x".repeat(65_534));
    let (status, body) = kv.raw(M::PUT, "/keys/seed/big", exact).await;
    assert_eq!(status, 200, "65 536 bytes is allowed: {body}");
    let (status, body) = kv
        .put(&format!("/keys/{}", "k".repeat(1024)), &json!(1))
        .await;
    assert_eq!(status, 200, "a 1024-byte part is allowed: {body}");
    let (status, body) = kv
        .put(&format!("/keys/{}", vec!["p"; 20].join("/")), &json!(1))
        .await;
    assert_eq!(status, 200, "20 parts are allowed: {body}");
    let (_, count) = kv.get("/keys/count").await;
    assert_eq!(count, json!({ "count": 7 }));
    kv.server.stop().await;
}

/// Standard base64, enough for a `$bytes` key part.
fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------- metrics

#[tokio::test]
async fn metrics_count_operations() {
    let kv = Kv::start().await;
    let (status, before) = kv.get("/metrics").await;
    assert_eq!(status, 200, "{before}");
    let calls = |m: &Value, op: &str| m["operations"][op]["calls"].as_i64().unwrap_or(-1);
    for op in [
        "get", "set", "delete", "list", "atomic", "enqueue", "dequeue", "ack",
    ] {
        assert_eq!(calls(&before, op), 0, "{op}: {before}");
    }

    kv.set("m/1", &json!(1)).await;
    kv.set("m/2", &json!(2)).await;
    assert_eq!(kv.get("/keys/m/1").await.0, 200);
    assert_eq!(kv.get("/keys/m/2").await.0, 200);
    assert_eq!(kv.get("/keys/m/3").await.0, 404);
    assert_eq!(kv.get("/keys?prefix=m").await.0, 200);
    kv.atomic(&json!({ "mutations": [{ "type": "delete", "key": ["m", 2] }] }))
        .await;
    assert_eq!(kv.delete("/keys/m/1").await.0, 200);
    kv.enqueue(&json!({ "value": 1 })).await;
    let m = kv.poll().await.expect("message");
    kv.post("/queue/ack", &json!({ "id": m["id"] })).await;

    let (_, after) = kv.get("/metrics").await;
    for (op, n) in [
        ("set", 2),
        ("get", 3),
        ("list", 1),
        ("atomic", 1),
        ("delete", 1),
        ("enqueue", 1),
        ("dequeue", 1),
        ("ack", 1),
        ("nack", 0),
        ("search", 0),
    ] {
        assert_eq!(calls(&after, op), n, "{op}: {after}");
        assert_eq!(after["operations"][op]["errors"], 0, "{op}: {after}");
    }
    assert!(
        after["operations"]["get"]["avgLatencyMs"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "{after}"
    );

    let res = kv
        .http
        .get(kv.url("/metrics/prometheus"))
        .send()
        .await
        .expect("prometheus");
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"]
        .to_str()
        .expect("ct")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = res.text().await.expect("text");
    assert!(
        text.contains("# TYPE keyval_operations_total counter"),
        "{text}"
    );
    assert!(
        text.contains("keyval_operations_total{operation=\"get\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("keyval_operations_total{operation=\"set\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("keyval_errors_total{operation=\"get\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("keyval_latency_ms_avg{operation=\"get\"} "),
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
    }
    kv.server.stop().await;
}
