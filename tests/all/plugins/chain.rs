//! The hook chain: headers, short-circuits, rewrites, identity stripping,
//! plugin routes and UI, plugins in C and AssemblyScript.

use buntime_fixtures as fx;
use serde_json::Value;

use super::{config, echo, install_plugin, kit, loaded, plugins, seen_header};
use crate::server::{TestServer, client, get};

#[tokio::test]
async fn plugins_add_headers_on_request_and_response() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(root, "kit", "");
        config(
            root,
            r#"{ plugins: [["kit", { requestHeader: "x-from-plugin=yes", responseHeader: "x-kit=done" }]] }"#,
        );
    })
    .await;
    let res = get(&server.url("/echo/hi")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-kit"], "done");
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        seen_header(&body, "x-from-plugin").as_deref(),
        Some("yes"),
        "the app saw {body}"
    );
    server.stop().await;
}

/// A plugin that asks to skip its `on_response` for a request is not called
/// on the way back for that request; the other plugins and requests are.
#[tokio::test]
async fn a_plugin_can_skip_its_on_response_for_one_request() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(root, "kit", "");
        kit(root, "kit2", "");
        config(
            root,
            r#"{ plugins: [
                ["kit", { responseHeader: "x-kit=done" }],
                ["kit2", { responseHeader: "x-kit2=done", skipOnResponse: "/echo/skip" }],
            ] }"#,
        );
    })
    .await;
    let seen = get(&server.url("/echo/hi")).await;
    assert_eq!(seen.headers()["x-kit2"], "done", "not asked to skip");
    let skipped = get(&server.url("/echo/skip")).await;
    assert_eq!(skipped.status(), 200);
    assert!(skipped.headers().get("x-kit2").is_none(), "kit2 skipped");
    assert_eq!(skipped.headers()["x-kit"], "done", "kit still runs");
    server.stop().await;
}

#[tokio::test]
async fn a_plugin_short_circuits_and_only_earlier_plugins_see_the_response() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(root, "outer", "");
        kit(root, "guard", "");
        config(
            root,
            r#"{ plugins: [
                ["outer", { responseHeader: "x-outer=1" }],
                ["guard", { denyPrefix: "/echo/secret", responseHeader: "x-guard=1" }],
            ] }"#,
        );
    })
    .await;
    let res = get(&server.url("/echo/secret/x")).await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["x-outer"], "1");
    assert!(res.headers().get("x-guard").is_none());
    assert!(
        res.headers().get("x-buntime-app").is_none(),
        "the app must not run"
    );
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "denied by kit");

    let ok = get(&server.url("/echo/open")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-guard"], "1");
    assert_eq!(ok.headers()["x-outer"], "1");
    server.stop().await;
}

#[tokio::test]
async fn a_plugin_rewrites_the_path_to_another_app() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(root, "router", "");
        config(
            root,
            r#"{ plugins: [["router", { rewrite: "/old=/echo" }]] }"#,
        );
    })
    .await;
    let res = get(&server.url("/old/page?q=1")).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["x-buntime-app"]
            .to_str()
            .expect("text")
            .starts_with("echo")
    );
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["path"], "/page");
    assert_eq!(body["query"], "q=1");
    server.stop().await;
}

#[tokio::test]
async fn identity_headers_from_clients_are_stripped() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(root, "kit", "");
    })
    .await;
    let res = client()
        .get(server.url("/echo/me"))
        .header("x-identity", "{\"sub\":\"admin\"}")
        .header("x-user-id", "1")
        .header("x-identity-roles", "admin")
        .header("x-kept", "yes")
        .send()
        .await
        .expect("send");
    let body: Value = res.json().await.expect("json");
    let names: Vec<&str> = body["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|h| h[0].as_str())
        .collect();
    assert!(names.contains(&"x-kept"));
    for stripped in ["x-identity", "x-user-id", "x-identity-roles"] {
        assert!(
            !names.contains(&stripped),
            "{stripped} reached the app: {names:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn plugin_routes_and_ui_are_served_under_the_base() {
    let server = TestServer::start_plugins(|root| {
        kit(root, "kit", r#""base": "kit""#);
        let ui = root.join("plugins/kit/ui");
        std::fs::create_dir_all(&ui).expect("mkdir");
        std::fs::write(ui.join("index.html"), "<html><body>kit ui</body></html>").expect("ui");
        config(root, r#"{ plugins: [["kit", { name: "the kit" }]] }"#);
    })
    .await;
    let res = get(&server.url("/_/kit/hello")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("text"), "hello from the kit");
    // `handle` answers 404 for `/`, so the UI is served.
    let ui = get(&server.url("/_/kit/")).await;
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.expect("text").contains("kit ui"));
    let missing = get(&server.url("/_/nothing/here")).await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("/_/kit"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn hooks_a_plugin_does_not_export_are_never_called() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        install_plugin(
            root,
            "routes-only",
            r#"{ "name": "routes-only", "version": "1.0.0", "base": "ro" }"#,
            fx::APP_HELLO,
        );
    })
    .await;
    for _ in 0..3 {
        assert_eq!(get(&server.url("/echo/x")).await.status(), 200);
    }
    let list = plugins(&server).await;
    let p = loaded(&list, "routes-only");
    assert_eq!(p["hooks"], serde_json::json!(["handle"]));
    assert_eq!(p["stats"]["calls"], 0, "{p:#}");
    assert_eq!(get(&server.url("/_/ro/")).await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn plugins_in_c_and_assemblyscript_pass_the_header_test() {
    for (lang, wasm) in [
        ("c", fx::C_PLUGIN_HEADERS),
        ("assemblyscript", fx::AS_PLUGIN_HEADERS),
    ] {
        let server = TestServer::start_plugins(|root| {
            echo(root);
            install_plugin(
                root,
                "foreign",
                r#"{ "name": "foreign", "version": "1.0.0" }"#,
                wasm,
            );
        })
        .await;
        let res = get(&server.url("/echo/x")).await;
        assert_eq!(res.status(), 200, "{lang}");
        assert_eq!(res.headers()["x-plugin-lang-response"], lang);
        let body: Value = res.json().await.expect("json");
        assert_eq!(
            seen_header(&body, "x-plugin-lang").as_deref(),
            Some(lang),
            "{lang}: the app saw {body}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn request_bodies_reach_only_plugins_that_ask_and_only_up_to_their_cap() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(root, "reader", r#""requestBody": "16b""#);
        kit(root, "blind", "");
        config(
            root,
            r#"{ plugins: [["reader", { bodyHeader: "x-reader" }], ["blind", { bodyHeader: "x-blind" }]] }"#,
        );
    })
    .await;
    let res = client()
        .post(server.url("/echo/x"))
        .body("hello")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(seen_header(&body, "x-reader").as_deref(), Some("5"));
    assert_eq!(seen_header(&body, "x-blind").as_deref(), Some("0"));
    assert_eq!(body["body"], "hello", "the app still gets the whole body");

    let res = client()
        .post(server.url("/echo/x"))
        .body("twenty bytes of body")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.expect("json");
    assert!(
        body["message"].as_str().expect("m").contains("`reader`"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_pass_through_plugin_answers_empty_and_changes_nothing() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        install_plugin(
            root,
            "noop",
            r#"{ "name": "noop", "version": "1.0.0" }"#,
            fx::PLUGIN_NOOP,
        );
        kit(root, "kit", "");
        config(
            root,
            r#"{ plugins: ["noop", ["kit", { requestHeader: "x-from-plugin=yes", responseHeader: "x-kit=done" }]] }"#,
        );
    })
    .await;
    let before: Value = get(&server.url("/_/metrics"))
        .await
        .json()
        .await
        .expect("json");
    for _ in 0..3 {
        let res = client()
            .get(server.url("/echo/hi"))
            .header("x-custom", "kept")
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
        // The noop plugin's empty answers changed nothing the kit did.
        assert_eq!(res.headers()["x-kit"], "done");
        let body: Value = res.json().await.expect("json");
        assert_eq!(
            seen_header(&body, "x-custom").as_deref(),
            Some("kept"),
            "{body}"
        );
        assert_eq!(
            seen_header(&body, "x-from-plugin").as_deref(),
            Some("yes"),
            "{body}"
        );
    }
    let list = plugins(&server).await;
    let noop = list["plugins"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "noop"))
        .expect("noop is loaded");
    assert_eq!(noop["stats"]["calls"], 6, "{noop}");
    assert_eq!(noop["stats"]["errors"], 0, "{noop}");
    // It imports nothing that waits: its hooks ran without a fiber.
    let after: Value = get(&server.url("/_/metrics"))
        .await
        .json()
        .await
        .expect("json");
    let direct = |m: &Value| m["engine"]["directCalls"].as_u64().unwrap_or(0);
    assert!(direct(&after) >= direct(&before) + 6, "{before} -> {after}");
    server.stop().await;
}
