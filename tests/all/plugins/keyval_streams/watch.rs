//! Watch streams: the first snapshot, one event per write, prefix watches,
//! long polls, streams that end when the client leaves.

use super::*;

#[tokio::test]
async fn watch_sends_the_entries_then_one_event_per_write() {
    let kv = Kv::start().await;
    let first = kv.set("a/b", &json!({ "n": 0 })).await;
    kv.set("a/c", &json!("other")).await;

    let mut w = kv.stream("/watch?keys=a/b,a/missing").await;
    let initial = w.next(EVENT_WAIT).await.expect("initial");
    assert_eq!(initial.name, "change");
    assert_eq!(
        initial.data,
        json!([
            { "key": ["a", "b"], "value": { "n": 0 }, "versionstamp": first },
            { "key": ["a", "missing"], "value": null, "versionstamp": null },
        ])
    );

    // Each write is pushed as its own event: three writes in a row give
    // three events, each with its value, where a watch that polled the
    // store would merge the writes made between two of its polls. (How
    // fast an event comes is not asserted: a loaded machine can delay any
    // of them.)
    let mut written = Vec::new();
    for n in 1..=3 {
        written.push(kv.set("a/b", &json!({ "n": n })).await);
    }
    for (n, versionstamp) in (1..=3).zip(&written) {
        let e = w.next(EVENT_WAIT).await.expect("a change");
        assert_eq!(e.name, "change");
        assert_eq!(
            e.data,
            json!([{ "key": ["a", "b"], "value": { "n": n }, "versionstamp": versionstamp }])
        );
    }

    // Other keys are not this stream's business; a delete is `value: null`.
    kv.set("a/c", &json!("still other")).await;
    kv.set("a/b/deeper", &json!(1)).await;
    let (status, body) = kv
        .raw(reqwest::Method::DELETE, "/keys/a/b", r#"{"exact": true}"#)
        .await;
    assert_eq!((status, body), (200, json!({ "deletedCount": 1 })));
    let e = w.next(EVENT_WAIT).await.expect("the delete");
    assert_eq!(
        e.data,
        json!([{ "key": ["a", "b"], "value": null, "versionstamp": null }])
    );
    // The absent key is watched too: writing it is a change.
    let vs = kv.set("a/missing", &json!("here")).await;
    let e = w.next(EVENT_WAIT).await.expect("the new key");
    assert_eq!(
        e.data,
        json!([{ "key": ["a", "missing"], "value": "here", "versionstamp": vs }])
    );
    // Writes through an atomic commit are changes as well.
    let done = kv
        .atomic(&json!({ "mutations": [{ "type": "sum", "key": ["a", "b"], "value": 5 }] }))
        .await;
    let e = w.next(EVENT_WAIT).await.expect("the sum");
    assert_eq!(e.data[0]["value"], 5);
    assert_eq!(e.data[0]["versionstamp"], done["versionstamp"]);
    // Nothing else came: the next event is the next write.
    let last = kv.set("a/b", &json!("last")).await;
    let e = w.next(EVENT_WAIT).await.expect("the last write");
    assert_eq!(
        e.data,
        json!([{ "key": ["a", "b"], "value": "last", "versionstamp": last }])
    );

    // Without the initial entries the first event is the first change (the
    // stream is subscribed once its head has arrived).
    let mut quiet_start = kv.stream("/watch?keys=a/c&initial=false").await;
    kv.set("a/c", &json!("third")).await;
    let e = quiet_start.next(EVENT_WAIT).await.expect("change");
    assert_eq!(e.data[0]["value"], "third");
    kv.server.stop().await;
}

#[tokio::test]
async fn prefix_watch_sees_its_subtree_only() {
    let kv = Kv::start().await;
    kv.set("a/old", &json!("before")).await;
    let mut all = kv.stream("/watch/prefix?prefix=a").await;
    let initial = all.next(EVENT_WAIT).await.expect("initial");
    assert_eq!(initial.name, "change");
    assert_eq!(initial.data.as_array().map(Vec::len), Some(1));
    assert_eq!(initial.data[0]["key"], json!(["a", "old"]));

    let mut w = kv.stream("/watch/prefix?prefix=a&initial=false").await;
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
    let e = w.next(EVENT_WAIT).await.expect("a change under a");
    assert_eq!(
        e.data,
        json!([{ "key": ["a", "x"], "value": { "v": 1 }, "versionstamp": vs }])
    );
    kv.atomic(&json!({ "mutations": [
        { "type": "set", "key": ["a", 7, true], "value": "deep" },
        { "type": "set", "key": ["z"], "value": "elsewhere" },
    ] }))
    .await;
    let e = w.next(EVENT_WAIT).await.expect("deep change");
    assert_eq!(e.data[0]["key"], json!(["a", 7, true]));
    let (status, _) = kv.delete("/keys/a/x").await;
    assert_eq!(status, 200);
    let e = w.next(EVENT_WAIT).await.expect("the delete");
    assert_eq!(
        e.data,
        json!([{ "key": ["a", "x"], "value": null, "versionstamp": null }])
    );
    // Nothing else came on either stream: the next event on each is a last
    // write under the prefix (removed again before the polls below).
    let end = json!(["a", "end"]);
    kv.set("a/end", &json!(1)).await;
    let e = w.next(EVENT_WAIT).await.expect("the last write");
    assert_eq!(e.data[0]["key"], end);
    let mut seen = Vec::new();
    loop {
        let e = all.next(EVENT_WAIT).await.expect("the last write");
        if e.data[0]["key"] == end {
            break;
        }
        seen.push(e.data[0]["key"].clone());
    }
    let (status, _) = kv.delete("/keys/a/end").await;
    assert_eq!(status, 200);
    assert_eq!(
        seen,
        vec![json!(["a", "x"]), json!(["a", 7, true]), json!(["a", "x"])]
    );

    // The poll variants: the entries that changed since the versionstamps
    // sent back (all of them the first time), and the versionstamps to send.
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
    assert_eq!(body["entries"], json!([]), "{body}");
    assert_eq!(body["versionstamps"], json!([vs, ""]), "{body}");
    kv.set("p/2", &json!(2)).await;
    let (_, body) = kv.get(&path).await;
    assert_eq!(body["changed"], true, "a new key: {body}");
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["entries"][0]["key"], json!(["p", 2]));
    let vs2 = body["entries"][0]["versionstamp"].as_str().expect("vs");
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
            assert!(w.next(EVENT_WAIT).await.is_some());
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
    let e = w.next(EVENT_WAIT).await.expect("a change");
    assert_eq!(e.data[0]["value"], "fresh");

    // A listener that left dequeues nothing more.
    let listener = kv.stream("/queue/listen").await;
    kv.wait_for_streams(2).await;
    drop(listener);
    // Only the watch above is left open.
    kv.wait_for_streams(1).await;
    let id = kv.enqueue(&json!({ "value": "for a poll" })).await;
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
