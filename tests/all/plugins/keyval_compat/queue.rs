//! The queue as the client uses it: `enqueue`, `listenQueue` (SSE and
//! polling modes, which ack or nack each message by its string id), the
//! dead-letter queue (`kv.dlq.*`) and `queueStats`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Client, VALUE, value_of};

/// `GET /queue/poll` until it answers a message (a few seconds at most):
/// the client's polling mode. Returns the answer's text.
async fn poll_message(kv: &Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = kv.get("/queue/poll").await;
        if !out.ok()["message"].is_null() {
            return out.text;
        }
        assert!(Instant::now() < deadline, "no message within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn enqueue_poll_and_ack() {
    let kv = Client::new("q-poll");
    // Nothing ready: `{"message": null}`, which the polling client reads.
    kv.put("/keys/seed", "1").await.ok();
    assert_eq!(kv.get("/queue/poll").await.ok(), json!({"message": null}));
    // `kv.enqueue(value)` sends `options` only when given.
    let out = kv
        .post("/queue/enqueue", &format!(r#"{{"value":{VALUE}}}"#))
        .await
        .ok();
    assert_eq!(out["ok"], true);
    let id = out["id"].as_str().expect("a string id").to_owned();
    let text = poll_message(&kv).await;
    let message = serde_json::from_str::<Value>(&text).expect("JSON")["message"].clone();
    assert_eq!(message["id"], id);
    assert_eq!(message["attempts"], 1);
    assert_eq!(value_of(&text), VALUE, "the value as enqueued");
    // The client acks with `{"id": msg.id}`.
    let out = kv.post("/queue/ack", &format!(r#"{{"id":"{id}"}}"#)).await;
    assert_eq!(out.ok()["ok"], true);
    assert_eq!(
        kv.get("/queue/stats").await.ok(),
        json!({"pending": 0, "processing": 0, "dlq": 0, "total": 0})
    );
}

#[tokio::test]
async fn enqueue_with_options_then_nack_into_the_dead_letter_queue() {
    let kv = Client::new("q-dlq");
    // `kv.enqueue(value, {delay: 0, backoffSchedule: [], keysIfUndelivered})`.
    let body = r#"{"value":{"job":"mail","to":"ada"},"options":{"delay":0,"backoffSchedule":[],"keysIfUndelivered":[["failed","mail"]]}}"#;
    let id = kv.post("/queue/enqueue", body).await.ok()["id"]
        .as_str()
        .expect("id")
        .to_owned();
    poll_message(&kv).await;
    // The handler threw: `{"id": msg.id}` to `/queue/nack`; no retries left.
    let out = kv.post("/queue/nack", &format!(r#"{{"id":"{id}"}}"#)).await;
    assert_eq!(out.ok()["ok"], true);
    assert_eq!(
        kv.value_text("failed/mail").await,
        r#"{"job":"mail","to":"ada"}"#
    );
    // `kv.dlq.list({limit: 10})` reads an array.
    let list = kv.get("/queue/dlq?limit=10").await;
    let letters = list.ok();
    assert_eq!(letters.as_array().map(Vec::len), Some(1), "{letters}");
    assert!(
        list.text.contains(r#""value":{"job":"mail","to":"ada"}"#),
        "{}",
        list.text
    );
    let dead = letters[0]["id"].as_str().expect("dlq id").to_owned();
    // `kv.dlq.get(id)`, `requeue(id)`, `delete(id)`, `purge()`.
    let one = kv.get(&format!("/queue/dlq/{dead}")).await;
    assert_eq!(one.ok()["originalId"], id);
    assert_eq!(
        kv.get("/queue/dlq/999999").await.status,
        404,
        "dlq.get → null"
    );
    let out = kv
        .post(&format!("/queue/dlq/{dead}/requeue"), "")
        .await
        .ok();
    assert_eq!(out["ok"], true);
    assert!(out["id"].is_string(), "{out}");
    let again = poll_message(&kv).await;
    assert_eq!(value_of(&again), r#"{"job":"mail","to":"ada"}"#);
    let again_id = serde_json::from_str::<Value>(&again).expect("JSON")["message"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    kv.post("/queue/nack", &format!(r#"{{"id":"{again_id}"}}"#))
        .await
        .ok();
    let letters = kv.get("/queue/dlq").await.ok();
    let dead = letters[0]["id"].as_str().expect("dlq id").to_owned();
    assert_eq!(
        kv.delete(&format!("/queue/dlq/{dead}"), None).await.ok()["ok"],
        true
    );
    kv.post(
        "/queue/enqueue",
        r#"{"value":1,"options":{"backoffSchedule":[]}}"#,
    )
    .await
    .ok();
    let m = poll_message(&kv).await;
    let m_id = serde_json::from_str::<Value>(&m).expect("JSON")["message"]["id"].clone();
    kv.post("/queue/nack", &json!({ "id": m_id }).to_string())
        .await
        .ok();
    assert_eq!(kv.delete("/queue/dlq", None).await.ok()["ok"], true);
    assert_eq!(kv.get("/queue/dlq").await.ok(), json!([]));
    assert_eq!(kv.get("/queue/stats").await.ok()["dlq"], 0);
}

#[tokio::test]
async fn listen_streams_messages_the_client_acks() {
    let kv = Client::new("q-listen");
    kv.put("/keys/seed", "1").await.ok();
    let mut stream = kv.stream("/queue/listen").await;
    let out = kv
        .post("/queue/enqueue", &format!(r#"{{"value":{VALUE}}}"#))
        .await
        .ok();
    let data = stream.next("message").await;
    let message: Value = serde_json::from_str(&data).expect("JSON");
    assert_eq!(message["id"], out["id"]);
    assert_eq!(value_of(&data), VALUE, "the event's value as enqueued");
    let out = kv
        .post("/queue/ack", &json!({ "id": message["id"] }).to_string())
        .await;
    assert_eq!(out.ok()["ok"], true);
    assert_eq!(kv.get("/queue/stats").await.ok()["total"], 0);
}
