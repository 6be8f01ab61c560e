//! A plugin's route table (`upstream_routes`, docs/abi.md §14) installed by
//! a plugin other than the proxy: versioned, checked as a whole, bounded by
//! the `upstream` grant on every request, and never in front of the
//! server's own paths.

use reqwest::Method;
use serde_json::{Value, json};

use super::rules::call;
use super::{rule, upstream};
use crate::plugins::{config, kit};
use crate::server::{TestServer, get};

/// `kit` plugins `router` (granted `upstream` to 127.0.0.1 only) and
/// `plain` (no grant), in that order.
async fn start() -> TestServer {
    TestServer::start_plugins(|root| {
        kit(
            root,
            "router",
            r#""base": "router", "capabilities": { "upstream": ["http://127.0.0.1:*"] }"#,
        );
        kit(root, "plain", r#""base": "plain""#);
        config(root, r#"{ plugins: ["router", "plain"] }"#);
    })
    .await
}

async fn install(server: &TestServer, plugin: &str, version: u64, routes: Value) -> (u16, Value) {
    call(
        server,
        Method::POST,
        &format!("/_/{plugin}/routes"),
        Some(json!({ "version": version, "routes": routes })),
    )
    .await
}

#[tokio::test]
async fn a_route_table_is_versioned_and_replaced_only_whole() {
    let (up, _) = upstream().await;
    let server = start().await;
    let echo = |prefix: &str| {
        rule(
            &format!("^/{prefix}/(.*)$"),
            &format!("http://{up}/echo/$1"),
            json!({}),
        )
    };

    // Nothing installed: the request goes down the chain (no app `r`).
    assert_eq!(get(&server.url("/r/x")).await.status(), 404);

    assert_eq!(
        install(&server, "router", 2, json!([echo("r")])).await,
        (200, json!({"installed": true}))
    );
    let res = get(&server.url("/r/a/b?q=1")).await;
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.expect("json");
    assert_eq!(
        (seen["path"].as_str(), seen["query"].as_str()),
        (Some("/echo/a/b"), Some("q=1"))
    );

    // An older table (an install that lost a race) changes nothing.
    assert_eq!(
        install(&server, "router", 1, json!([echo("s")])).await,
        (200, json!({"installed": false}))
    );
    assert_eq!(get(&server.url("/r/x")).await.status(), 200);
    assert_eq!(get(&server.url("/s/x")).await.status(), 404);

    // A table with one bad rule is refused whole, naming the rule; the
    // installed one stays.
    let (status, body) = install(
        &server,
        "router",
        3,
        json!([echo("s"), { "pattern": "(unclosed", "target": format!("http://{up}") }]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`routes[1]`") && message.contains("(unclosed"),
        "{body}"
    );
    assert_eq!(get(&server.url("/r/x")).await.status(), 200);
    assert_eq!(get(&server.url("/s/x")).await.status(), 404);

    // An empty table routes nothing.
    assert_eq!(install(&server, "router", 3, json!([])).await.0, 200);
    assert_eq!(get(&server.url("/r/x")).await.status(), 404);
}

#[tokio::test]
async fn only_a_plugin_granted_upstream_installs_routes_and_each_target_stays_in_its_grant() {
    let (up, _) = upstream().await;
    let server = start().await;
    let (status, body) = install(
        &server,
        "plain",
        1,
        json!([rule("^/(.*)$", &format!("http://{up}/echo/$1"), json!({}))]),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "capability_denied");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("upstream"),
        "{body}"
    );

    // A target the grant does not list is refused when a request matches.
    let port = up.port();
    let table = json!([
        rule(
            "^/out/",
            &format!("http://127.0.0.2:{port}/echo/x"),
            json!({})
        ),
        rule("^/(.*)$", &format!("http://{up}/echo/$1"), json!({})),
    ]);
    assert_eq!(install(&server, "router", 1, table).await.0, 200);
    let res = get(&server.url("/out/x")).await;
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "UPSTREAM_DENIED", "{body}");

    // A catch-all route never takes the plugins' own routes.
    let res = get(&server.url("/_/plain/hello")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("text"), "hello from kit");
    assert_eq!(get(&server.url("/anything")).await.status(), 200);
}

#[tokio::test]
async fn a_route_that_is_not_public_needs_an_identity() {
    let (up, _) = upstream().await;
    let server = start().await;
    let table = json!([{ "id": "private", "pattern": "^/p/(.*)$", "target": format!("http://{up}/echo/$1") },
        rule("^/o/(.*)$", &format!("http://{up}/echo/$1"), json!({}))]);
    assert_eq!(install(&server, "router", 1, table).await.0, 200);
    let res = get(&server.url("/p/x")).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "AUTHENTICATION_REQUIRED");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`private`"),
        "{body}"
    );
    assert!(body["requestId"].is_string(), "{body}");
    // The public route next to it is forwarded without one.
    assert_eq!(get(&server.url("/o/x")).await.status(), 200);
}
