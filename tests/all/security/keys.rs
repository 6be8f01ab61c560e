//! The core API's keys: local-only without keys, the master key, each role
//! against each route class, revocation and expiry, CSRF.

use reqwest::Method;
use serde_json::{Value, json};

use super::{MASTER, create_key, expect, local, policy, remote, restart, start};
use buntime::access::{AccessPolicy, KeyStore, NewKey, Permissions, Role, now};

#[tokio::test]
async fn a_default_install_serves_private_routes_only_to_local_clients() {
    // No trusted proxy, no key: the default.
    let server = start(AccessPolicy::default(), Vec::new(), |_| {}).await;
    for path in [
        "/_/api/apps",
        "/_/api/plugins",
        "/_/metrics",
        "/_/stats",
        "/_/api/keys",
    ] {
        expect(local(&server, Method::GET, path), 200, None).await;
        // Relayed by a proxy nobody trusts: the client is elsewhere.
        expect(
            remote(&server, Method::GET, path),
            401,
            Some("API_KEY_REQUIRED"),
        )
        .await;
    }
    expect(
        local(&server, Method::POST, "/_/api/plugins/reload"),
        200,
        None,
    )
    .await;
    let refused = expect(
        remote(&server, Method::POST, "/_/api/plugins/reload"),
        401,
        Some("API_KEY_REQUIRED"),
    )
    .await;
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("RUNTIME_MASTER_KEY")),
        "{refused}"
    );
    // A page that a DNS rebinding points at loopback still names its own host.
    expect(
        local(&server, Method::POST, "/_/api/plugins/reload").header("host", "evil.example"),
        401,
        Some("API_KEY_REQUIRED"),
    )
    .await;
    for public in [
        "/_/api/health",
        "/_/api/health/live",
        "/_/api/health/ready",
        "/.well-known/buntime",
    ] {
        expect(remote(&server, Method::GET, public), 200, None).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn through_a_trusted_proxy_remote_clients_need_a_key_and_the_master_key_is_admin() {
    let server = start(policy(Some(MASTER)), Vec::new(), |_| {}).await;
    // Once a key is configured, local clients need one too.
    expect(
        local(&server, Method::GET, "/_/api/apps"),
        401,
        Some("API_KEY_REQUIRED"),
    )
    .await;
    expect(
        remote(&server, Method::GET, "/_/api/apps"),
        401,
        Some("API_KEY_REQUIRED"),
    )
    .await;
    expect(
        remote(&server, Method::GET, "/_/api/apps").header("x-api-key", MASTER),
        200,
        None,
    )
    .await;
    expect(
        remote(&server, Method::POST, "/_/api/plugins/reload").bearer_auth(MASTER),
        200,
        None,
    )
    .await;
    for wrong in ["master-key-for-tests-012345678", "btk_nope", ""] {
        expect(
            remote(&server, Method::GET, "/_/api/apps").header("x-api-key", wrong),
            401,
            Some("API_KEY_INVALID"),
        )
        .await;
    }
    // Cookies never authenticate the core API.
    expect(
        remote(&server, Method::GET, "/_/api/apps").header("cookie", format!("x-api-key={MASTER}")),
        401,
        Some("API_KEY_REQUIRED"),
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn each_role_against_each_route_class() {
    let server = start(policy(Some(MASTER)), Vec::new(), |_| {}).await;
    let viewer = create_key(&server, MASTER, json!({"name": "v", "role": "viewer"})).await;
    let editor = create_key(&server, MASTER, json!({"name": "e"})).await;
    let admin = create_key(&server, MASTER, json!({"name": "a", "role": "admin"})).await;
    let custom = create_key(
        &server,
        MASTER,
        json!({"name": "c", "role": "custom", "permissions": ["apps:read"]}),
    )
    .await;
    let new_key = json!({"name": "x", "role": "viewer"});
    // (method, path, body, [viewer, editor, admin, custom] statuses)
    let table: [(Method, &str, Option<&Value>, [u16; 4]); 7] = [
        (Method::GET, "/_/api/apps", None, [200, 200, 200, 200]),
        (Method::GET, "/_/api/plugins", None, [200, 200, 200, 403]),
        (
            Method::POST,
            "/_/api/plugins/reload",
            None,
            [403, 200, 200, 403],
        ),
        (Method::GET, "/_/metrics", None, [200, 200, 200, 403]),
        (Method::GET, "/_/api/keys", None, [200, 403, 200, 403]),
        (
            Method::POST,
            "/_/api/keys",
            Some(&new_key),
            [403, 403, 201, 403],
        ),
        (
            Method::DELETE,
            "/_/api/keys/999",
            None,
            [403, 403, 404, 403],
        ),
    ];
    for (method, path, body, want) in table {
        for (key, status) in [&viewer, &editor, &admin, &custom].into_iter().zip(want) {
            let mut req = remote(&server, method.clone(), path).header("x-api-key", key.as_str());
            if let Some(b) = body {
                req = req.json(b);
            }
            let code = (status == 403).then_some("PERMISSION_DENIED");
            expect(req, status, code).await;
        }
    }
    // The listing shows prefixes and last use, never a key.
    let listed = expect(
        remote(&server, Method::GET, "/_/api/keys").bearer_auth(&viewer),
        200,
        None,
    )
    .await;
    let text = listed.to_string();
    for key in [&viewer, &editor, &admin, &custom] {
        assert!(!text.contains(key.as_str()), "a key is listed: {text}");
        assert!(text.contains(&key[..12]), "no prefix of {key} in {text}");
    }
    let v = listed["keys"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["name"] == "v"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(v["role"], "viewer");
    assert!(v["lastUsedAt"].as_i64().is_some_and(|t| t > 0), "{v}");
    server.stop().await;
}

#[tokio::test]
async fn a_key_cannot_create_a_stronger_one() {
    let server = start(policy(Some(MASTER)), Vec::new(), |_| {}).await;
    let keymaker = create_key(
        &server,
        MASTER,
        json!({"name": "k", "role": "custom", "permissions": ["keys:create", "apps:read"]}),
    )
    .await;
    for stronger in [
        json!({"name": "x", "role": "admin"}),
        json!({"name": "x", "role": "custom", "permissions": ["plugins:config"]}),
    ] {
        expect(
            remote(&server, Method::POST, "/_/api/keys")
                .header("x-api-key", &keymaker)
                .json(&stronger),
            403,
            Some("PERMISSION_DENIED"),
        )
        .await;
    }
    let weaker = create_key(
        &server,
        &keymaker,
        json!({"name": "w", "role": "custom", "permissions": ["apps:read"]}),
    )
    .await;
    expect(
        remote(&server, Method::GET, "/_/api/apps").header("x-api-key", &weaker),
        200,
        None,
    )
    .await;
    for (bad, needle) in [
        (json!({"role": "admin"}), "name"),
        (json!({"name": "x", "role": "root"}), "role"),
        (json!({"name": "x", "role": "custom"}), "permissions"),
        (
            json!({"name": "x", "role": "custom", "permissions": ["apps:delete"]}),
            "apps:delete",
        ),
        (json!({"name": "x", "permissions": ["apps:read"]}), "custom"),
        (json!({"name": "x", "expiresIn": "5h"}), "expiresIn"),
    ] {
        let body = expect(
            local(&server, Method::POST, "/_/api/keys")
                .header("x-api-key", MASTER)
                .json(&bad),
            400,
            Some("INVALID_KEY_REQUEST"),
        )
        .await;
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{body}"
        );
    }
    server.stop().await;
}

/// Writes an admin key expiring at `expires_at` into the key store of the
/// server over `root` (while it is stopped); returns the key.
fn seed_admin_key(root: &std::path::Path, expires_at: Option<i64>) -> String {
    let store = KeyStore::open(Some(&root.join("data"))).expect("store");
    let (key, _) = store
        .create(NewKey {
            name: "seeded".into(),
            role: Role::Admin,
            permissions: Permissions::of_role(Role::Admin),
            permission_names: Vec::new(),
            description: None,
            expires_at,
        })
        .expect("create");
    key
}

#[tokio::test]
async fn revoked_and_expired_keys_are_refused_and_keys_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["apps", "plugins"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    // A key that expired, written to the store the server will open.
    let expired = seed_admin_key(dir.path(), Some(now() - 10));
    // No master key: the generated keys alone make the API need one.
    let server = restart(dir, policy(None), Vec::new()).await;
    let expired_body = expect(
        local(&server, Method::GET, "/_/api/apps").header("x-api-key", &expired),
        401,
        Some("API_KEY_INVALID"),
    )
    .await;
    assert!(
        expired_body["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired"))
    );
    expect(
        local(&server, Method::GET, "/_/api/apps"),
        401,
        Some("API_KEY_REQUIRED"),
    )
    .await;
    // The expired key cannot make another: seed an admin key the same way.
    let dir = server.stop_keep_dir().await;
    let admin = seed_admin_key(dir.path(), None);
    let server = restart(dir, policy(None), Vec::new()).await;
    let made = expect(
        remote(&server, Method::POST, "/_/api/keys")
            .header("x-api-key", &admin)
            .json(&json!({"name": "ci", "role": "viewer", "expiresIn": "30d"})),
        201,
        None,
    )
    .await;
    let ci = made["data"]["key"].as_str().unwrap_or_default().to_owned();
    assert!(ci.starts_with("btk_") && ci.len() == 47, "{made}");
    let id = made["data"]["id"].as_i64().unwrap_or_default();
    assert!(
        made["data"]["expiresAt"]
            .as_i64()
            .is_some_and(|t| t > now())
    );
    let dir = server.stop_keep_dir().await;
    let server = restart(dir, policy(None), Vec::new()).await;
    expect(
        remote(&server, Method::GET, "/_/api/apps").bearer_auth(&ci),
        200,
        None,
    )
    .await;
    expect(
        remote(&server, Method::DELETE, &format!("/_/api/keys/{id}")).header("x-api-key", &admin),
        200,
        None,
    )
    .await;
    expect(
        remote(&server, Method::GET, "/_/api/apps").bearer_auth(&ci),
        401,
        Some("API_KEY_INVALID"),
    )
    .await;
    expect(
        remote(&server, Method::DELETE, &format!("/_/api/keys/{id}")).header("x-api-key", &admin),
        404,
        Some("KEY_NOT_FOUND"),
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn cross_site_requests_without_a_key_change_nothing() {
    let server = start(AccessPolicy::default(), Vec::new(), |_| {}).await;
    let reload = || local(&server, Method::POST, "/_/api/plugins/reload");
    let same_origin = server.base.clone();
    expect(reload().header("origin", same_origin.as_str()), 200, None).await;
    expect(reload().header("sec-fetch-site", "same-origin"), 200, None).await;
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        expect(
            reload().header(name, value),
            403,
            Some("CROSS_SITE_REQUEST"),
        )
        .await;
    }
    // Reading is not refused: a browser does not let the page see the answer.
    expect(
        local(&server, Method::GET, "/_/api/apps").header("origin", "https://evil.example"),
        200,
        None,
    )
    .await;
    server.stop().await;
    // A request that carries a key is not a browser's cross-site form.
    let server = start(policy(Some(MASTER)), Vec::new(), |_| {}).await;
    expect(
        local(&server, Method::POST, "/_/api/plugins/reload")
            .header("origin", "https://ops.example")
            .header("x-api-key", MASTER),
        200,
        None,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn metrics_can_be_made_public_for_scrapers() {
    let open = AccessPolicy {
        metrics_public: true,
        ..policy(Some(MASTER))
    };
    let server = start(open, Vec::new(), |_| {}).await;
    let metrics = expect(remote(&server, Method::GET, "/_/metrics"), 200, None).await;
    assert!(metrics["requests"].is_number(), "{metrics}");
    let scrape = remote(&server, Method::GET, "/_/metrics")
        .header("accept", "text/plain")
        .send()
        .await
        .expect("scrape");
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.expect("text");
    assert!(
        text.contains("# TYPE buntime_http_server_requests_total counter"),
        "{text}"
    );
    expect(
        remote(&server, Method::GET, "/_/stats"),
        401,
        Some("API_KEY_REQUIRED"),
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn the_prometheus_exposition_needs_workers_read_like_the_json() {
    let server = start(policy(Some(MASTER)), Vec::new(), |_| {}).await;
    for accept in ["text/plain", "application/openmetrics-text"] {
        expect(
            remote(&server, Method::GET, "/_/metrics").header("accept", accept),
            401,
            Some("API_KEY_REQUIRED"),
        )
        .await;
    }
    server.stop().await;
}

#[tokio::test]
async fn invalid_keys_from_one_address_are_limited() {
    use buntime::access::FAILED_ATTEMPTS;
    let server = start(policy(Some(MASTER)), Vec::new(), |_| {}).await;
    for i in 0..FAILED_ATTEMPTS {
        expect(
            remote(&server, Method::GET, "/_/api/apps").header("x-api-key", format!("guess-{i}")),
            401,
            Some("API_KEY_INVALID"),
        )
        .await;
    }
    // The address is blocked now, for the right key too: the answers tell
    // a guesser nothing more.
    let res = remote(&server, Method::GET, "/_/api/apps")
        .header("x-api-key", MASTER)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "TOO_MANY_KEY_ATTEMPTS");
    // Another address is not, and a request without a key gets its usual
    // answer.
    expect(
        local(&server, Method::GET, "/_/api/apps")
            .header("x-forwarded-for", "203.0.113.99")
            .header("x-api-key", MASTER),
        200,
        None,
    )
    .await;
    expect(
        remote(&server, Method::GET, "/_/api/apps"),
        401,
        Some("API_KEY_REQUIRED"),
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn the_configured_key_attempt_limit_applies() {
    // Three invalid keys per address (`RUNTIME_KEY_ATTEMPTS=3`), refilled
    // over an hour: the fourth request is refused, the right key too.
    let limited = AccessPolicy {
        key_attempts: (3, std::time::Duration::from_secs(3600)),
        ..policy(Some(MASTER))
    };
    let server = start(limited, Vec::new(), |_| {}).await;
    for i in 0..3 {
        expect(
            remote(&server, Method::GET, "/_/api/apps").header("x-api-key", format!("guess-{i}")),
            401,
            Some("API_KEY_INVALID"),
        )
        .await;
    }
    let res = remote(&server, Method::GET, "/_/api/apps")
        .header("x-api-key", MASTER)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 429);
    // An hour to refill three: one attempt comes back after about 20 minutes.
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1100..=1200).contains(&retry), "{retry}");
    server.stop().await;
}
