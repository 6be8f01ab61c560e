//! Reload, enable and disable, without dropping requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::{config, echo, kit, loaded, not_loaded, plugins, wait_for_state};
use crate::server::{TestServer, client, get};

#[tokio::test]
async fn reload_under_load_drops_no_request_and_runs_on_shutdown() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(
            root,
            "kit",
            r#""base": "kit", "capabilities": { "state": true }"#,
        );
        config(
            root,
            r#"{ plugins: [["kit", { requestHeader: "x-a=1", responseHeader: "x-b=2" }]] }"#,
        );
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
        let url = server.url("/echo/x");
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 && r.headers().get("x-b").is_some() => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Each reload happens while requests are being served: wait for a few
    // to complete before it, and a few after the last one.
    let served_more = |from: usize| {
        let served = served.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while served.load(Ordering::Relaxed) < from + 5 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the load stopped being served"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    for _ in 0..3 {
        served_more(served.load(Ordering::Relaxed)).await;
        let res = client()
            .post(server.url("/_/api/plugins/reload"))
            .send()
            .await
            .expect("reload");
        assert_eq!(res.status(), 200);
    }
    served_more(served.load(Ordering::Relaxed)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);

    // The old instances said goodbye (state lives in the host, across reloads).
    let shutdowns = wait_for_state(&server, "kit", "shutdowns", 3).await;
    assert_eq!(shutdowns, 3);
    server.stop().await;
}

#[tokio::test]
async fn one_plugin_reloads_and_plugins_are_disabled_and_enabled() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(root, "base", "");
        kit(root, "user", r#""dependencies": ["base"]"#);
        kit(root, "extra", "");
    })
    .await;
    let c = client();
    let res = c
        .post(server.url("/_/api/plugins/extra/reload"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let res = c
        .post(server.url("/_/api/plugins/ghost/reload"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 404);

    let res = c
        .post(server.url("/_/api/plugins/base/disable"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.expect("json");
    assert!(
        body["message"].as_str().expect("m").contains("user"),
        "{body}"
    );

    let res = c
        .post(server.url("/_/api/plugins/extra/disable"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let list = plugins(&server).await;
    assert_eq!(not_loaded(&list, "extra")["state"], "disabled");
    assert_eq!(get(&server.url("/echo/x")).await.status(), 200);

    let res = c
        .post(server.url("/_/api/plugins/extra/enable"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    loaded(&plugins(&server).await, "extra");
    server.stop().await;
}

#[tokio::test]
async fn a_single_reload_that_fails_keeps_the_running_version_and_says_why() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(root, "extra", "");
    })
    .await;
    // The module on disk becomes garbage; the running copy is untouched.
    let wasm = server.dir.path().join("plugins/extra/plugin.wasm");
    std::fs::write(&wasm, b"not a module").expect("overwrite the module");
    let res = client()
        .post(server.url("/_/api/plugins/extra/reload"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "PLUGIN_LOAD_FAILED", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("plugin `extra` failed to reload (the running version stays)")
            && message.contains("plugin.wasm"),
        "{message}"
    );
    loaded(&plugins(&server).await, "extra");
    assert_eq!(get(&server.url("/echo/x")).await.status(), 200);
    server.stop().await;
}
