//! The key routes as the client calls them: `get`, `set`, `get` of many,
//! `list` (GET, and POST with `where`), `count`, `paginate`, `delete` (one
//! prefix, many, `exact`, `where`) — and the `kv` service other plugins use.

use serde_json::json;

use super::{Client, VALUE, base, value_of};

#[tokio::test]
async fn set_then_get_returns_the_value_exactly() {
    let kv = Client::new("c-get");
    // `kv.set(["users", 1], value)`: the body is `JSON.stringify(value)`.
    let vs = kv.set("users/1", VALUE).await;
    let got = kv.get("/keys/users/1").await;
    let entry = got.ok();
    assert_eq!(entry["key"], json!(["users", 1]));
    assert_eq!(entry["versionstamp"], vs);
    assert_eq!(value_of(&got.text), VALUE, "member order and spelling kept");
    // Whitespace between tokens is all that is dropped.
    kv.set("users/2", "{ \"b\" : 1.10 ,\n \"a\" : [ 2 ] }")
        .await;
    assert_eq!(kv.value_text("users/2").await, r#"{"b":1.10,"a":[2]}"#);
    // Scalars and a tagged bigint round-trip too.
    for (path, value) in [
        ("s/1", r#""a \u2028 line""#),
        ("s/2", "1.0"),
        ("s/3", "null"),
        ("s/4", r#"{"__type":"bigint","value":"9007199254740993"}"#),
    ] {
        kv.set(path, value).await;
        assert_eq!(kv.value_text(path).await, value);
    }
    // `expiresIn` (ms) in the query.
    let out = kv
        .put("/keys/sessions/a?expiresIn=60000", "{\"u\":1}")
        .await;
    assert_eq!(out.ok()["ok"], true);
    // A missing key is a 404, which the client turns into a null entry.
    assert_eq!(kv.get("/keys/users/404").await.status, 404);
}

#[tokio::test]
async fn get_many_answers_entries_in_order() {
    let kv = Client::new("c-batch");
    kv.set("users/1", VALUE).await;
    // `kv.get([["users", 1], ["users", 2]])`.
    let out = kv
        .post("/keys/batch", r#"{"keys":[["users",1],["users",2]]}"#)
        .await;
    let entries = out.ok();
    assert_eq!(entries[0]["key"], json!(["users", 1]));
    assert_eq!(entries[1]["value"], json!(null));
    assert_eq!(entries[1]["versionstamp"], json!(null));
    assert!(out.text.contains(VALUE), "{}", out.text);
}

#[tokio::test]
async fn list_by_query_and_with_where() {
    let kv = Client::new("c-list");
    kv.set("users/1", r#"{"name":"Ada","age":36}"#).await;
    kv.set("users/2", r#"{"name":"Bob","age":17}"#).await;
    kv.set("other/1", "1").await;
    // `kv.list(["users"], {limit: 10, reverse: true})`.
    let out = kv.get("/keys?prefix=users&limit=10&reverse=true").await;
    let entries = out.ok();
    assert_eq!(entries.as_array().map(Vec::len), Some(2), "{entries}");
    assert_eq!(entries[0]["key"], json!(["users", 2]));
    assert!(
        out.text.contains(r#""value":{"name":"Bob","age":17}"#),
        "{}",
        out.text
    );
    // `kv.list(["users"], {where: {age: {$gte: 18}}})`: POST with the
    // undefined options left out, as `JSON.stringify` leaves them.
    let out = kv
        .post(
            "/keys/list",
            r#"{"prefix":["users"],"where":{"age":{"$gte":18}}}"#,
        )
        .await;
    let entries = out.ok();
    assert_eq!(entries.as_array().map(Vec::len), Some(1), "{entries}");
    assert!(out.text.contains(r#""value":{"name":"Ada","age":36}"#));
    // `kv.now()` is sent as `{"$now": true}`.
    let out = kv
        .post(
            "/keys/list",
            r#"{"prefix":["users"],"limit":5,"where":{"age":{"$lt":{"$now":true}}}}"#,
        )
        .await;
    assert_eq!(out.ok().as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn count_and_paginate() {
    let kv = Client::new("c-page");
    for n in 1..=3 {
        kv.set(&format!("items/{n}"), &format!(r#"{{"z":{n},"a":0}}"#))
            .await;
    }
    assert_eq!(
        kv.get("/keys/count?prefix=items").await.ok(),
        json!({"count": 3})
    );
    // `kv.paginate(["items"], {limit: 2})`, then with the cursor.
    let first = kv.get("/keys/paginate?prefix=items&limit=2").await;
    let page = first.ok();
    assert_eq!(page["hasMore"], true);
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(2));
    assert!(
        first.text.contains(r#""value":{"z":1,"a":0}"#),
        "{}",
        first.text
    );
    let cursor = page["cursor"].as_str().expect("cursor");
    let second = kv
        .get(&format!(
            "/keys/paginate?prefix=items&limit=2&cursor={cursor}"
        ))
        .await
        .ok();
    assert_eq!(second["hasMore"], false);
    assert_eq!(second["cursor"], json!(null));
    assert_eq!(second["entries"][0]["key"], json!(["items", 3]));
}

#[tokio::test]
async fn delete_a_prefix_exactly_or_where() {
    let kv = Client::new("c-delete");
    kv.set("users/1", r#"{"active":false}"#).await;
    kv.set("users/1/profile", "1").await;
    kv.set("users/2", r#"{"active":true}"#).await;
    kv.set("users/3", r#"{"active":false}"#).await;
    // `kv.delete(["users", 1], {exact: true})`: only the key.
    let out = kv.delete("/keys/users/1", Some(r#"{"exact":true}"#)).await;
    assert_eq!(out.ok(), json!({"deletedCount": 1}));
    assert_eq!(kv.get("/keys/users/1/profile").await.status, 200);
    // `kv.delete(["users"], {where: {active: false}})`.
    let out = kv
        .delete("/keys/users", Some(r#"{"where":{"active":false}}"#))
        .await;
    assert_eq!(out.ok(), json!({"deletedCount": 1}), "users/3");
    // `kv.delete(["users"])`: no body, the whole subtree.
    let out = kv.delete("/keys/users", None).await;
    assert_eq!(out.ok(), json!({"deletedCount": 2}));
    assert_eq!(kv.get("/keys/count?prefix=users").await.ok()["count"], 0);
}

#[tokio::test]
async fn delete_many() {
    let kv = Client::new("c-delete-many");
    kv.set("a/1", "1").await;
    kv.set("a/1/x", "1").await;
    kv.set("b/1", "2").await;
    // `kv.delete([["a", 1], ["b", 1]], {exact: true})`.
    let out = kv
        .post(
            "/keys/delete-batch",
            r#"{"keys":[["a",1],["b",1]],"exact":true}"#,
        )
        .await;
    assert_eq!(out.ok(), json!({"deletedCount": 2}));
    let out = kv.post("/keys/delete-batch", r#"{"keys":[["a"]]}"#).await;
    assert_eq!(out.ok(), json!({"deletedCount": 1}), "a/1/x");
}

#[tokio::test]
async fn the_kv_service_passes_values_through_exactly() {
    let kv = Client::new("c-service");
    let http = reqwest::Client::new();
    let call = |input: String| {
        http.post(format!("{}/_/kvuser/call", base()))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"plugin":"@buntime/plugin-keyval","function":"kv","input":{input}}}"#
            ))
            .send()
    };
    let set = format!(r#"{{"op":"set","tenant":"c-service","key":["svc",1],"value":{VALUE}}}"#);
    let res = call(set).await.expect("call");
    assert_eq!(res.status(), 200);
    // What the service wrote, the REST API reads back exactly...
    assert_eq!(kv.value_text("svc/1").await, VALUE);
    // ...and the service's own get and list answer it exactly.
    let get = r#"{"op":"get","tenant":"c-service","key":["svc",1]}"#.to_owned();
    let text = call(get).await.expect("call").text().await.expect("body");
    assert_eq!(value_of(&text), VALUE, "{text}");
    let list = r#"{"op":"list","tenant":"c-service","prefix":["svc"]}"#.to_owned();
    let text = call(list).await.expect("call").text().await.expect("body");
    assert!(text.contains(VALUE), "{text}");
    let atomic = format!(
        r#"{{"op":"atomic","tenant":"c-service","mutations":[{{"type":"set","key":["svc",2],"value":{VALUE}}}]}}"#
    );
    let res = call(atomic).await.expect("call");
    assert_eq!(res.status(), 200);
    assert_eq!(kv.value_text("svc/2").await, VALUE);
}
