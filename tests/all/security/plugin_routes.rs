//! Plugin routes need a key unless the plugin marks them public and the
//! operator agrees; keyval and database are private on a default install.

use reqwest::Method;
use serde_json::json;

use super::{MASTER, create_key, expect, local, policy, remote, start};
use crate::plugins::{config, kit};
use buntime::access::AccessPolicy;

#[tokio::test]
async fn plugin_routes_need_a_key_unless_public() {
    let server = start(policy(Some(MASTER)), Vec::new(), |root| {
        kit(
            root,
            "kit",
            r#""base": "kit", "publicRoutes": { "GET": ["/hello"] }"#,
        );
    })
    .await;
    let hello = expect(remote(&server, Method::GET, "/_/kit/hello"), 200, None).await;
    assert_eq!(hello, serde_json::Value::Null, "plain text");
    for (method, path) in [
        (Method::POST, "/_/kit/hello"),
        (Method::GET, "/_/kit/state/x"),
        (Method::GET, "/_/kit/"),
    ] {
        expect(remote(&server, method, path), 401, Some("API_KEY_REQUIRED")).await;
    }
    let viewer = create_key(&server, MASTER, json!({"name": "v", "role": "viewer"})).await;
    let editor = create_key(&server, MASTER, json!({"name": "e", "role": "editor"})).await;
    let other = create_key(
        &server,
        MASTER,
        json!({"name": "o", "role": "custom", "permissions": ["plugin:keyval:write", "plugin:keyval:read"]}),
    )
    .await;
    let hello_post = |key: &str| {
        remote(&server, Method::POST, "/_/kit/hello").header("x-api-key", key.to_owned())
    };
    expect(hello_post(&viewer), 403, Some("PERMISSION_DENIED")).await;
    expect(hello_post(&other), 403, Some("PERMISSION_DENIED")).await;
    expect(hello_post(&editor), 200, None).await;
    let denied = expect(
        remote(&server, Method::GET, "/_/kit/state/x").header("x-api-key", &other),
        403,
        Some("PERMISSION_DENIED"),
    )
    .await;
    assert!(
        denied["message"]
            .as_str()
            .is_some_and(|m| m.contains("plugin:kit:read")),
        "{denied}"
    );
    let listed = expect(
        local(&server, Method::GET, "/_/api/plugins").header("x-api-key", MASTER),
        200,
        None,
    )
    .await;
    assert_eq!(listed["plugins"][0]["publicRoutes"], json!(["GET /hello"]));
    server.stop().await;
}

#[tokio::test]
async fn the_operator_overrides_what_a_plugin_makes_public() {
    let server = start(policy(Some(MASTER)), Vec::new(), |root| {
        kit(root, "kit", r#""base": "kit", "publicRoutes": ["/hello"]"#);
        config(root, r#"{ plugins: [{ name: "kit", publicRoutes: [] }] }"#);
    })
    .await;
    expect(
        remote(&server, Method::GET, "/_/kit/hello"),
        401,
        Some("API_KEY_REQUIRED"),
    )
    .await;
    expect(
        remote(&server, Method::GET, "/_/kit/hello").header("x-api-key", MASTER),
        200,
        None,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn keyval_and_database_are_not_anonymous_on_a_default_install() {
    let server = start(
        AccessPolicy::default(),
        buntime::plugins::embedded(),
        |_| {},
    )
    .await;
    for (method, path) in [
        (Method::PUT, "/_/keyval/api/keys/a"),
        (Method::GET, "/_/keyval/api/keys/a"),
        (Method::GET, "/_/keyval/api/keys"),
        (Method::DELETE, "/_/keyval/api/keys/a"),
        (Method::GET, "/_/database/api/tables"),
        (Method::GET, "/_/database/api/tenants"),
    ] {
        expect(
            remote(&server, method.clone(), path).json(&json!(1)),
            401,
            Some("API_KEY_REQUIRED"),
        )
        .await;
        // The same request from this machine reaches the plugin.
        let res = local(&server, method.clone(), path)
            .json(&json!(1))
            .send()
            .await
            .expect("request");
        let status = res.status();
        let body = res.text().await.expect("body");
        assert_eq!(status, 200, "{method} {path}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_rewrite_into_a_plugin_route_keeps_the_client() {
    // No key: local clients only. A plugin rewrites an app path into a
    // plugin route; the relayed client must not pass for a local one.
    let server = start(AccessPolicy::default(), Vec::new(), |root| {
        kit(root, "kit", r#""base": "kit""#);
        config(root, r#"{ plugins: [["kit", { rewrite: "/x=/_/kit" }]] }"#);
    })
    .await;
    expect(
        remote(&server, Method::GET, "/x/hello"),
        401,
        Some("API_KEY_REQUIRED"),
    )
    .await;
    expect(local(&server, Method::GET, "/x/hello"), 200, None).await;
    server.stop().await;
}

#[tokio::test]
async fn no_plugin_sees_the_callers_key() {
    let server = start(policy(Some(MASTER)), Vec::new(), |root| {
        kit(root, "kit", r#""base": "kit""#);
        config(
            root,
            r#"{ plugins: [["kit", { keyHeader: "x-kit-saw-key" }]] }"#,
        );
    })
    .await;
    for req in [
        remote(&server, Method::GET, "/_/kit/headers").header("x-api-key", MASTER),
        remote(&server, Method::GET, "/_/kit/headers").bearer_auth(MASTER),
    ] {
        let seen = expect(req, 200, None).await;
        let names: Vec<&str> = seen
            .as_array()
            .map(|h| h.iter().filter_map(|p| p[0].as_str()).collect())
            .unwrap_or_default();
        assert!(
            !names.contains(&"x-api-key") && !names.contains(&"authorization"),
            "the route saw the key: {seen}"
        );
        assert!(
            seen.as_array()
                .is_some_and(|h| h.iter().any(|p| p[0] == "x-kit-saw-key" && p[1] == "no")),
            "on_request saw the key: {seen}"
        );
    }
    server.stop().await;
}
