//! `kv.watch` in its four modes (exact keys or prefixes, SSE or polling, as
//! the client sends them), full-text indexes and search, and `kv.metrics`.

use serde_json::{Value, json};

use super::{Client, VALUE, value_of};

#[tokio::test]
async fn watch_exact_keys_over_sse() {
    let kv = Client::new("w-keys");
    kv.set("users/1", r#"{"z":1,"a":2}"#).await;
    // `kv.watch([["users", 1], ["users", 2]], cb, {exact: true})`.
    let mut stream = kv.stream("/watch?keys=users/1,users/2&initial=true").await;
    let initial = stream.next("change").await;
    let entries: Value = serde_json::from_str(&initial).expect("JSON");
    assert_eq!(entries[0]["key"], json!(["users", 1]));
    assert_eq!(entries[1]["value"], json!(null));
    assert!(initial.contains(r#""value":{"z":1,"a":2}"#), "{initial}");
    kv.set("users/2", VALUE).await;
    let change = stream.next("change").await;
    assert_eq!(
        value_of(&change),
        VALUE,
        "the change event's value as written"
    );
}

#[tokio::test]
async fn watch_prefixes_over_sse() {
    let kv = Client::new("w-prefix");
    kv.set("a/1", "1").await;
    // `kv.watch([["a"], ["b"]], cb)` sends `prefixes`, `initial`, `limit`.
    let mut stream = kv
        .stream("/watch/prefix?prefixes=a,b&initial=true&limit=100")
        .await;
    let initial: Value = serde_json::from_str(&stream.next("change").await).expect("JSON");
    assert_eq!(initial[0]["key"], json!(["a", 1]));
    kv.set("b/7", VALUE).await;
    let change = stream.next("change").await;
    assert!(change.contains(r#""key":["b",7]"#), "{change}");
    assert_eq!(value_of(&change), VALUE);
    // The client's prefix ranges hold the prefix key itself:
    // `kv.watch(["b"], cb)` sees `["b"]` change.
    kv.set("b", "0").await;
    let change = stream.next("change").await;
    assert!(
        change.starts_with(r#"[{"key":["b"],"value":0,"#),
        "{change}"
    );
}

#[tokio::test]
async fn watch_exact_keys_by_polling() {
    let kv = Client::new("w-poll");
    let vs1 = kv.set("k/1", r#"{"b":1,"a":1}"#).await;
    // The first poll has no versionstamps: every present key is news.
    let first = kv.get("/watch/poll?keys=k/1,k/2").await;
    let out = first.ok();
    assert_eq!(out["entries"].as_array().map(Vec::len), Some(1), "{out}");
    assert!(
        first.text.contains(r#""value":{"b":1,"a":1}"#),
        "{}",
        first.text
    );
    assert_eq!(out["versionstamps"], json!([vs1, ""]));
    // The client sends back what it got: nothing changed, nothing answered.
    let again = kv
        .get(&format!("/watch/poll?keys=k/1,k/2&versionstamps={vs1},"))
        .await
        .ok();
    assert_eq!(again["entries"], json!([]), "{again}");
    let vs2 = kv.set("k/2", "2").await;
    let next = kv
        .get(&format!("/watch/poll?keys=k/1,k/2&versionstamps={vs1},"))
        .await
        .ok();
    assert_eq!(next["entries"].as_array().map(Vec::len), Some(1), "{next}");
    assert_eq!(next["entries"][0]["key"], json!(["k", 2]));
    assert_eq!(next["versionstamps"], json!([vs1, vs2]));
}

#[tokio::test]
async fn watch_prefixes_by_polling() {
    let kv = Client::new("w-prefix-poll");
    kv.set("p/1", r#"{"y":1,"x":1}"#).await;
    kv.set("p/2", "2").await;
    let first = kv.get("/watch/prefix/poll?prefixes=p").await;
    let out = first.ok();
    assert_eq!(out["entries"].as_array().map(Vec::len), Some(2), "{out}");
    assert!(first.text.contains(r#""value":{"y":1,"x":1}"#));
    let seen = out["versionstamps"]
        .as_str()
        .expect("versionstamps text")
        .to_owned();
    let again = kv
        .get(&format!(
            "/watch/prefix/poll?prefixes=p&versionstamps={seen}"
        ))
        .await
        .ok();
    assert_eq!(again["entries"], json!([]), "{again}");
    // A change and a delete since: the changed entry, and the deleted key
    // with nulls.
    kv.set("p/1", "3").await;
    kv.delete("/keys/p/2", None).await.ok();
    let next = kv
        .get(&format!(
            "/watch/prefix/poll?prefixes=p&versionstamps={seen}"
        ))
        .await
        .ok();
    assert_eq!(
        next["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| (e["key"].clone(), e["value"].clone()))
            .collect::<Vec<_>>(),
        [(json!(["p", 1]), json!(3)), (json!(["p", 2]), json!(null))],
        "{next}"
    );
}

#[tokio::test]
async fn indexes_and_search() {
    let kv = Client::new("w-fts");
    kv.set(
        "docs/1",
        r#"{"title":"Rust at sea","body":"a lighthouse","year":2024}"#,
    )
    .await;
    kv.set(
        "docs/2",
        r#"{"title":"Gardening","body":"rust on leaves","year":2019}"#,
    )
    .await;
    // `kv.createIndex(["docs"], {fields, tokenize})`: fields at the top.
    let out = kv
        .post(
            "/indexes",
            r#"{"prefix":["docs"],"fields":["title","body"],"tokenize":"unicode61"}"#,
        )
        .await;
    assert_eq!(out.status, 201, "{}", out.text);
    // `kv.listIndexes()` reads an array.
    let list = kv.get("/indexes").await.ok();
    assert_eq!(list[0]["prefix"], json!(["docs"]), "{list}");
    assert_eq!(list[0]["fields"], json!(["title", "body"]));
    // `kv.search(["docs"], "rust")` reads an array of entries.
    let found = kv.get("/search?prefix=docs&query=rust").await;
    assert_eq!(
        found.ok().as_array().map(Vec::len),
        Some(2),
        "{}",
        found.text
    );
    assert!(
        found
            .text
            .contains(r#""value":{"title":"Rust at sea","body":"a lighthouse","year":2024}"#)
    );
    // With `where`, the client POSTs `{prefix, query, limit, where}`.
    let found = kv
        .post(
            "/search",
            r#"{"prefix":["docs"],"query":"rust","limit":10,"where":{"year":{"$gte":2020}}}"#,
        )
        .await
        .ok();
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found[0]["key"], json!(["docs", 1]));
    // `kv.removeIndex(["docs"])` sends the prefix in a body.
    let out = kv.delete("/indexes", Some(r#"{"prefix":["docs"]}"#)).await;
    assert_eq!(out.ok(), json!({"ok": true}));
    assert_eq!(kv.get("/indexes").await.ok(), json!([]));
}

#[tokio::test]
async fn metrics_as_json_and_in_the_host_exposition() {
    let kv = Client::new("w-metrics");
    kv.set("m/1", VALUE).await;
    kv.get("/keys/m/1").await.ok();
    // `kv.metrics()`: `{operations, queue, storage}`.
    let m = kv.get("/metrics").await.ok();
    assert!(m["operations"]["get"]["count"].as_u64() >= Some(1), "{m}");
    assert!(m["operations"]["get"]["avgLatencyMs"].is_number(), "{m}");
    assert_eq!(m["queue"]["total"], 0, "{m}");
    assert_eq!(m["storage"]["entries"], 1, "{m}");
    assert!(m["storage"]["sizeBytes"].as_u64() > Some(0), "{m}");
    // `kv.metrics("prometheus")` has no route of its own: the same series
    // are in the host's exposition (keyval.md §10), which a loopback client
    // reads without a key.
    assert_eq!(kv.get("/metrics/prometheus").await.status, 404);
    let text =
        crate::server::metrics::prometheus_text(&format!("{}/_/metrics", super::base())).await;
    assert!(
        text.contains(
            "buntime_plugin_keyval_operations_total{plugin=\"@buntime/plugin-keyval\",operation=\"get\"}"
        ),
        "{text}"
    );
}
