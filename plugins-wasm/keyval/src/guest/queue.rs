//! The queue: enqueue with delay and a backoff schedule, dequeue with a
//! lock, ack, nack (retry after the schedule's next delay, or dead-letter
//! after the last attempt, writing `keysIfUndelivered`), and the
//! dead-letter queue.
//!
//! Dequeue is one `UPDATE … RETURNING`, so two consumers never get the same
//! message; a message whose consumer vanished is delivered again when its
//! lock expires (at-least-once). Enqueue publishes `keyval-queue/<tenant>`,
//! which wakes `GET /queue/listen` streams.

use buntime_pdk::plugin::{config, events};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::Failure;
use crate::atomic::{self, Mutation};
use crate::json::RawValues;
use crate::keys;
use crate::store::{NOW_MS, Store, raw};

/// The default retry delays (ms): 3 retries after the first attempt.
const DEFAULT_BACKOFF: [i64; 3] = [1000, 5000, 10000];

/// The topic that announces new messages in `store`.
pub fn topic(store: &Store) -> String {
    format!("keyval-queue/{}", store.tenant.as_deref().unwrap_or("@"))
}

/// How long a dequeued message stays locked (config `queue.lockDuration`).
fn lock_ms() -> i64 {
    config("queueLockDuration")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000)
}

/// `POST /queue/enqueue {value, options: {delay, backoffSchedule, keysIfUndelivered}}`;
/// `raw` holds `value` as sent, which is what is stored.
pub fn enqueue(store: &Store, body: &Value, raw: &RawValues<'_>) -> Result<Value, Failure> {
    let value = raw
        .value()
        .or_else(|| body.get("value").map(Value::to_string))
        .ok_or_else(|| Failure::bad("enqueue needs `value`"))?;
    atomic::check_value(&value)?;
    let options = &body["options"];
    let delay = match &options["delay"] {
        Value::Null => 0,
        v => v.as_i64().filter(|d| *d >= 0).ok_or_else(|| {
            Failure::bad(format!("`options.delay` is milliseconds ≥ 0, found {v}"))
        })?,
    };
    let backoff: Vec<i64> = match &options["backoffSchedule"] {
        Value::Null => DEFAULT_BACKOFF.to_vec(),
        Value::Array(items) if items.len() <= 20 => items
            .iter()
            .map(|d| d.as_i64().filter(|d| *d >= 0))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                Failure::bad("`options.backoffSchedule` is a list of delays in ms ≥ 0")
            })?,
        other => {
            return Err(Failure::bad(format!(
                "`options.backoffSchedule` is a list of at most 20 delays in ms, found {other}"
            )));
        }
    };
    let mut undelivered = Vec::new();
    for (i, k) in options["keysIfUndelivered"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let key = keys::from_json(k)
            .map_err(|e| Failure::bad(format!("options.keysIfUndelivered[{i}]: {e}")))?;
        undelivered.push(keys::to_json(&key));
    }
    let done = store.sql().execute(
        &format!(
            "INSERT INTO kv_queue (value, ready_at, max_attempts, backoff, keys_if_undelivered, created_at, updated_at) \
             VALUES (?, {NOW_MS} + ?, ?, ?, ?, {NOW_MS}, {NOW_MS})"
        ),
        &[
            json!(value),
            json!(delay),
            json!(backoff.len() as i64 + 1),
            json!(Value::from(backoff.clone()).to_string()),
            json!(Value::from(undelivered).to_string()),
        ],
    )?;
    let _ = events::publish(
        &topic(store),
        &json!({ "id": done.last_insert_id, "delay": delay }),
    );
    Ok(json!({ "ok": true, "id": done.last_insert_id.to_string() }))
}

/// A delivered message, as `poll` and `listen` answer it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The message id (text, as the original client expects).
    pub id: String,
    /// The value as enqueued.
    pub value: Box<RawValue>,
    /// This delivery's attempt (1 for the first).
    pub attempts: Value,
    /// Attempts before the message is dead-lettered.
    pub max_attempts: Value,
    /// When it was enqueued (ms since the epoch, the database's clock).
    pub created_at: Value,
}

/// Takes the next ready message, locking it; `None` when none is ready.
pub fn dequeue(store: &Store) -> Result<Option<Message>, Failure> {
    // A message whose consumer vanished on its last attempt is dead-lettered
    // rather than delivered forever; then the next ready one is taken.
    let expired_last =
        format!("status = 'processing' AND locked_until <= {NOW_MS} AND attempts >= max_attempts");
    let results = store.sql().batch(
        &[
            (
                &format!(
                    "INSERT INTO kv_dlq (original_id, value, error_message, attempts, backoff, keys_if_undelivered, original_created_at, failed_at) \
                     SELECT id, value, 'the lock expired on the last attempt (no ack or nack)', attempts, backoff, keys_if_undelivered, created_at, {NOW_MS} \
                     FROM kv_queue WHERE {expired_last}"
                ),
                vec![],
            ),
            (&format!("DELETE FROM kv_queue WHERE {expired_last}"), vec![]),
            (
                &format!(
                    "UPDATE kv_queue SET status = 'processing', locked_until = {NOW_MS} + ?, attempts = attempts + 1, updated_at = {NOW_MS} \
                     WHERE id = (SELECT id FROM kv_queue WHERE (status = 'pending' AND ready_at <= {NOW_MS}) \
                         OR (status = 'processing' AND locked_until <= {NOW_MS}) ORDER BY ready_at, id LIMIT 1) \
                     RETURNING id, value, attempts, max_attempts, created_at"
                ),
                vec![json!(lock_ms())],
            ),
        ],
        true,
    )?;
    let rows: Vec<Vec<Value>> = results
        .get(2)
        .and_then(|r| serde_json::from_value(r["rows"].clone()).ok())
        .unwrap_or_default();
    Ok(rows.first().map(|r| Message {
        id: r[0].as_i64().unwrap_or(0).to_string(),
        value: raw(r[1].as_str().unwrap_or("null")),
        attempts: r[2].clone(),
        max_attempts: r[3].clone(),
        created_at: r[4].clone(),
    }))
}

/// The message id in a body `{"id": "12"}` or `{"id": 12}`, or a path segment.
pub fn id_of(v: &Value) -> Result<i64, Failure> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| Failure::bad(format!("`id` must be a message id, found {v}")))
}

/// Which delivery of a message an ack or nack is about.
///
/// `attempts` (as the dequeued message carried it) pins one delivery: an
/// answer from a consumer whose lock ran out and whose message went to
/// someone else is refused instead of acking that other consumer's work.
/// Without it, the answer counts only while the lock still holds.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// The message id.
    pub id: i64,
    /// The delivery's attempt number, if the consumer sent it.
    pub attempts: Option<i64>,
}

impl Delivery {
    /// Reads `{"id", "attempts"?}`.
    pub fn of(body: &Value) -> Result<Self, Failure> {
        let attempts = match &body["attempts"] {
            Value::Null => None,
            v => Some(v.as_i64().filter(|a| *a >= 1).ok_or_else(|| {
                Failure::bad(format!(
                    "`attempts` is the attempt number the message was delivered with (≥ 1), found {v}"
                ))
            })?),
        };
        Ok(Self {
            id: id_of(&body["id"])?,
            attempts,
        })
    }

    /// SQL that holds for the delivery this answer is about, with its two
    /// parameters (id, attempts-or-null).
    fn condition() -> String {
        format!(
            "id = ? AND status = 'processing' AND \
             CASE WHEN ?2 IS NULL THEN locked_until > {NOW_MS} ELSE attempts = ?2 END"
        )
    }

    fn params(&self) -> Vec<Value> {
        vec![json!(self.id), json!(self.attempts)]
    }
}

/// Acknowledges a delivered message: it is done and removed.
pub fn ack(store: &Store, d: Delivery) -> Result<Value, Failure> {
    let done = store.sql().execute(
        &format!("DELETE FROM kv_queue WHERE {}", Delivery::condition()),
        &d.params(),
    )?;
    if done.rows_affected == 0 {
        return Err(not_delivered(store, d));
    }
    Ok(json!({ "ok": true }))
}

/// Why an ack or nack found nothing to act on: 409 when the message is out
/// with a newer delivery or its lock ran out, 404 when it is not out at all.
fn not_delivered(store: &Store, d: Delivery) -> Failure {
    let row = store
        .sql()
        .query(
            &format!(
                "SELECT attempts, locked_until > {NOW_MS} FROM kv_queue WHERE id = ? AND status = 'processing'"
            ),
            &[json!(d.id)],
        )
        .ok()
        .and_then(|r| r.rows.into_iter().next());
    let id = d.id;
    match row {
        Some(r) => {
            let current = r.first().and_then(Value::as_i64).unwrap_or(0);
            let locked = r.get(1).and_then(Value::as_i64) == Some(1);
            match d.attempts {
                Some(a) if a != current => Failure(
                    409,
                    "REDELIVERED",
                    format!(
                        "message {id} was delivered again (attempt {current}) after attempt {a}'s lock ran out; \
                         that delivery's consumer answers for it now (raise `queueLockDuration` if consumers need longer)"
                    ),
                ),
                _ if !locked => Failure(
                    409,
                    "LOCK_EXPIRED",
                    format!(
                        "the lock on message {id} ran out, so it will be delivered again; \
                         send `attempts` with the ack or nack to answer for a delivery after its lock \
                         (or raise `queueLockDuration`)"
                    ),
                ),
                _ => Failure(
                    409,
                    "REDELIVERED",
                    format!("message {id} is out with another delivery (attempt {current})"),
                ),
            }
        }
        None => Failure(
            404,
            "NOT_FOUND",
            format!(
                "message {id} is not waiting for an ack (unknown, already acked, or not dequeued)"
            ),
        ),
    }
}

/// Rejects a delivered message: retried after the next backoff delay, or
/// moved to the dead-letter queue after its last attempt.
///
/// The delivery is read and then changed only if it is still the same one
/// (`attempts` pinned in the `UPDATE`), so a dequeue in between is never
/// undone.
pub fn nack(store: &Store, d: Delivery, error: Option<&str>) -> Result<Value, Failure> {
    let rows = store.sql().query(
        &format!(
            "SELECT attempts, max_attempts, backoff, keys_if_undelivered, value FROM kv_queue WHERE {}",
            Delivery::condition()
        ),
        &d.params(),
    )?;
    let Some(r) = rows.rows.first() else {
        return Err(not_delivered(store, d));
    };
    let id = d.id;
    let attempts = r[0].as_i64().unwrap_or(1);
    let max = r[1].as_i64().unwrap_or(1);
    let same = "id = ? AND status = 'processing' AND attempts = ?";
    if attempts < max {
        let backoff: Vec<i64> =
            serde_json::from_str(r[2].as_str().unwrap_or("[]")).unwrap_or_default();
        let delay = backoff
            .get(usize::try_from(attempts - 1).unwrap_or(0))
            .or(backoff.last())
            .copied()
            .unwrap_or(1000);
        let done = store.sql().execute(
            &format!(
                "UPDATE kv_queue SET status = 'pending', ready_at = {NOW_MS} + ?, locked_until = NULL, last_error = ?, updated_at = {NOW_MS} WHERE {same}"
            ),
            &[json!(delay), json!(error), json!(id), json!(attempts)],
        )?;
        if done.rows_affected == 0 {
            return Err(not_delivered(store, d));
        }
        return Ok(json!({ "ok": true, "retry": true, "delay": delay, "attempts": attempts }));
    }
    // The last attempt failed: the message moves to the DLQ, then its value
    // goes to keysIfUndelivered.
    let moved = store.sql().batch(
        &[
            (
                &format!(
                    "INSERT INTO kv_dlq (original_id, value, error_message, attempts, backoff, keys_if_undelivered, original_created_at, failed_at) \
                     SELECT id, value, ?, attempts, backoff, keys_if_undelivered, created_at, {NOW_MS} FROM kv_queue WHERE {same}"
                ),
                vec![json!(error), json!(id), json!(attempts)],
            ),
            (
                &format!("DELETE FROM kv_queue WHERE {same}"),
                vec![json!(id), json!(attempts)],
            ),
        ],
        true,
    )?;
    if moved
        .get(1)
        .and_then(|r| r["rowsAffected"].as_u64())
        .unwrap_or(0)
        == 0
    {
        return Err(not_delivered(store, d));
    }
    let undelivered: Vec<Value> =
        serde_json::from_str(r[3].as_str().unwrap_or("[]")).unwrap_or_default();
    let value = r[4].as_str().unwrap_or("null").to_owned();
    let mutations: Vec<Mutation> = undelivered
        .iter()
        .filter_map(|k| keys::from_json(k).ok())
        .map(|k| Mutation::Set {
            key: keys::encode(&k),
            value: value.clone(),
            expire_in: None,
        })
        .collect();
    if !mutations.is_empty()
        && let atomic::Outcome::Committed { changes, .. } = atomic::commit(store, &[], &mutations)?
    {
        crate::watch::publish(store, &changes);
    }
    Ok(json!({ "ok": true, "retry": false, "deadLettered": true, "attempts": attempts }))
}

/// `{pending, processing, dlq, total}`.
pub fn stats(store: &Store) -> Result<Value, Failure> {
    let rows = store.sql().query(
        "SELECT (SELECT count(*) FROM kv_queue WHERE status = 'pending'), \
                (SELECT count(*) FROM kv_queue WHERE status = 'processing'), \
                (SELECT count(*) FROM kv_dlq)",
        &[],
    )?;
    let r = rows.rows.first().cloned().unwrap_or_default();
    let n = |i: usize| r.get(i).and_then(Value::as_i64).unwrap_or(0);
    Ok(json!({ "pending": n(0), "processing": n(1), "dlq": n(2), "total": n(0) + n(1) }))
}

const DLQ_COLUMNS: &str =
    "id, original_id, value, error_message, attempts, original_created_at, failed_at";

/// A dead letter as the API answers it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Its id in the dead-letter queue.
    pub id: String,
    /// The id it had in the queue.
    pub original_id: String,
    /// The value as enqueued.
    pub value: Box<RawValue>,
    /// The last nack's `error`, or why it was dead-lettered.
    pub error_message: Value,
    /// Attempts made.
    pub attempts: Value,
    /// When it was first enqueued (ms).
    pub original_created_at: Value,
    /// When it was dead-lettered (ms).
    pub failed_at: Value,
}

fn dlq_row(r: &[Value]) -> DeadLetter {
    DeadLetter {
        id: r[0].as_i64().unwrap_or(0).to_string(),
        original_id: r[1].as_i64().unwrap_or(0).to_string(),
        value: raw(r[2].as_str().unwrap_or("null")),
        error_message: r[3].clone(),
        attempts: r[4].clone(),
        original_created_at: r[5].clone(),
        failed_at: r[6].clone(),
    }
}

/// A page of the dead-letter queue, oldest first.
pub fn dlq_list(store: &Store, limit: i64, offset: i64) -> Result<Vec<DeadLetter>, Failure> {
    let rows = store.sql().query(
        &format!("SELECT {DLQ_COLUMNS} FROM kv_dlq ORDER BY id LIMIT ? OFFSET ?"),
        &[json!(limit), json!(offset)],
    )?;
    Ok(rows.rows.iter().map(|r| dlq_row(r)).collect())
}

/// One dead letter.
pub fn dlq_get(store: &Store, id: i64) -> Result<DeadLetter, Failure> {
    let rows = store.sql().query(
        &format!("SELECT {DLQ_COLUMNS} FROM kv_dlq WHERE id = ?"),
        &[json!(id)],
    )?;
    rows.rows
        .first()
        .map(|r| dlq_row(r))
        .ok_or_else(|| dlq_missing(id))
}

fn dlq_missing(id: i64) -> Failure {
    Failure(404, "NOT_FOUND", format!("no dead letter {id}"))
}

/// Puts a dead letter back in the queue with fresh attempts.
pub fn dlq_requeue(store: &Store, id: i64) -> Result<Value, Failure> {
    let results = store.sql().batch(
        &[
            (
                &format!(
                    "INSERT INTO kv_queue (value, ready_at, max_attempts, backoff, keys_if_undelivered, created_at, updated_at) \
                     SELECT value, {NOW_MS}, json_array_length(backoff) + 1, backoff, keys_if_undelivered, {NOW_MS}, {NOW_MS} FROM kv_dlq WHERE id = ?"
                ),
                vec![json!(id)],
            ),
            ("DELETE FROM kv_dlq WHERE id = ?", vec![json!(id)]),
        ],
        true,
    )?;
    if results.first().and_then(|r| r["rowsAffected"].as_u64()) != Some(1) {
        return Err(dlq_missing(id));
    }
    let new_id = results[0]["lastInsertId"].as_i64().unwrap_or(0);
    let _ = events::publish(&topic(store), &json!({ "id": new_id }));
    Ok(json!({ "ok": true, "id": new_id.to_string() }))
}

/// Deletes one dead letter, or all of them (`id: None`).
pub fn dlq_delete(store: &Store, id: Option<i64>) -> Result<Value, Failure> {
    let done = match id {
        Some(id) => store
            .sql()
            .execute("DELETE FROM kv_dlq WHERE id = ?", &[json!(id)])?,
        None => store.sql().execute("DELETE FROM kv_dlq", &[])?,
    };
    if let (Some(id), 0) = (id, done.rows_affected) {
        return Err(dlq_missing(id));
    }
    Ok(json!({ "ok": true, "deletedCount": done.rows_affected }))
}
