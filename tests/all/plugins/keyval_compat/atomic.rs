//! `POST /atomic` as the client's `atomic()` and `transaction()` send it:
//! one test per mutation kind, bigints in the client's tagged form
//! (`{"__type": "bigint", "value": "<digits>"}`), and the check-on-read
//! pattern of transactions.

use serde_json::json;

use super::{Client, VALUE};

/// A tagged bigint, as the client's JSON replacer writes one.
fn big(n: &str) -> String {
    format!(r#"{{"__type":"bigint","value":"{n}"}}"#)
}

/// A commit of one mutation `kind` on `key` with `value` (JSON text).
fn one(kind: &str, key: &str, value: &str) -> String {
    format!(r#"{{"checks":[],"mutations":[{{"type":"{kind}","key":{key},"value":{value}}}]}}"#)
}

#[tokio::test]
async fn set_mutation_keeps_the_value_and_takes_expires_in() {
    let kv = Client::new("a-set");
    let body = format!(
        r#"{{"checks":[],"mutations":[{{"type":"set","key":["posts",1],"value":{VALUE}}},{{"type":"set","key":["cache","x"],"value":{{"b":2,"a":1}},"expiresIn":60000}}]}}"#
    );
    let out = kv.commit(&body).await.ok();
    assert_eq!(out["ok"], true, "{out}");
    let vs = out["versionstamp"].as_str().expect("versionstamp");
    assert_eq!(kv.value_text("posts/1").await, VALUE);
    assert_eq!(kv.value_text("cache/x").await, r#"{"b":2,"a":1}"#);
    let entry = kv.get("/keys/cache/x").await.ok();
    assert_eq!(entry["versionstamp"], vs, "one versionstamp per commit");
}

#[tokio::test]
async fn delete_mutation() {
    let kv = Client::new("a-delete");
    kv.set("posts/1", "1").await;
    let out = kv
        .commit(r#"{"checks":[],"mutations":[{"type":"delete","key":["posts",1]}]}"#)
        .await;
    assert_eq!(out.ok()["ok"], true);
    assert_eq!(kv.get("/keys/posts/1").await.status, 404);
}

#[tokio::test]
async fn sum_mutation_with_bigints() {
    let kv = Client::new("a-sum");
    // `sum(["hits"], 5n)` twice: a missing key starts from zero.
    for n in ["5", "7"] {
        let out = kv.commit(&one("sum", r#"["hits"]"#, &big(n))).await;
        assert_eq!(out.ok()["ok"], true, "{}", out.text);
    }
    assert_eq!(kv.value_text("hits").await, big("12"));
    // A stored tagged bigint (written by `set`) is summed too; negatives work.
    kv.set("balance", &big("100")).await;
    kv.commit(&one("sum", r#"["balance"]"#, &big("-130")))
        .await
        .ok();
    assert_eq!(kv.value_text("balance").await, big("-30"));
    // A plain JSON integer stays one.
    kv.commit(&one("sum", r#"["plain"]"#, "2")).await.ok();
    kv.commit(&one("sum", r#"["plain"]"#, "3")).await.ok();
    assert_eq!(kv.value_text("plain").await, "5");
    // Past 2^53 and up to 64 bits.
    kv.commit(&one("sum", r#"["wide"]"#, &big("9007199254740993")))
        .await
        .ok();
    assert_eq!(kv.value_text("wide").await, big("9007199254740993"));
}

#[tokio::test]
async fn max_mutation_with_bigints() {
    let kv = Client::new("a-max");
    // A missing key becomes the operand; then the larger one stays.
    for n in ["10", "4", "15"] {
        kv.commit(&one("max", r#"["high"]"#, &big(n))).await.ok();
    }
    assert_eq!(kv.value_text("high").await, big("15"));
    // On a stored JSON integer, a tagged operand makes the result tagged.
    kv.set("plain", "20").await;
    kv.commit(&one("max", r#"["plain"]"#, &big("3"))).await.ok();
    assert_eq!(kv.value_text("plain").await, big("20"));
}

#[tokio::test]
async fn min_mutation_with_bigints() {
    let kv = Client::new("a-min");
    for n in ["10", "14", "-3"] {
        kv.commit(&one("min", r#"["low"]"#, &big(n))).await.ok();
    }
    assert_eq!(kv.value_text("low").await, big("-3"));
}

#[tokio::test]
async fn append_mutation() {
    let kv = Client::new("a-append");
    // A missing key becomes the operand; the elements keep their text.
    kv.commit(&one("append", r#"["log"]"#, r#"[{"b":1,"a":2}]"#))
        .await
        .ok();
    kv.commit(&one("append", r#"["log"]"#, r#"["x",1.50]"#))
        .await
        .ok();
    assert_eq!(kv.value_text("log").await, r#"[{"b":1,"a":2},"x",1.50]"#);
}

#[tokio::test]
async fn prepend_mutation() {
    let kv = Client::new("a-prepend");
    kv.commit(&one("prepend", r#"["log"]"#, r#"["x",1.50]"#))
        .await
        .ok();
    kv.commit(&one("prepend", r#"["log"]"#, r#"[{"b":1,"a":2}]"#))
        .await
        .ok();
    assert_eq!(kv.value_text("log").await, r#"[{"b":1,"a":2},"x",1.50]"#);
}

#[tokio::test]
async fn bad_operands_name_the_mutation_and_write_nothing() {
    let kv = Client::new("a-refused");
    kv.set("seed", "1").await;
    let too_big = big("9223372036854775808");
    for (operand, needle) in [
        (r#""5""#, "mutations[1]"),
        (r#"1.5"#, "mutations[1]"),
        (r#"{"__type":"bigint","value":"12abc"}"#, "mutations[1]"),
        (too_big.as_str(), "out of range"),
    ] {
        let body = format!(
            r#"{{"checks":[],"mutations":[{{"type":"set","key":["written"],"value":1}},{{"type":"sum","key":["n"],"value":{operand}}}]}}"#
        );
        let out = kv.commit(&body).await;
        assert_eq!(out.status, 400, "{operand}: {}", out.text);
        assert!(out.text.contains(needle), "{operand}: {}", out.text);
        assert_eq!(kv.get("/keys/written").await.status, 404, "{operand}");
    }
    // An overflow of the stored value, and a sum on a non-integer, too.
    kv.set("max", &big("9223372036854775807")).await;
    let out = kv
        .commit(&format!(
            r#"{{"mutations":[{{"type":"set","key":["written"],"value":1}},{{"type":"sum","key":["max"],"value":{}}}]}}"#,
            big("1")
        ))
        .await;
    assert_eq!(out.status, 400, "{}", out.text);
    assert!(out.text.contains("mutation 1"), "{}", out.text);
    kv.set("text", r#""abc""#).await;
    let out = kv.commit(&one("sum", r#"["text"]"#, &big("1"))).await;
    assert_eq!(out.status, 400, "{}", out.text);
    assert_eq!(kv.get("/keys/written").await.status, 404);
    assert_eq!(kv.value_text("max").await, big("9223372036854775807"));
}

#[tokio::test]
async fn transactions_check_what_they_read() {
    let kv = Client::new("a-tx");
    kv.set("accounts/a", r#"{"balance":10}"#).await;
    // `tx.get(["accounts", "a"])`, then the commit checks its versionstamp;
    // a key read as absent is checked with `null`.
    let read = kv.get("/keys/accounts/a").await.ok();
    let vs = read["versionstamp"].as_str().expect("vs").to_owned();
    let body = format!(
        r#"{{"checks":[{{"key":["accounts","a"],"versionstamp":"{vs}"}},{{"key":["accounts","b"],"versionstamp":null}}],"mutations":[{{"type":"set","key":["accounts","a"],"value":{{"balance":4}}}},{{"type":"set","key":["accounts","b"],"value":{{"balance":6}}}}]}}"#
    );
    let out = kv.commit(&body).await.ok();
    assert_eq!(out["ok"], true, "{out}");
    // The same commit again conflicts: `{ok: false}`, nothing written.
    let out = kv.commit(&body).await;
    assert_eq!(out.status, 409, "{}", out.text);
    assert_eq!(out.json()["ok"], false);
    assert_eq!(kv.value_text("accounts/a").await, r#"{"balance":4}"#);
    // Keys of every kind the client sends in a body, bigints tagged.
    let out = kv
        .commit(&format!(
            r#"{{"mutations":[{{"type":"set","key":["t",{},true,1.5],"value":1}}]}}"#,
            big("9007199254740993")
        ))
        .await;
    assert_eq!(out.ok()["ok"], true);
    let out = kv
        .post(
            "/keys/batch",
            &format!(r#"{{"keys":[["t",{},true,1.5]]}}"#, big("9007199254740993")),
        )
        .await
        .ok();
    assert_eq!(out[0]["value"], json!(1), "{out}");
}
