//! Replacing a deployed version (`?replace=true`): the version dir is
//! swapped in one `renameat2(RENAME_EXCHANGE)`, so requests under load see
//! the old version or the new one, never an error or a mix, and the worker
//! pool loads the new module. HEAD on a plugin route is answered as GET
//! without the body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use buntime_fixtures as fx;
use reqwest::Method;

use super::deployments::{API, send, start, tar_gz, tree};
use crate::server::{TestServer, client};
use crate::support::eventually;

/// How long a replaced version may take to be served: the static cache and
/// the worker pool pick it up within about a second; the margin is for a
/// loaded machine (only a failing test waits this long).
const REPLACED_WITHIN: Duration = Duration::from_secs(10);

/// What `GET path` answers: status and body text.
async fn get(server: &TestServer, path: &str) -> (u16, String) {
    let res = client().get(server.url(path)).send().await.expect("get");
    (res.status().as_u16(), res.text().await.expect("text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_is_replaced_atomically_under_load() {
    let server = start().await;
    let site = |text: &[u8]| tar_gz(&[("index.html", text), ("page.txt", text)]);
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("{API}/site/1.0.0"),
        site(b"one"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("{API}/site/1.0.0"),
        site(b"two"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("VERSION_EXISTS")),
        "without ?replace: {body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("?replace=true"))
    );

    let url = server.url("/site@1.0.0/page.txt");
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let res = client().get(&url).send().await.expect("get");
                let status = res.status().as_u16();
                seen.push((status, res.text().await.unwrap_or_default()));
                // Paces the load so it does not starve the replacements it
                // watches; no assertion depends on how long it lasts.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };
    for text in [&b"two"[..], b"three"] {
        let (status, body) = send(
            &server,
            Method::PUT,
            &format!("{API}/site/1.0.0?replace=true"),
            site(text),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["replaced"], true);
    }
    // The static cache resolves files again within a second.
    eventually("the last replacement served", REPLACED_WITHIN, || async {
        let last = get(&server, "/site@1.0.0/page.txt").await;
        if last == (200, "three".to_owned()) {
            Ok(())
        } else {
            Err(last)
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let seen = poller.await.expect("poller");
    assert!(!seen.is_empty());
    for (status, text) in &seen {
        assert_eq!(*status, 200, "every request was served: {seen:?}");
        assert!(
            ["one", "two", "three"].contains(&text.as_str()),
            "a whole version answered: {text:?}"
        );
    }
    let apps = server.dir.path().join("apps");
    assert_eq!(tree(&apps.join(".deployments")), Vec::<String>::new());
    assert_eq!(
        tree(&apps.join("site")),
        ["1.0.0", "1.0.0/index.html", "1.0.0/page.txt"]
    );
}

#[tokio::test]
async fn a_replaced_module_is_loaded_again() {
    let server = start().await;
    let hello = std::fs::read(fx::APP_HELLO).expect("hello");
    let app = |greeting: &str| {
        let worker = format!(r#"{{ "env": {{ "GREETING": "{greeting}" }} }}"#);
        tar_gz(&[("worker.jsonc", worker.as_bytes()), ("app.wasm", &hello)])
    };
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("{API}/mod/1.0.0"),
        app("One"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, text) = get(&server, "/mod@1.0.0/").await;
    assert_eq!(status, 200);
    assert!(text.starts_with("One!"), "{text}");
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("{API}/mod/1.0.0?replace"),
        app("Two"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The warm instances of the old dir are drained and the new one loads;
    // until then the old module answers, never anything else.
    eventually("the replaced module answering", REPLACED_WITHIN, || async {
        let now = get(&server, "/mod@1.0.0/").await;
        assert!(
            now.1.starts_with("One!") || now.1.starts_with("Two!"),
            "{now:?}"
        );
        if now.0 == 200 && now.1.starts_with("Two!") {
            Ok(())
        } else {
            Err(now)
        }
    })
    .await;
}

#[tokio::test]
async fn head_on_a_plugin_route_is_get_without_the_body() {
    let server = start().await;
    let get = client().get(server.url(API)).send().await.expect("get");
    assert_eq!(get.status(), 200);
    let length = get.headers().get("content-length").cloned();
    let kind = get.headers().get("content-type").cloned();
    let full = get.bytes().await.expect("body");
    assert!(!full.is_empty());
    let head = client().head(server.url(API)).send().await.expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers().get("content-type").cloned(), kind);
    assert_eq!(head.headers().get("content-length").cloned(), length);
    assert!(head.bytes().await.expect("body").is_empty());
    // A route with no GET answers HEAD as it answers GET.
    let res = client()
        .head(server.url(&format!("{API}/none/1.0.0/archive")))
        .send()
        .await
        .expect("head");
    assert_eq!(res.status(), 404);
}
