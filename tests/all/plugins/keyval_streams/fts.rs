//! Full-text indexes: every write keeps them current; search by prefix and query.

use super::*;

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
    let indexes = list.as_array().expect("an array of indexes");
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
    assert!(body[0]["value"]["title"].is_string(), "{body}");
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
    assert_eq!(kv.get("/indexes").await.1, json!([]));
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
