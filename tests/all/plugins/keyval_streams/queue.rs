//! The queue: enqueue, poll, ack and nack, delays, retries with backoff, dead letters, `GET /queue/listen`.

use super::*;

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
    // A poll answered within the delay must find nothing; one that a slow
    // machine answered later may find the message, and the bound on
    // `waited` below still says it was not early.
    let m = match kv.poll().await {
        None => {
            assert_eq!(kv.stats().await["pending"], 1);
            kv.poll_until(EVENT_WAIT)
                .await
                .expect("delivered after its delay")
        }
        Some(early) => early,
    };
    let waited = sent.elapsed();
    assert_eq!(m["id"], id);
    assert_eq!(m["value"], "later");
    // The delay runs on the database's clock, which the test does not
    // share to the millisecond; 250 ms leaves room for that. How late it
    // came is not this test's claim: it came within `EVENT_WAIT`, so the
    // delay was not read as seconds.
    assert!(waited >= Duration::from_millis(250), "{waited:?}");

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

    // Consumer A is too slow: its lock runs out before it answers. A sleep
    // only bounds the time from below (the lock started before `poll`
    // answered), so it cannot end before the 300 ms lock does; no poll could
    // stand in for it, as an ack tried before the expiry would take the
    // message.
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
    // Before the nack is sent: the backoff cannot start earlier.
    let nacked = Instant::now();
    let (status, body) = kv
        .post("/queue/nack", &json!({ "id": id, "error": "smtp down" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "ok": true, "retry": true, "delay": 200, "attempts": 1 })
    );
    // As with a delay: a poll answered within the backoff finds nothing,
    // and the bound on `nacked.elapsed()` below covers a later one.
    let second = match kv.poll().await {
        None => {
            assert_eq!(kv.stats().await["pending"], 1);
            kv.poll_until(EVENT_WAIT).await.expect("retried")
        }
        Some(early) => early,
    };
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
    let messages = list.as_array().expect("an array of dead letters");
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
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let (_, rest) = kv.get("/queue/dlq?limit=2&offset=2").await;
    assert_eq!(rest.as_array().map(Vec::len), Some(1), "{rest}");
    assert_eq!(rest[0]["value"], 2);
    assert_eq!(rest[0]["errorMessage"], Value::Null);

    let first_dead = list[0]["id"].as_str().expect("id").to_owned();
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
    assert_eq!(list, json!([]));
    assert_eq!(
        kv.stats().await,
        json!({ "pending": 0, "processing": 0, "dlq": 0, "total": 0 })
    );
    // The undelivered value stayed where the first dead letter put it.
    assert_eq!(kv.get("/keys/failed/mail/1").await.1["value"], value);
    kv.server.stop().await;
}

/// How often a listen stream polls the queue on its own, for delayed
/// messages and expired locks: the interval the keyval plugin gives its
/// `queue_listen` poll.
const LISTEN_TICK: Duration = Duration::from_secs(1);

/// Opens a listen stream on `tenant`'s queue, which holds one message
/// already, and enqueues a second once the stream has delivered the first;
/// how long after the stream was asked for the second one arrived.
///
/// The stream's own polls come a tick apart from its first, which starts
/// after the stream was asked for and has ended once the first message
/// arrived: a second message that arrives less than a tick after the
/// stream was asked for was delivered by a poll the enqueue woke.
async fn listen_for_an_enqueue(kv: &Kv, tenant: &str) -> Duration {
    let enqueue = |value: &str| {
        let body = json!({ "value": value });
        async move {
            let (status, answer) = kv
                .post(&format!("/queue/enqueue?tenant={tenant}"), &body)
                .await;
            assert_eq!(status, 200, "{answer}");
            answer["id"].clone()
        }
    };
    let waiting = enqueue("waiting").await;
    let asked = Instant::now();
    let mut stream = kv.stream(&format!("/queue/listen?tenant={tenant}")).await;
    let first = stream
        .next(EVENT_WAIT)
        .await
        .expect("the waiting message, from the stream's first poll");
    assert_eq!(first.data["id"], waiting, "{first:?}");
    let woken = enqueue("woken").await;
    let second = stream.next(EVENT_WAIT).await.expect("the enqueued message");
    assert_eq!(second.data["id"], woken, "{second:?}");
    asked.elapsed()
}

#[tokio::test]
async fn listen_is_woken_by_an_enqueue_not_by_its_tick() {
    let kv = Kv::start().await;
    // A stream that is only ever polled on its tick can never pass; one a
    // loaded machine slowed past a tick gets two more tries, each on a
    // tenant (a queue and streams) of its own.
    let mut took = Vec::new();
    for n in 0..3 {
        took.push(listen_for_an_enqueue(&kv, &format!("wake-{n}")).await);
        if took[n] < LISTEN_TICK {
            kv.server.stop().await;
            return;
        }
    }
    panic!(
        "the enqueued message never came within a tick ({LISTEN_TICK:?}) of opening the stream: {took:?}"
    );
}

#[tokio::test]
async fn listen_streams_messages_and_listeners_never_share_one() {
    let kv = Kv::start().await;
    // Listening from the response head on (the host subscribes before it
    // answers), so no settling wait is needed.
    let mut a = kv.stream("/queue/listen").await;

    let id = kv
        .enqueue(&json!({ "value": { "hello": "listener" } }))
        .await;
    let e = a.next(EVENT_WAIT).await.expect("the message streamed");
    assert_eq!(e.name, "message");
    assert_eq!(e.data["id"], id);
    assert_eq!(e.data["value"], json!({ "hello": "listener" }));
    assert_eq!(e.data["attempts"], 1);
    let (status, _) = kv.post("/queue/ack", &json!({ "id": id })).await;
    assert_eq!(status, 200);

    // Two listeners, twenty messages: each delivered once, to one of them.
    let mut b = kv.stream("/queue/listen").await;
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

    // Gone listeners take nothing: after both leave, a message waits for a poll.
    // Once the server has dropped their streams, nothing can take it
    // before the poll.
    drop(a);
    drop(b);
    kv.wait_for_streams(0).await;
    let id = kv.enqueue(&json!({ "value": "after" })).await;
    let m = kv.poll().await.expect("no closed stream took the message");
    assert_eq!(m["id"], id);
    kv.server.stop().await;
}
