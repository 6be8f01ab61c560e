//! The proxy plugin's rules: the dynamic-rule API (validated, kept, applied
//! at once), identity for rules that are not public, methods, and the
//! plugin's place in the chain.

use serde_json::{Value, json};

use super::{PROXY, rule, start, upstream};
use crate::plugins::seen_header;
use crate::server::{TestServer, client};

pub(super) async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method, server.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn dynamic_rules_are_validated_kept_and_applied_at_once() {
    use reqwest::Method;
    let (up, _) = upstream().await;
    let server = start(
        json!({ "rules": [rule("^/static/", &format!("http://{up}/echo/s"), json!({ "id": "fixed" }))] }),
        None,
    )
    .await;
    let rules = "/_/proxy/api/rules";

    let (status, body) = call(
        &server,
        Method::POST,
        rules,
        Some(json!({
            "pattern": "(unclosed", "target": format!("http://{up}")
        })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "INVALID_RULE");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`pattern` `(unclosed`"),
        "{body}"
    );
    let (status, body) = call(
        &server,
        Method::POST,
        rules,
        Some(json!({
            "pattern": "^/x", "target": "ftp://nowhere"
        })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_RULE")),
        "{body}"
    );

    let dynamic = json!({
        "id": "dyn", "pattern": "^/dyn/(?P<rest>.*)$", "target": format!("http://{up}/echo/${{rest}}"), "public": true
    });
    let (status, body) = call(&server, Method::POST, rules, Some(dynamic.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["source"], "api");
    let (status, _) = call(&server, Method::POST, rules, Some(dynamic)).await;
    assert_eq!(status, 409, "an id is used once");

    let (status, seen) = call(&server, Method::GET, "/dyn/a?b=1", None).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        (seen["path"].as_str(), seen["query"].as_str()),
        (Some("/echo/a"), Some("b=1"))
    );

    let (_, list) = call(&server, Method::GET, rules, None).await;
    let listed: Vec<(&str, &str)> = list["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or(""),
                r["source"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(listed, [("fixed", "config"), ("dyn", "api")]);

    // A change reaches every instance on the next request.
    let (status, body) = call(&server, Method::PUT, &format!("{rules}/dyn"), Some(json!({
        "pattern": "^/dyn/(.*)$", "target": format!("http://{up}"), "rewrite": "/echo/v2/$1", "public": true
    })))
    .await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..4 {
        let (_, seen) = call(&server, Method::GET, "/dyn/a", None).await;
        assert_eq!(seen["path"], "/echo/v2/a", "{seen}");
    }

    let (status, body) = call(&server, Method::DELETE, &format!("{rules}/fixed"), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("RULE_READ_ONLY")),
        "{body}"
    );
    let (status, _) = call(&server, Method::DELETE, &format!("{rules}/dyn"), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&server, Method::DELETE, &format!("{rules}/dyn"), None).await;
    assert_eq!(status, 404);
    // No rule: the request goes on to the apps (there is none called `dyn`).
    let (status, body) = call(&server, Method::GET, "/dyn/a", None).await;
    assert_eq!(status, 404, "{body}");
    assert_ne!(body["path"], "/echo/v2/a");
}

#[tokio::test]
async fn a_rule_that_is_not_public_needs_an_identity_and_its_methods() {
    let (up, _) = upstream().await;
    let server = start(
        json!({ "rules": [{
            "id": "private", "pattern": "^/p/", "target": format!("http://{up}/echo/p"), "methods": ["GET"]
        }] }),
        None,
    )
    .await;
    let res = client().get(server.url("/p/")).send().await.expect("req");
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "AUTHENTICATION_REQUIRED");

    let identity = r#"{"sub":"alice","roles":[]}"#;
    let res = client()
        .get(server.url("/p/"))
        .header("x-test-identity", identity)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.expect("json");
    assert_eq!(seen_header(&seen, "x-identity").as_deref(), Some(identity));

    // Another method is not this rule's: the request goes on unproxied.
    let res = client()
        .post(server.url("/p/"))
        .header("x-test-identity", identity)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 404);
}

/// The embedded manifests, sorted by the loader's own sorter from the
/// least favourable configured order, put the edge plugins in order.
#[test]
fn the_proxy_runs_after_authn_authz_and_the_gateway() {
    use buntime::plugins::Manifest;
    use buntime::plugins::order::{Node, sort};
    let edge = [
        PROXY,
        "@buntime/plugin-gateway",
        "@buntime/plugin-authz",
        "@buntime/plugin-authn",
    ];
    let manifests: Vec<Manifest> = buntime::plugins::embedded()
        .iter()
        .map(|p| {
            Manifest::parse(&p.manifest, std::path::Path::new("manifest.jsonc")).expect("manifest")
        })
        .collect();
    let nodes: Vec<Node> = edge
        .iter()
        .map(|name| {
            let m = manifests
                .iter()
                .find(|m| m.name == *name)
                .expect("embedded");
            Node {
                name: m.name.clone(),
                dependencies: m.dependencies.clone(),
                optional_dependencies: m.optional_dependencies.clone(),
            }
        })
        .collect();
    let order: Vec<&str> = sort(&nodes).order.iter().map(|&i| edge[i]).collect();
    assert_eq!(
        order,
        [
            "@buntime/plugin-authn",
            "@buntime/plugin-authz",
            "@buntime/plugin-gateway",
            PROXY
        ]
    );
}

#[tokio::test]
async fn the_gateway_s_cors_headers_reach_proxied_responses() {
    let (up, _) = upstream().await;
    let server = TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        crate::plugins::config(
            root,
            &json!({ "plugins": [
                // Listed after the proxy: the order still puts the gateway first.
                [PROXY, { "rules": [rule("^/svc/", &format!("http://{up}/echo/x"), json!({}))] }],
                ["@buntime/plugin-gateway", { "cors": { "origins": ["https://app.example.com"] } }],
                { "name": "@buntime/plugin-keyval", "enabled": false },
                { "name": "@buntime/plugin-database", "enabled": false },
            ] })
            .to_string(),
        );
    })
    .await
    .expect("server");
    let res = client()
        .get(server.url("/svc/"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let seen: Value = res.json().await.expect("json");
    assert_eq!(seen["path"], "/echo/x");
}

#[tokio::test]
async fn dynamic_rules_survive_a_restart() {
    use reqwest::Method;
    let (up, _) = upstream().await;
    let rules = "/_/proxy/api/rules";
    let server = start(json!({ "rules": [] }), None).await;
    let (status, body) = call(
        &server,
        Method::POST,
        rules,
        Some(json!({
            "pattern": "^/kept/(.*)$", "target": format!("http://{up}/echo/$1"), "public": true
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "r1");
    let restart = |server: TestServer| async move {
        let dir = server.stop_keep_dir().await;
        TestServer::try_start_plugins_in(dir, buntime::plugins::embedded())
            .await
            .expect("the server restarts over the same data dir")
    };

    let server = restart(server).await;
    let (status, seen) = call(&server, Method::GET, "/kept/a", None).await;
    assert_eq!(status, 200, "the rule proxies after a restart: {seen}");
    assert_eq!(seen["path"], "/echo/a");
    // Ids made after a restart do not reuse stored ones.
    let (status, body) = call(
        &server,
        Method::POST,
        rules,
        Some(json!({ "pattern": "^/other/", "target": format!("http://{up}/echo/o") })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "r2");
    let (status, _) = call(&server, Method::DELETE, &format!("{rules}/r1"), None).await;
    assert_eq!(status, 200);

    // A deletion is kept too.
    let server = restart(server).await;
    let (_, list) = call(&server, Method::GET, rules, None).await;
    let ids: Vec<&str> = list["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["r2"], "{list}");
    let (status, body) = call(&server, Method::GET, "/kept/a", None).await;
    assert_eq!(status, 404, "{body}");
}

/// A rule `name` (routing `/<name>/…`) whose pattern compiles to the
/// largest size tier (`\w` repeated): the route table's budget holds 16.
fn heavy(up: std::net::SocketAddr, name: &str) -> Value {
    json!({
        "id": name, "pattern": format!(r"^/{name}/\w{{5}}(.*)$"),
        "target": format!("http://{up}/echo/$1"), "public": true,
    })
}

/// Adds the 16 [`heavy`] rules `h0` to `h15` through the API.
async fn add_sixteen_heavy(server: &TestServer, up: std::net::SocketAddr) {
    for i in 0..16 {
        let (status, body) = call(
            server,
            reqwest::Method::POST,
            "/_/proxy/api/rules",
            Some(heavy(up, &format!("h{i}"))),
        )
        .await;
        assert_eq!(status, 201, "rule {i}: {body}");
    }
}

/// The host holds the route table to a budget for compiled patterns; a
/// dynamic rule that would take it past is refused and not kept, so the
/// stored rules always load again.
#[tokio::test]
async fn a_rule_past_the_route_tables_budget_is_refused_and_not_kept() {
    use reqwest::Method;
    let (up, _) = upstream().await;
    let server = start(json!({ "rules": [] }), None).await;
    let rules = "/_/proxy/api/rules";
    add_sixteen_heavy(&server, up).await;
    let (status, body) = call(&server, Method::POST, rules, Some(heavy(up, "h16"))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "INVALID_RULE");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("16 MiB"),
        "{body}"
    );

    let (_, listed) = call(&server, Method::GET, rules, None).await;
    let ids: Vec<&str> = listed["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 16, "{listed}");
    assert!(!ids.contains(&"h16"), "{listed}");
    // The rules kept still route.
    let res = client()
        .get(server.url("/h3/abcdex"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.expect("json");
    assert_eq!(seen["path"], "/echo/x");
}

/// Stored rules that no longer fit beside the static ones (static rules
/// added since, or a refused change another writer stored on): the plugin
/// still starts, with the rules stored first routed and the last left out.
#[tokio::test]
async fn stored_rules_past_the_budget_load_without_the_last_ones() {
    use reqwest::Method;
    let (up, _) = upstream().await;
    let rules = "/_/proxy/api/rules";
    let server = start(json!({ "rules": [] }), None).await;
    add_sixteen_heavy(&server, up).await;
    // A static rule of the same size takes the table one rule past it.
    let dir = server.stop_keep_dir().await;
    super::setup(dir.path(), json!({ "rules": [heavy(up, "s")] }), None);
    let server = TestServer::try_start_plugins_in(dir, buntime::plugins::embedded())
        .await
        .expect("the server starts with the stored rules past the budget");
    for (path, routed) in [
        ("/s/abcdex", true),
        ("/h0/abcdex", true),
        ("/h14/abcdex", true),
        ("/h15/abcdex", false),
    ] {
        let res = client()
            .get(server.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status() == 200, routed, "{path}: {}", res.status());
    }
    // Still stored: deleting another makes room for it again.
    let (status, body) = call(&server, Method::DELETE, &format!("{rules}/h0"), None).await;
    assert_eq!(status, 200, "{body}");
    let res = client()
        .get(server.url("/h15/abcdex"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
}
