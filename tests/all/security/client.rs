//! The client's identity in the request head: the peer, the address
//! resolved through trusted proxies, the scheme and host the client used.

use reqwest::Method;

use super::{REMOTE, local, policy, remote, start};
use crate::plugins::{config, echo, kit, seen_header};
use buntime::access::AccessPolicy;

#[tokio::test]
async fn apps_and_plugins_see_the_client_through_trusted_proxies() {
    let setup = |root: &std::path::Path| {
        echo(root);
        kit(root, "kit", "");
        config(
            root,
            r#"{ plugins: [["kit", { clientHeader: "x-kit-client" }]] }"#,
        );
    };
    let server = start(policy(None), Vec::new(), setup).await;
    let seen = echoed(
        remote(&server, Method::GET, "/echo/")
            .header("x-forwarded-for", format!("198.51.100.1, {REMOTE}"))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "shop.example"),
    )
    .await;
    let client = &seen["client"];
    // Right to left: the last hop the trusted proxy added is the client;
    // what the client wrote itself (198.51.100.1) is not believed.
    assert_eq!(client["address"], REMOTE, "{seen}");
    assert_eq!(client["scheme"], "https");
    assert_eq!(client["host"], "shop.example");
    assert!(
        client["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{client}"
    );
    assert_eq!(seen_header(&seen, "x-kit-client").as_deref(), Some(REMOTE));
    server.stop().await;

    // Nobody trusted: forwarding headers are ignored.
    let server = start(AccessPolicy::default(), Vec::new(), setup).await;
    let seen = echoed(
        local(&server, Method::GET, "/echo/")
            .header("x-forwarded-for", REMOTE)
            .header("x-forwarded-proto", "https"),
    )
    .await;
    let client = &seen["client"];
    assert_eq!(client["address"], "127.0.0.1", "{seen}");
    assert_eq!(client["scheme"], "http");
    let host = server.base.trim_start_matches("http://");
    assert_eq!(client["host"], host);
    assert_eq!(
        seen_header(&seen, "x-kit-client").as_deref(),
        Some("127.0.0.1")
    );
    server.stop().await;
}

/// What the echo app answered to `req`.
async fn echoed(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}
