//! Hostile input: every malformed or oversized request is refused with a clear error and changes nothing.

use super::*;

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
