//! Version resolution, hot deploys and config errors over HTTP.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_resolve_like_npm_ranges() {
    let server = TestServer::start(|root| {
        for v in ["1.0.0", "1.2.0", "1.2.5", "1.10.1", "2.0.0"] {
            install_echo(root, &format!("echo/{v}"), None);
        }
        install_echo(root, "echo@3.0.0-rc.1", None);
    })
    .await;
    let table: &[(&str, &str)] = &[
        ("/echo/", "echo@2.0.0"),
        ("/echo@1.0.0/", "echo@1.0.0"),
        ("/echo@1/", "echo@1.10.1"),
        ("/echo@1.2/", "echo@1.2.5"),
        ("/echo@~1.2.0/", "echo@1.2.5"),
        ("/echo@^1.2/", "echo@1.10.1"),
        ("/echo@%3E%3D1%20%3C2/", "echo@1.10.1"),
        ("/echo@%3E%3D1.2.0%20%3C1.3.0/", "echo@1.2.5"),
        ("/echo@2/", "echo@2.0.0"),
        ("/echo@%3C1.2/", "echo@1.0.0"),
        ("/echo@1.x/", "echo@1.10.1"),
        ("/echo@3.0.0-rc.1/", "echo@3.0.0-rc.1"),
        ("/echo@*/", "echo@2.0.0"),
    ];
    for (path, want) in table {
        let res = get(&server.url(path)).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            res.headers()
                .get("x-buntime-app")
                .and_then(|v| v.to_str().ok()),
            Some(*want),
            "{path}"
        );
    }
    let res = get(&server.url("/echo@9/")).await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "VERSION_NOT_FOUND");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("1.10.1")),
        "{body}"
    );
    assert!(
        body["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    let res = get(&server.url("/nope/")).await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "APP_NOT_FOUND");
    let res = get(&server.url("/echo@not-a-range/")).await;
    assert_eq!(res.status(), 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_served_without_a_restart() {
    let server = TestServer::start(|root| {
        install_echo(root, "live/1.0.0", None);
    })
    .await;
    let res = get(&server.url("/live/")).await;
    assert_eq!(res.headers()["x-buntime-app"], "live@1.0.0");
    install_echo(server.dir.path(), "live/1.1.0", None);
    // Served within the catalog's cache TTL (and a margin for a slow machine).
    let deadline = std::time::Instant::now() + buntime::routing::CACHE_TTL * 10;
    loop {
        let res = get(&server.url("/live/")).await;
        if res.headers()["x-buntime-app"] == "live@1.1.0" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new version was not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A brand-new app is visible at once (misses are not cached).
    install_echo(server.dir.path(), "fresh/1.0.0", None);
    assert_eq!(get(&server.url("/fresh/")).await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_worker_config_is_a_clear_500_naming_file_and_field() {
    let server = TestServer::start(|root| {
        install_echo(root, "bad/1.0.0", Some(r#"{ ttl: "10s", timeout: "30s" }"#));
        install_echo(root, "typo/1.0.0", Some(r#"{ tll: 5 }"#));
    })
    .await;
    let body: serde_json::Value = get(&server.url("/bad/")).await.json().await.expect("json");
    assert_eq!(body["code"], "APP_CONFIG_INVALID");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("worker.jsonc") && msg.contains("`ttl`") && msg.contains("at least `timeout`"),
        "{msg}"
    );
    let body: serde_json::Value = get(&server.url("/typo/")).await.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown field `tll`"),
        "{body}"
    );
    server.stop().await;
}
