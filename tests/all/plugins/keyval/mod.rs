//! The keyval core plugin end to end: key order across types, ranges and
//! pagination, TTL, every atomic mutation, contended commits, tenants, the
//! `kv` service, grants and restarts — over HTTP, on real SQLite files.

use serde_json::{Value, json};

use super::{config, kit};
use crate::server::{TestServer, client};

mod expiry;

async fn start() -> TestServer {
    TestServer::try_start_plugins(buntime::plugins::embedded(), |_| {})
        .await
        .expect("server with the core plugins")
}

fn api(server: &TestServer, path: &str) -> String {
    server.url(&format!("/_/keyval/api{path}"))
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn atomic(server: &TestServer, body: Value) -> (u16, Value) {
    send(client().post(api(server, "/atomic")).json(&body)).await
}

async fn set(server: &TestServer, key: Value, value: Value) -> String {
    let (status, body) = atomic(
        server,
        json!({"mutations": [{"type": "set", "key": key, "value": value}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["versionstamp"]
        .as_str()
        .expect("versionstamp")
        .to_owned()
}

async fn list(server: &TestServer, body: Value) -> Vec<Value> {
    let (status, out) = send(client().post(api(server, "/keys/list")).json(&body)).await;
    assert_eq!(status, 200, "{out}");
    out.as_array().expect("a list").clone()
}

fn keys_of(entries: &[Value]) -> Vec<Value> {
    entries.iter().map(|e| e["key"].clone()).collect()
}

#[tokio::test]
async fn keys_sort_by_type_then_value() {
    let server = start().await;
    // Written out of order; bytes < string < number < bigint < bool.
    let keys = [
        json!(["k", true]),
        json!(["k", {"$bigint": "-5"}]),
        json!(["k", 2.5]),
        json!(["k", "b"]),
        json!(["k", -1]),
        json!(["k", {"$bytes": "AAE="}]),
        json!(["k", "a"]),
        json!(["k", false]),
        json!(["k", {"$bigint": "7"}]),
        json!(["k", 10]),
        json!(["k", "a", "child"]),
    ];
    for k in &keys {
        set(&server, k.clone(), json!(1)).await;
    }
    let got = keys_of(&list(&server, json!({"prefix": ["k"]})).await);
    let want = vec![
        json!(["k", {"$bytes": "AAE="}]),
        json!(["k", "a"]),
        json!(["k", "a", "child"]),
        json!(["k", "b"]),
        json!(["k", -1]),
        json!(["k", 2.5]),
        json!(["k", 10]),
        json!(["k", {"$bigint": "-5"}]),
        json!(["k", {"$bigint": "7"}]),
        json!(["k", false]),
        json!(["k", true]),
    ];
    assert_eq!(got, want);
    let reversed = keys_of(&list(&server, json!({"prefix": ["k"], "reverse": true})).await);
    assert_eq!(reversed, want.iter().rev().cloned().collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn ranges_limits_and_pagination() {
    let server = start().await;
    for i in 0..25 {
        set(&server, json!(["n", i]), json!({"i": i})).await;
    }
    set(&server, json!(["n"]), json!("the prefix itself")).await;
    set(&server, json!(["o", 0]), json!("outside")).await;

    // A prefix excludes the prefix key itself and everything outside.
    let all = list(&server, json!({"prefix": ["n"], "limit": 1000})).await;
    assert_eq!(all.len(), 25);
    // start is inclusive, end exclusive.
    let range = keys_of(&list(&server, json!({"start": ["n", 5], "end": ["n", 8]})).await);
    assert_eq!(
        range,
        vec![json!(["n", 5]), json!(["n", 6]), json!(["n", 7])]
    );
    let tail = keys_of(&list(&server, json!({"prefix": ["n"], "start": ["n", 23]})).await);
    assert_eq!(tail, vec![json!(["n", 23]), json!(["n", 24])]);
    // GET /keys with query parameters (path-style keys).
    let (status, got) =
        send(client().get(api(&server, "/keys?prefix=n&limit=3&reverse=true"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        keys_of(got.as_array().expect("list")),
        vec![json!(["n", 24]), json!(["n", 23]), json!(["n", 22])]
    );
    let (_, count) = send(client().get(api(&server, "/keys/count?prefix=n"))).await;
    assert_eq!(count["count"], 25);

    // Cursor pages cover everything exactly once, both ways.
    for reverse in [false, true] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("/keys/paginate?prefix=n&limit=7&reverse={reverse}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = send(client().get(api(&server, &url))).await;
            assert_eq!(status, 200, "{page}");
            seen.extend(keys_of(page["entries"].as_array().expect("entries")));
            if page["hasMore"] != true {
                assert!(page["cursor"].is_null());
                break;
            }
            cursor = Some(page["cursor"].as_str().expect("cursor").to_owned());
        }
        let mut want: Vec<Value> = (0..25).map(|i| json!(["n", i])).collect();
        if reverse {
            want.reverse();
        }
        assert_eq!(seen, want, "reverse={reverse}");
    }
    // Limits are checked.
    for bad in [
        "/keys?prefix=n&limit=0",
        "/keys?prefix=n&limit=1001",
        "/keys?prefix=n&limit=x",
    ] {
        let (status, body) = send(client().get(api(&server, bad))).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains("limit"),
            "{body}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn rest_keys_get_put_delete_and_batches() {
    let server = start().await;
    let (status, put) = send(
        client()
            .put(api(&server, "/keys/users/42"))
            .body(r#"{"name":"Ann"}"#),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["ok"], true);
    let vs = put["versionstamp"].as_str().expect("versionstamp");
    assert_eq!(vs.len(), 20);
    // Path segments that are safe integers are numbers.
    let (status, got) = send(client().get(api(&server, "/keys/users/42"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        got,
        json!({"key": ["users", 42], "value": {"name": "Ann"}, "versionstamp": vs})
    );
    let (status, missing) = send(client().get(api(&server, "/keys/users/43"))).await;
    assert_eq!(status, 404, "{missing}");

    set(&server, json!(["users", 42, "posts", 1]), json!("p1")).await;
    set(&server, json!(["users", 7]), json!("other")).await;
    let (_, batch) = send(
        client()
            .post(api(&server, "/keys/batch"))
            .json(&json!({"keys": [["users", 7], ["nope"], "users/42"]})),
    )
    .await;
    assert_eq!(batch[0]["value"], "other");
    assert!(batch[1]["value"].is_null() && batch[1]["versionstamp"].is_null());
    assert_eq!(batch[2]["value"], json!({"name": "Ann"}));

    // DELETE removes the subtree unless `exact`.
    let (_, deleted) = send(
        client()
            .delete(api(&server, "/keys/users/42"))
            .json(&json!({"exact": true})),
    )
    .await;
    assert_eq!(deleted["deletedCount"], 1);
    let (status, _) = send(client().get(api(&server, "/keys/users/42/posts/1"))).await;
    assert_eq!(status, 200, "exact delete left the child");
    let (_, deleted) = send(client().delete(api(&server, "/keys/users"))).await;
    assert_eq!(deleted["deletedCount"], 2);
    let (_, count) = send(client().get(api(&server, "/keys/count?prefix=users"))).await;
    assert_eq!(count["count"], 0);

    // delete-batch with a where filter only deletes matches.
    for (i, role) in ["admin", "user", "user"].iter().enumerate() {
        set(&server, json!(["acct", i]), json!({"role": role})).await;
    }
    let (_, deleted) = send(
        client()
            .post(api(&server, "/keys/delete-batch"))
            .json(&json!({"keys": [["acct"]], "where": {"role": "user"}})),
    )
    .await;
    assert_eq!(deleted["deletedCount"], 2);
    let left = list(&server, json!({"prefix": ["acct"]})).await;
    assert_eq!(keys_of(&left), vec![json!(["acct", 0])]);
    server.stop().await;
}

#[tokio::test]
async fn every_atomic_mutation_and_failed_checks_write_nothing() {
    let server = start().await;
    let (status, first) = atomic(
        &server,
        json!({"mutations": [
            {"type": "sum", "key": ["c"], "value": 5},
            {"type": "min", "key": ["lo"], "value": 10},
            {"type": "max", "key": ["hi"], "value": 10},
            {"type": "append", "key": ["arr"], "value": [1, 2]},
            {"type": "prepend", "key": ["pre"], "value": ["b"]},
            {"type": "set", "key": ["gone"], "value": true},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = atomic(
        &server,
        json!({"mutations": [
            {"type": "sum", "key": ["c"], "value": {"$bigint": "9007199254740993"}},
            {"type": "min", "key": ["lo"], "value": 3},
            {"type": "max", "key": ["hi"], "value": 3},
            {"type": "append", "key": ["arr"], "value": [3]},
            {"type": "prepend", "key": ["pre"], "value": ["a"]},
            {"type": "delete", "key": ["gone"]},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let v1 = first["versionstamp"].as_str().expect("vs");
    let v2 = second["versionstamp"].as_str().expect("vs");
    assert!(v2 > v1, "versionstamps grow: {v1} then {v2}");
    let (_, got) = send(
        client()
            .post(api(&server, "/keys/batch"))
            .json(&json!({"keys": [["c"], ["lo"], ["hi"], ["arr"], ["pre"], ["gone"]]})),
    )
    .await;
    let values: Vec<Value> = got
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["value"].clone())
        .collect();
    // 64-bit integers stay exact beyond 2^53.
    assert_eq!(
        values,
        vec![
            json!(9_007_199_254_740_998_i64),
            json!(3),
            json!(10),
            json!([1, 2, 3]),
            json!(["a", "b"]),
            Value::Null
        ]
    );
    // All mutations of a commit share its versionstamp.
    for e in got.as_array().expect("list").iter().take(5) {
        assert_eq!(e["versionstamp"], v2);
    }

    // A failing check aborts the whole commit, including mutations listed before it.
    let (status, body) = atomic(&server, json!({
        "checks": [{"key": ["c"], "versionstamp": v2}, {"key": ["lo"], "versionstamp": v1}],
        "mutations": [{"type": "set", "key": ["new"], "value": 1}, {"type": "sum", "key": ["c"], "value": 1}],
    })).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["ok"], false);
    let (status, _) = send(client().get(api(&server, "/keys/new"))).await;
    assert_eq!(status, 404);
    // A null versionstamp means "must not exist".
    let (status, _) = atomic(&server, json!({"checks": [{"key": ["c"], "versionstamp": null}], "mutations": [{"type": "delete", "key": ["c"]}]})).await;
    assert_eq!(status, 409);

    // Type errors and overflow abort too, naming the mutation.
    set(&server, json!(["text"]), json!("abc")).await;
    for (m, word) in [
        (
            json!({"type": "sum", "key": ["text"], "value": 1}),
            "integer",
        ),
        (
            json!({"type": "sum", "key": ["c"], "value": i64::MAX}),
            "overflow",
        ),
        (
            json!({"type": "append", "key": ["c"], "value": [1]}),
            "array",
        ),
    ] {
        let (status, body) = atomic(
            &server,
            json!({"mutations": [{"type": "set", "key": ["side"], "value": 1}, m]}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        let msg = body["message"].as_str().unwrap_or("");
        assert!(msg.starts_with("mutation 1: "), "{msg}");
        assert!(msg.contains(word), "{msg}");
        let (status, _) = send(client().get(api(&server, "/keys/side"))).await;
        assert_eq!(status, 404, "nothing of the failed commit was written");
    }
    for bad in [
        json!({"mutations": [{"type": "explode", "key": ["a"]}]}),
        json!({"mutations": [{"type": "sum", "key": ["a"], "value": 1.5}]}),
        json!({"checks": [{"key": ["a"], "versionstamp": "xyz"}], "mutations": []}),
        json!({}),
    ] {
        let (status, body) = atomic(&server, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_increments_guarded_by_versionstamps_add_up() {
    let server = start().await;
    set(&server, json!(["counter"]), json!(0)).await;
    let url = api(&server, "/atomic");
    let get_url = api(&server, "/keys/counter");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (url, get_url) = (url.clone(), get_url.clone());
            tokio::spawn(async move {
                let http = client();
                for attempt in 0.. {
                    assert!(attempt < 2000, "too many conflicts");
                    let current: Value = http.get(&get_url).send().await.expect("get").json().await.expect("json");
                    let n = current["value"].as_i64().expect("int");
                    let res = http
                        .post(&url)
                        .json(&json!({
                            "checks": [{"key": ["counter"], "versionstamp": current["versionstamp"]}],
                            "mutations": [{"type": "set", "key": ["counter"], "value": n + 1}],
                        }))
                        .send()
                        .await
                        .expect("commit");
                    match res.status().as_u16() {
                        200 => return attempt,
                        409 => continue,
                        other => panic!("unexpected status {other}: {}", res.text().await.unwrap_or_default()),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    let mut retries = 0;
    for t in tasks {
        retries += t.await.expect("task");
    }
    let (_, got) = send(client().get(api(&server, "/keys/counter"))).await;
    assert_eq!(
        got["value"], 200,
        "every increment counted exactly once ({retries} retries)"
    );
    assert!(retries > 0, "the increments really contended");
    server.stop().await;
}

#[tokio::test]
async fn tenants_have_separate_keyspaces() {
    let server = start().await;
    let put = |tenant: &'static str, value: &'static str| {
        client()
            .put(api(&server, "/keys/shared"))
            .header("x-tenant-id", tenant)
            .body(format!("\"{value}\""))
    };
    assert_eq!(send(put("acme", "a")).await.0, 200);
    assert_eq!(send(put("globex", "g")).await.0, 200);
    let get = |tenant: Option<&str>| {
        let r = client().get(api(&server, "/keys/shared"));
        match tenant {
            Some(t) => r.header("x-tenant-id", t.to_owned()),
            None => r,
        }
    };
    assert_eq!(send(get(Some("acme"))).await.1["value"], "a");
    assert_eq!(send(get(Some("globex"))).await.1["value"], "g");
    assert_eq!(
        send(get(None)).await.0,
        404,
        "the root keyspace is separate"
    );
    let (_, q) = send(client().get(api(&server, "/keys/shared?tenant=acme"))).await;
    assert_eq!(q["value"], "a");
    // Each tenant is its own file.
    let tenants = server.dir.path().join("data/default.tenants");
    assert!(tenants.join("acme.db").is_file() && tenants.join("globex.db").is_file());
    let (status, body) = send(
        client()
            .get(api(&server, "/keys/shared"))
            .header("x-tenant-id", "../etc"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn other_plugins_use_the_kv_service_and_need_the_dependency() {
    let server = TestServer::try_start_plugins(buntime::plugins::embedded(), |dir| {
        kit(
            dir,
            "user",
            r#""base": "user", "dependencies": ["@buntime/plugin-keyval"], "capabilities": {"services": true}"#,
        );
        kit(dir, "stranger", r#""base": "stranger", "capabilities": {"services": true}"#);
        config(dir, "{}");
    })
    .await
    .expect("server");
    let call = |base: &str, input: Value| {
        client()
            .post(server.url(&format!("/_/{base}/call")))
            .json(&json!({"plugin": "@buntime/plugin-keyval", "function": "kv", "input": input}))
    };
    let (status, out) = send(call(
        "user",
        json!({"op": "set", "key": ["svc", 1], "value": {"a": 1}}),
    ))
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["ok"], true);
    let (_, out) = send(call("user", json!({"op": "get", "key": ["svc", 1]}))).await;
    assert_eq!(out["value"], json!({"a": 1}));
    // What the service wrote is what the REST API sees.
    let (_, rest) = send(client().get(api(&server, "/keys/svc/1"))).await;
    assert_eq!(rest["value"], json!({"a": 1}));
    let (_, out) = send(call("user", json!({"op": "atomic", "checks": [{"key": ["svc", 1], "versionstamp": null}], "mutations": [{"type": "delete", "key": ["svc", 1]}]}))).await;
    assert_eq!(out["ok"], false);
    let (_, out) = send(call("user", json!({"op": "list", "prefix": ["svc"]}))).await;
    assert_eq!(out["entries"].as_array().map(Vec::len), Some(1));
    let (_, out) = send(call("user", json!({"op": "enqueue", "value": "job"}))).await;
    assert_eq!(out["ok"], true, "{out}");
    let (_, out) = send(call("user", json!({"op": "delete", "key": ["svc", 1]}))).await;
    assert_eq!(out["deletedCount"], 1);
    // Without the dependency the call is refused, naming what to add.
    let (status, out) = send(call("stranger", json!({"op": "get", "key": ["svc", 1]}))).await;
    assert_eq!(status, 403, "{out}");
    assert_eq!(out["code"], "capability_denied");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or("")
            .contains("dependencies"),
        "{out}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_plugin_without_the_sql_grant_cannot_read_keyval_data() {
    let server = TestServer::try_start_plugins(buntime::plugins::embedded(), |dir| {
        kit(
            dir,
            "other",
            r#""base": "other", "capabilities": {"sql": ["analytics"]}"#,
        );
    })
    .await
    .expect("server");
    set(&server, json!(["secret"]), json!("s3cret")).await;
    let (status, out) = send(
        client()
            .post(server.url("/_/other/sql"))
            .json(&json!({"op": "query", "db": "default", "sql": "SELECT value FROM kv_entries"})),
    )
    .await;
    assert_eq!(status, 403, "{out}");
    assert_eq!(out["code"], "capability_denied");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or("")
            .contains("\"sql\": [\"default\"]"),
        "{out}"
    );
    server.stop().await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let server = start().await;
    let vs = set(&server, json!(["durable", 1]), json!({"kept": true})).await;
    send(
        client()
            .post(api(&server, "/queue/enqueue"))
            .json(&json!({"value": "queued"})),
    )
    .await;
    let dir = server.stop_keep_dir().await;
    let server = TestServer::try_start_plugins_in(dir, buntime::plugins::embedded())
        .await
        .expect("restart");
    let (status, got) = send(client().get(api(&server, "/keys/durable/1"))).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["value"], json!({"kept": true}));
    assert_eq!(got["versionstamp"], vs);
    let next = set(&server, json!(["durable", 2]), json!(2)).await;
    assert!(next > vs, "versionstamps keep growing across restarts");
    let (_, stats) = send(client().get(api(&server, "/queue/stats"))).await;
    assert_eq!(stats["pending"], 1);
    server.stop().await;
}
