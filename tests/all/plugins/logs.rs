//! The logs core plugin end to end: an app's log line, tagged with its
//! request id, found by query and seen on the live tail; the tail narrowed
//! like the query; a plugin's `on_response` line tagged too; a posted line;
//! the buffer bounded to `maxEntries`; clear; anonymous clients, missing
//! permissions and hostile queries and bodies refused.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::keyval_streams::Sse;
use super::{config, echo, kit};
use crate::security::{MASTER, create_key, expect, local, policy, remote, start};
use crate::server::{TestServer, install_echo};
use crate::support::eventually;

/// How long a test waits for a line to be stored or to reach a tail: it
/// takes milliseconds; the margin is for a loaded machine (only a failing
/// test waits this long).
const LOGGED_WITHIN: Duration = Duration::from_secs(10);

const LOGS: &str = "@buntime/plugin-logs";
const API: &str = "/_/logs/api";

/// A server under a master key with the echo app and the logs plugin
/// (alone: compiling the other core plugins would only slow the start)
/// configured with `logs`.
async fn server(logs: Value) -> TestServer {
    server_with(json!([LOGS, logs])).await
}

/// [`server`] with the logs plugin's whole `buntime.jsonc` entry.
async fn server_with(entry: Value) -> TestServer {
    let embedded = buntime::plugins::embedded()
        .into_iter()
        .filter(|p| p.manifest.contains(LOGS))
        .collect();
    start(policy(Some(MASTER)), embedded, |root| {
        echo(root);
        // A second app, for tails that must not see the echo app's lines.
        install_echo(&root.join("apps"), "other", Some(r#"{ "ttl": "1m" }"#));
        config(root, &json!({ "plugins": [entry] }).to_string());
    })
    .await
}

/// Has the echo app log `msg` at `level` for request `id`.
async fn app_logs(server: &TestServer, level: &str, msg: &str, id: &str) {
    let path = format!("/echo/log?level={level}&msg={msg}");
    let res = local(server, Method::GET, &path)
        .header("x-request-id", id)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "{path}");
}

/// `GET /_/logs/api<query>` with the master key: the `logs` it answers.
async fn query(server: &TestServer, query: &str) -> Vec<Value> {
    let body = expect(
        local(server, Method::GET, &format!("{API}{query}")).header("x-api-key", MASTER),
        200,
        None,
    )
    .await;
    body["logs"].as_array().cloned().unwrap_or_default()
}

/// Polls the query until a record with `message` is in it.
async fn until_logged(server: &TestServer, q: &str, message: &str) -> Vec<Value> {
    let what = format!("a record `{message}` for `{q}`");
    eventually(&what, LOGGED_WITHIN, || async {
        let logs = query(server, q).await;
        if logs.iter().any(|r| r["message"] == message) {
            Ok(logs)
        } else {
            let last: Vec<&Value> = logs.iter().rev().take(3).map(|r| &r["message"]).collect();
            Err(format!("{} records, the last {last:?}", logs.len()))
        }
    })
    .await
}

#[tokio::test]
async fn an_app_line_is_found_by_request_level_and_app_and_arrives_on_the_tail() {
    let server = server(json!({})).await;
    let res = local(&server, Method::GET, &format!("{API}/sse"))
        .header("x-api-key", MASTER)
        .send()
        .await
        .expect("tail");
    assert_eq!(res.status(), 200);
    let mut tail = Sse::new(res);

    // The tail gets what is published while it is open: keep writing until
    // a line arrives.
    let deadline = Instant::now() + LOGGED_WITHIN;
    let mut written = 0;
    let record = 'wait: loop {
        let id = format!("req-tail-{written}");
        app_logs(&server, "warn", "checkout-failed", &id).await;
        written += 1;
        while let Some(event) = tail.next(Duration::from_millis(100)).await {
            if event.name == "log" && event.data["requestId"] == id {
                break 'wait event.data;
            }
        }
        assert!(
            Instant::now() < deadline,
            "none of {written} lines reached the tail within {LOGGED_WITHIN:?}"
        );
    };
    assert_eq!(record["message"], "checkout-failed");
    assert_eq!(record["level"], "warn");
    assert_eq!(record["source"], "app");
    assert!(
        record["app"]
            .as_str()
            .is_some_and(|a| a.starts_with("echo")),
        "{record}"
    );
    assert!(
        record["plugin"].is_null() && record["traceId"].is_null(),
        "{record}"
    );
    assert!(
        record["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{record}"
    );
    let id = record["requestId"].as_str().expect("request id").to_owned();

    let by_request = until_logged(&server, &format!("?requestId={id}"), "checkout-failed").await;
    assert!(by_request.iter().all(|r| r["requestId"] == id.as_str()));
    let by_level = query(&server, "?level=warn&app=echo&limit=1000").await;
    assert!(by_level.iter().any(|r| r["requestId"] == id.as_str()));
    assert!(by_level.iter().all(|r| r["level"] == "warn"));
    assert!(
        query(&server, &format!("?requestId={id}&level=error"))
            .await
            .is_empty()
    );
    assert!(
        query(&server, &format!("?requestId={id}&app=other"))
            .await
            .is_empty()
    );
    app_logs(&server, "info", "second-line", "req-second").await;
    until_logged(&server, "?app=echo", "second-line").await;
    let newest_first = query(&server, "?app=echo&limit=2").await;
    assert_eq!(newest_first.len(), 2);
    assert_eq!(newest_first[0]["message"], "second-line");
    assert!(newest_first[0]["seq"].as_u64() > newest_first[1]["seq"].as_u64());

    let stats = expect(
        local(&server, Method::GET, &format!("{API}/stats")).header("x-api-key", MASTER),
        200,
        None,
    )
    .await;
    assert!(stats["counts"]["warn"].as_u64() >= Some(1), "{stats}");
    assert!(stats["sources"]["app"].as_u64() >= Some(1), "{stats}");
    assert_eq!(stats["capacity"], 1000);
    assert_eq!(stats["dropped"], 0);
}

#[tokio::test]
async fn the_tail_filters_by_app_request_and_search_like_the_query() {
    let server = server(json!({})).await;
    let res = local(
        &server,
        Method::GET,
        &format!("{API}/sse?app=echo&requestId=req-want&search=WANTED&level=warn,info"),
    )
    .header("x-api-key", MASTER)
    .send()
    .await
    .expect("tail");
    assert_eq!(res.status(), 200);
    let mut tail = Sse::new(res);
    // Lines that fail one filter each, then one that passes them all; the
    // tail only gets what is published while it is open, so repeat until
    // the passing line arrives. Anything else on the tail is a leak.
    let mut seen = Vec::new();
    let deadline = Instant::now() + LOGGED_WITHIN;
    while seen.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the passing line never reached the tail within {LOGGED_WITHIN:?}"
        );
        app_logs(&server, "info", "wanted-other-request", "req-other").await;
        app_logs(&server, "info", "noise", "req-want").await;
        app_logs(&server, "error", "wanted-wrong-level", "req-want").await;
        app_logs(&server, "warn", "the-Wanted-line", "req-want").await;
        while let Some(event) = tail.next(Duration::from_millis(100)).await {
            if event.name == "log" {
                seen.push(event.data);
            }
        }
    }
    for record in &seen {
        assert_eq!(record["message"], "the-Wanted-line", "{seen:?}");
        assert_eq!(record["requestId"], "req-want");
    }
    // A tail on another app gets none of them: the first line it gets is
    // the other app's, logged after the echo app's (one feed, in order), so
    // a leaked line would come before it.
    let res = local(
        &server,
        Method::GET,
        &format!("{API}/sse?app=other&level=warn"),
    )
    .header("x-api-key", MASTER)
    .send()
    .await
    .expect("tail");
    let mut other = Sse::new(res);
    let deadline = Instant::now() + LOGGED_WITHIN;
    let first = loop {
        assert!(
            Instant::now() < deadline,
            "the other app's line never reached its tail within {LOGGED_WITHIN:?}"
        );
        app_logs(&server, "warn", "the-Wanted-line", "req-want").await;
        let path = "/other/log?level=warn&msg=the-other-line";
        let res = local(&server, Method::GET, path)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200, "{path}");
        if let Some(event) = other.next(Duration::from_millis(500)).await
            && event.name == "log"
        {
            break event.data;
        }
    };
    assert_eq!(first["message"], "the-other-line", "{first}");
    assert_eq!(first["app"], "other@latest", "{first}");
}

#[tokio::test]
async fn the_buffer_keeps_the_newest_max_entries_and_clears() {
    let server = server(json!({ "maxEntries": 5 })).await;
    for i in 0..8 {
        app_logs(
            &server,
            "info",
            &format!("line-{i}"),
            &format!("req-ring-{i}"),
        )
        .await;
    }
    let logs = until_logged(&server, "?limit=100", "line-7").await;
    assert!(logs.len() <= 5, "{logs:?}");
    let messages: Vec<&str> = logs.iter().filter_map(|r| r["message"].as_str()).collect();
    for gone in ["line-0", "line-1", "line-2"] {
        assert!(
            !messages.contains(&gone),
            "{gone} should be overwritten: {messages:?}"
        );
    }
    let stats = expect(
        local(&server, Method::GET, &format!("{API}/stats")).header("x-api-key", MASTER),
        200,
        None,
    )
    .await;
    assert!(stats["total"].as_u64() <= Some(5), "{stats}");
    assert!(stats["received"].as_u64() >= Some(8), "{stats}");

    let cleared = expect(
        local(&server, Method::POST, &format!("{API}/clear")).header("x-api-key", MASTER),
        200,
        None,
    )
    .await;
    assert!(cleared["cleared"].as_u64() >= Some(1), "{cleared}");
    assert!(
        query(&server, "?app=echo").await.is_empty(),
        "nothing of the app is left after a clear"
    );
    app_logs(&server, "info", "after-clear", "req-ring-after").await;
    until_logged(&server, "?app=echo", "after-clear").await;
}

#[tokio::test]
async fn a_narrowed_grant_keeps_the_feed_off_below_its_levels() {
    let server = server_with(json!({
        "name": LOGS,
        "capabilities": { "events": { "subscribe": ["log.error"] } }
    }))
    .await;
    app_logs(&server, "warn", "below", "req-narrow-1").await;
    app_logs(&server, "error", "kept", "req-narrow-2").await;
    // The feed is in order: had the warn line been fed, it would be here.
    let logs = until_logged(&server, "?app=echo", "kept").await;
    assert!(logs.iter().all(|r| r["message"] != "below"), "{logs:?}");
    let metrics = local(&server, Method::GET, "/_/metrics")
        .header("x-api-key", MASTER)
        .header("accept", "text/plain")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l == "buntime_log_feed_records_total 1"),
        "only the error line was built: {metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "buntime_log_feed_dropped_total 0")
    );
}

#[tokio::test]
async fn what_a_subscriber_logs_while_it_receives_the_feed_is_not_fed_back() {
    let embedded = buntime::plugins::embedded()
        .into_iter()
        .filter(|p| p.manifest.contains(LOGS))
        .collect();
    let server = start(policy(Some(MASTER)), embedded, |root| {
        echo(root);
        // A second subscriber that logs a line in every `on_event`.
        kit(
            root,
            "kit",
            r#""base": "kit", "config": { "log": "true" },
               "capabilities": { "log": true, "state": true, "events": { "subscribe": ["log.info"] } }"#,
        );
    })
    .await;
    app_logs(&server, "info", "first", "req-loop-1").await;
    eventually("the kit getting the feed", LOGGED_WITHIN, || async {
        let res = local(&server, Method::GET, "/_/kit/state/event:log.records")
            .header("x-api-key", MASTER)
            .send()
            .await
            .expect("state");
        let status = res.status().as_u16();
        if status != 200 {
            return Err(format!("state answered {status}"));
        }
        let value = res.json::<Value>().await.expect("json")["value"].clone();
        match value.as_u64() {
            Some(batches) if batches > 0 => Ok(()),
            _ => Err(format!("{value} batches")),
        }
    })
    .await;
    // Had the kit's line been fed, it would be queued before this one.
    app_logs(&server, "info", "second", "req-loop-2").await;
    let logs = until_logged(&server, "?limit=1000", "second").await;
    let fed_back = logs
        .iter()
        .filter(|r| {
            r["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("kit got event"))
        })
        .count();
    assert_eq!(fed_back, 0, "the kit's lines from `on_event` were fed back");
}

#[tokio::test]
async fn a_plugin_line_from_on_response_carries_the_request_id() {
    let embedded = buntime::plugins::embedded()
        .into_iter()
        .filter(|p| p.manifest.contains(LOGS))
        .collect();
    let server = start(policy(Some(MASTER)), embedded, |root| {
        echo(root);
        // Logs one line in `on_request` and one in `on_response`.
        kit(
            root,
            "kit",
            r#""base": "kit", "config": { "log": "true" }, "capabilities": { "log": true }"#,
        );
    })
    .await;
    app_logs(&server, "info", "between", "req-hooks").await;
    let logs = until_logged(&server, "?requestId=req-hooks", "kit answered /echo/log").await;
    for message in ["kit saw /echo/log", "between", "kit answered /echo/log"] {
        let record = logs
            .iter()
            .find(|r| r["message"] == message)
            .unwrap_or_else(|| panic!("no `{message}` for the request: {logs:?}"));
        assert_eq!(record["requestId"], "req-hooks", "{record}");
    }
    let answered = logs
        .iter()
        .find(|r| r["message"] == "kit answered /echo/log")
        .expect("found above");
    assert_eq!(answered["plugin"], "kit", "{answered}");
    assert_eq!(answered["source"], "plugin", "{answered}");
}

#[tokio::test]
async fn a_posted_line_lands_with_its_request_id_and_needs_the_write_permission() {
    let server = server(json!({})).await;
    let post = |key: &str, body: String| {
        remote(&server, Method::POST, API)
            .header("x-api-key", key.to_owned())
            .header("content-type", "application/json")
            .body(body)
    };
    let reader = create_key(
        &server,
        MASTER,
        json!({"name": "r", "role": "custom", "permissions": ["plugin:logs:read"]}),
    )
    .await;
    let writer = create_key(
        &server,
        MASTER,
        json!({"name": "w", "role": "custom", "permissions": ["plugin:logs:write", "plugin:logs:read"]}),
    )
    .await;
    let line = json!({"level": "warn", "message": "deploy-started"}).to_string();
    let denied = expect(post(&reader, line.clone()), 403, Some("PERMISSION_DENIED")).await;
    assert!(
        denied["message"]
            .as_str()
            .is_some_and(|m| m.contains("plugin:logs:write")),
        "{denied}"
    );
    expect(
        remote(&server, Method::POST, API).body(line.clone()),
        401,
        None,
    )
    .await;
    let accepted = expect(
        post(&writer, line).header("x-request-id", "req-posted"),
        202,
        None,
    )
    .await;
    assert_eq!(accepted["level"], "warn");
    let logs = until_logged(&server, "?requestId=req-posted", "deploy-started").await;
    let record = &logs[0];
    assert_eq!(record["level"], "warn", "{record}");
    assert_eq!(record["source"], "plugin", "{record}");
    assert_eq!(record["plugin"], LOGS, "{record}");
    assert!(record["time"].as_u64().is_some_and(|t| t > 0), "{record}");

    // Too large, not JSON, a bad level, no message: refused, nothing kept.
    let huge = json!({"message": "x".repeat(20 * 1024)}).to_string();
    expect(post(&writer, huge), 413, Some("TOO_LARGE")).await;
    for (body, needle) in [
        ("not json".to_owned(), "JSON object"),
        (
            json!({"level": "loud", "message": "m"}).to_string(),
            "`level`",
        ),
        (json!({"level": "warn"}).to_string(), "`message`"),
        (json!({"message": ""}).to_string(), "`message`"),
    ] {
        let body = expect(post(&writer, body.clone()), 400, Some("BAD_REQUEST")).await;
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn anonymous_clients_and_hostile_queries_are_refused() {
    let server = server(json!({})).await;
    for (method, path) in [
        (Method::GET, API.to_owned()),
        (Method::GET, format!("{API}/stats")),
        (Method::GET, format!("{API}/sse")),
        (Method::POST, format!("{API}/clear")),
        (Method::POST, API.to_owned()),
    ] {
        expect(remote(&server, method, &path), 401, None).await;
    }
    for (q, needle) in [
        ("?level=loud", "`level`"),
        ("?limit=99999999999", "`limit`"),
        ("?limit=0", "`limit`"),
        ("?since=yesterday", "`since`"),
        ("?until=-1", "`until`"),
        ("?since=10&until=5", "after"),
        ("?source=kernel", "`source`"),
        ("/sse?level=loud", "`level`"),
        ("/sse?source=kernel", "`source`"),
    ] {
        let body = expect(
            local(&server, Method::GET, &format!("{API}{q}")).header("x-api-key", MASTER),
            400,
            Some("BAD_REQUEST"),
        )
        .await;
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{q}: {body}");
    }
}
