//! The vhosts core plugin end to end: hosts routed to apps, wildcard
//! subdomains as tenants (reaching keyval), the default app, path prefixes,
//! unknown and malformed hosts, a spoofed tenant header, `/_/` untouched, the
//! host seen through a trusted proxy.

use std::path::Path;

use serde_json::{Value, json};

use super::{config, not_loaded, plugins, seen_header};
use crate::server::{TestServer, client, install_echo};

const VHOSTS: &str = "@buntime/plugin-vhosts";

/// Echo apps `shop`, `tenants` and `fallback`, and vhosts configured with `vhosts`.
fn setup(root: &Path, vhosts: &Value) {
    for app in ["shop", "tenants", "fallback"] {
        install_echo(&root.join("apps"), app, Some(r#"{ "ttl": "1m" }"#));
    }
    config(root, &json!({ "plugins": [[VHOSTS, vhosts]] }).to_string());
}

async fn start(vhosts: Value) -> TestServer {
    TestServer::try_start_plugins(buntime::plugins::embedded(), |root| setup(root, &vhosts))
        .await
        .expect("server with the core plugins")
}

/// `method path` with `Host: host`: status and JSON body.
async fn send(
    server: &TestServer,
    method: reqwest::Method,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, server.url(path))
        .header("host", host);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(server: &TestServer, host: &str, path: &str) -> (u16, Value) {
    send(server, reqwest::Method::GET, host, path, &[], None).await
}

/// The app an echo answer came from (its base) and the tenant it saw.
fn app_and_tenant(echoed: &Value) -> (Option<String>, Option<String>) {
    (
        seen_header(echoed, "x-base"),
        seen_header(echoed, "x-vhost-tenant"),
    )
}

fn routed(app: &str, tenant: Option<&str>) -> (Option<String>, Option<String>) {
    (Some(format!("/{app}")), tenant.map(str::to_owned))
}

#[tokio::test]
async fn exact_and_wildcard_hosts_reach_their_apps() {
    let server = start(json!({
        "hosts": { "shop.example.com": "shop", "*.example.com": "tenants" }
    }))
    .await;

    let (status, seen) = get(&server, "Shop.Example.com:8080", "/cart?page=2").await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(app_and_tenant(&seen), routed("shop", None), "{seen}");
    assert_eq!(seen["path"], "/cart");
    assert_eq!(seen["query"], "page=2");

    let (status, seen) = get(&server, "acme.example.com", "/").await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(app_and_tenant(&seen), routed("tenants", Some("acme")));
    assert_eq!(seen["path"], "/");

    // One label only; the bare domain, deeper names, other domains and
    // malformed hosts match nothing, and without a default that is a 404.
    for host in [
        "example.com",
        "a.b.example.com",
        "other.org",
        "acme.example.com.evil.org",
        "bad_label.example.com",
        "127.0.0.1",
        "acme.example.com:http",
    ] {
        let (status, body) = get(&server, host, "/shop/").await;
        assert_eq!(status, 404, "{host}: {body}");
        assert_eq!(body["code"], "HOST_NOT_FOUND", "{host}: {body}");
        assert!(
            body["requestId"].as_str().is_some_and(|id| !id.is_empty()),
            "{body}"
        );
    }

    // A client's own `x-vhost-tenant` never reaches the app.
    let spoof = [("x-vhost-tenant", "victim")];
    let (_, seen) = send(
        &server,
        reqwest::Method::GET,
        "shop.example.com",
        "/",
        &spoof,
        None,
    )
    .await;
    assert_eq!(app_and_tenant(&seen), routed("shop", None), "{seen}");
    let (_, seen) = send(
        &server,
        reqwest::Method::GET,
        "acme.example.com",
        "/",
        &spoof,
        None,
    )
    .await;
    assert_eq!(
        app_and_tenant(&seen),
        routed("tenants", Some("acme")),
        "{seen}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_default_app_and_a_path_prefix() {
    let server = start(json!({
        "hosts": { "example.com": { "app": "shop", "pathPrefix": "/store" } },
        "default": "fallback"
    }))
    .await;
    let (status, seen) = get(&server, "example.com", "/store/cart").await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(app_and_tenant(&seen), routed("shop", None));
    assert_eq!(seen["path"], "/store/cart", "the prefix is kept");

    for path in ["/", "/storefront", "/shop/"] {
        let (status, body) = get(&server, "example.com", path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["code"], "HOST_PATH_NOT_SERVED", "{path}: {body}");
    }
    // Unknown and malformed hosts go to the default, with no tenant.
    for host in ["other.org", "a..b", "localhost:1"] {
        let (status, seen) = get(&server, host, "/x").await;
        assert_eq!(status, 200, "{host}: {seen}");
        assert_eq!(app_and_tenant(&seen), routed("fallback", None), "{host}");
        assert_eq!(seen["path"], "/x");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_wildcard_tenant_is_the_keyval_tenant() {
    use crate::security::{MASTER, policy, start as start_with};
    // A host other than loopback is not "this machine": plugin routes need a key.
    let vhosts = json!({ "hosts": { "*.example.com": "tenants" } });
    let server = start_with(policy(Some(MASTER)), buntime::plugins::embedded(), |root| {
        setup(root, &vhosts)
    })
    .await;
    let key = ("x-api-key", MASTER);
    let kv =
        |host: &'static str, path: &'static str, extra: &'static [(&'static str, &'static str)]| {
            let mut headers = vec![key];
            headers.extend_from_slice(extra);
            let server = &server;
            async move { send(server, reqwest::Method::GET, host, path, &headers, None).await }
        };
    let (status, body) = send(
        &server,
        reqwest::Method::PUT,
        "a.example.com",
        "/_/keyval/api/keys/k/1",
        &[key],
        Some(r#""for a""#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = kv("a.example.com", "/_/keyval/api/keys/k/1", &[]).await;
    assert_eq!((status, &body["value"]), (200, &json!("for a")), "{body}");

    // Another host is another tenant; neither `?tenant=` nor a spoofed
    // header reaches a's data from there.
    let (status, body) = kv("b.example.com", "/_/keyval/api/keys/k/1", &[]).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = kv("b.example.com", "/_/keyval/api/keys/k/1?tenant=a", &[]).await;
    assert_eq!(status, 404, "{body}");
    let spoof = &[("x-vhost-tenant", "a"), ("x-tenant-id", "a")];
    let (status, body) = kv("b.example.com", "/_/keyval/api/keys/k/1", spoof).await;
    assert_eq!(status, 404, "{body}");
    // A host that names no tenant reaches the root store, where nothing was
    // written (a plugin route is never a 404 of vhosts), whatever the client
    // claims in `x-vhost-tenant` (the host strips it).
    let (status, body) = kv("other.org", "/_/keyval/api/keys/k/1", &[]).await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("NOT_FOUND")),
        "{body}"
    );
    let (status, body) = kv(
        "other.org",
        "/_/keyval/api/keys/k/1",
        &[("x-vhost-tenant", "a")],
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // `?tenant=` still names a tenant where the host names none.
    let (status, body) = kv("other.org", "/_/keyval/api/keys/k/1?tenant=a", &[]).await;
    assert_eq!((status, &body["value"]), (200, &json!("for a")), "{body}");

    // The database plugin sees the same tenant: a's file holds keyval's
    // tables; b has none.
    let (status, body) = kv("a.example.com", "/_/database/api/tables", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["tables"].as_array().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    let (status, body) = kv("b.example.com", "/_/database/api/tables", &[]).await;
    assert_eq!(status, 404, "{body}");

    // Core routes are never rerouted either.
    let (status, body) = kv("other.org", "/_/api/health", &[]).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn off_unless_configured_and_a_bad_config_is_refused() {
    let server = TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        install_echo(&root.join("apps"), "shop", None);
    })
    .await
    .expect("server");
    let list = plugins(&server).await;
    assert_eq!(not_loaded(&list, VHOSTS)["state"], "disabled", "{list}");
    let (status, _) = get(&server, "anything.example.com", "/shop/").await;
    assert_eq!(status, 200);
    server.stop().await;

    let server = start(json!({ "hosts": { "shop.example.com:80": "shop" } })).await;
    let list = plugins(&server).await;
    let entry = not_loaded(&list, VHOSTS);
    assert_eq!(entry["state"], "failed", "{list}");
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("shop.example.com:80")),
        "{entry}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_host_a_trusted_proxy_reports_is_the_one_matched() {
    use crate::security::{policy, start as start_with};
    use buntime::access::AccessPolicy;
    let vhosts = json!({ "hosts": { "*.example.com": "tenants" } });
    let server = start_with(policy(None), buntime::plugins::embedded(), |root| {
        setup(root, &vhosts)
    })
    .await;
    let forwarded = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-host", "acme.example.com"),
    ];
    let get = reqwest::Method::GET;
    let (status, seen) = send(
        &server,
        get.clone(),
        "proxy.internal",
        "/",
        &forwarded,
        None,
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(app_and_tenant(&seen), routed("tenants", Some("acme")));
    server.stop().await;

    // From a peer nobody trusts, the forwarded host is not believed.
    let server = start_with(
        AccessPolicy::default(),
        buntime::plugins::embedded(),
        |root| setup(root, &vhosts),
    )
    .await;
    let (status, body) = send(&server, get, "proxy.internal", "/", &forwarded, None).await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("HOST_NOT_FOUND")),
        "{body}"
    );
    server.stop().await;
}
