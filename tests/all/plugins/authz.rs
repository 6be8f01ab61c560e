//! The authz core plugin end to end: the PEP in the chain (403 naming the
//! deciding policy, permitted requests reaching the app, the subject from
//! `X-Identity` set by an earlier plugin, client addresses through a
//! trusted proxy, normalised paths), the PAP's CRUD persisted across a
//! restart and seen by every instance at once, evaluate and explain, and
//! the plugin off unless configured.

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use super::{config, kit, not_loaded, plugins, seen_header};
use crate::security::{policy, restart, start as start_with};
use crate::server::{TestServer, client, install_echo};

const AUTHZ: &str = "@buntime/plugin-authz";

/// The header the test identity plugin copies into `X-Identity`.
const TEST_IDENTITY: &str = "x-test-identity";

/// Echo apps `shop` and `blog`; an identity plugin (the kit copying
/// `x-test-identity` to `x-identity`) before authz configured with `authz`.
fn setup(root: &Path, authz: &Value) {
    for app in ["shop", "blog"] {
        install_echo(&root.join("apps"), app, Some(r#"{ "ttl": "1m" }"#));
    }
    kit(root, "identity", "");
    config(
        root,
        &json!({ "plugins": [
            ["identity", { "copyHeader": format!("{TEST_IDENTITY}=x-identity") }],
            [AUTHZ, authz],
        ] })
        .to_string(),
    );
}

async fn start(authz: Value) -> TestServer {
    start_with(policy(None), buntime::plugins::embedded(), |root| {
        setup(root, &authz)
    })
    .await
}

fn policy_json(id: &str, effect: &str, priority: i64, rest: Value) -> Value {
    let mut p = json!({ "id": id, "effect": effect, "priority": priority,
                        "subjects": [], "resources": [], "actions": [] });
    for (k, v) in rest.as_object().expect("object") {
        p[k] = v.clone();
    }
    p
}

fn seeded(policies: Vec<Value>) -> Value {
    json!({ "policySeed": { "policies": policies } })
}

/// `method path` as `who` (an identity, or anonymous) from `from` (a client
/// address a trusted proxy reports, or this machine): status and JSON body.
async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    who: Option<Value>,
    from: Option<&str>,
) -> (u16, Value) {
    let mut req = client().request(method, server.url(path));
    if let Some(identity) = who {
        req = req.header(TEST_IDENTITY, identity.to_string());
    }
    if let Some(addr) = from {
        req = req.header("x-forwarded-for", addr);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn user(sub: &str, roles: &[&str], groups: &[&str]) -> Value {
    json!({ "sub": sub, "name": null, "roles": roles, "groups": groups,
            "claims": {}, "provider": "test" })
}

/// A PAP call from this machine (no key is configured, so loopback needs none).
async fn pap(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client().request(method, server.url(&format!("/_/authz/api{path}")));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_pep_denies_naming_the_policy_and_lets_permitted_requests_through() {
    let server = start(seeded(vec![
        policy_json("admins", "permit", 100, json!({ "subjects": [{ "role": "admin" }] })),
        policy_json(
            "no-order-deletes",
            "deny",
            200,
            json!({ "resources": [{ "app": "shop", "path": "/shop/orders/**" }],
                    "actions": [{ "method": "DELETE" }],
                    "description": "orders are never deleted" }),
        ),
        policy_json(
            "public-blog",
            "permit",
            10,
            json!({ "resources": [{ "path": "/blog/**" }], "actions": [{ "method": "GET" }] }),
        ),
        policy_json(
            "staff-from-office",
            "permit",
            50,
            json!({ "subjects": [{ "group": "staff" }], "resources": [{ "app": "shop" }],
                    "conditions": [{ "type": "ip", "allowlist": ["10.0.0.0/8", "2001:db8::/32"] }] }),
        ),
    ]))
    .await;

    // Anonymous: the blog is public, the shop is not (no policy permits:
    // the default effect, naming no policy).
    let (status, seen) = send(&server, Method::GET, "/blog/post", None, None).await;
    assert_eq!(status, 200, "{seen}");
    let (status, body) = send(&server, Method::GET, "/shop/", None, None).await;
    assert_eq!(
        (status, &body["code"]),
        (403, &json!("FORBIDDEN")),
        "{body}"
    );
    assert_eq!(body["policy"], Value::Null, "{body}");
    assert!(body["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    let (status, _) = send(&server, Method::POST, "/blog/post", None, None).await;
    assert_eq!(status, 403);

    // An admin reaches the shop, and the app sees the identity...
    let admin = user("alice", &["admin"], &[]);
    let (status, seen) = send(&server, Method::GET, "/shop/x", Some(admin.clone()), None).await;
    assert_eq!(status, 200, "{seen}");
    let identity: Value =
        serde_json::from_str(&seen_header(&seen, "x-identity").expect("x-identity")).expect("json");
    assert_eq!(identity["sub"], "alice");
    // ...but the higher deny overrides, named in the 403, whatever the
    // path's spelling.
    for path in [
        "/shop/orders/1",
        "/shop/x/..%2Forders/1",
        "//shop/%6frders/1",
    ] {
        let (status, body) = send(&server, Method::DELETE, path, Some(admin.clone()), None).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["policy"], "no-order-deletes", "{path}: {body}");
        assert_eq!(body["message"], "denied by policy `no-order-deletes`");
        assert_eq!(body["reason"], "orders are never deleted");
    }
    // A path whose encoded separator leaves its app is refused outright.
    let (status, body) = send(&server, Method::GET, "/blog/..%2Fshop/", None, None).await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("PATH_INVALID")),
        "{body}"
    );

    // Staff only from the office networks, as the trusted proxy reports the
    // client (IPv4 and IPv6).
    let staff = user("bob", &[], &["staff"]);
    for (from, want) in [
        ("10.1.2.3", 200),
        ("2001:db8::7", 200),
        ("203.0.113.7", 403),
        ("11.0.0.1", 403),
    ] {
        let (status, body) = send(
            &server,
            Method::GET,
            "/shop/",
            Some(staff.clone()),
            Some(from),
        )
        .await;
        assert_eq!(status, want, "{from}: {body}");
    }

    // Plugin routes are left to their API keys (`excludePaths`).
    let (status, body) = pap(&server, Method::GET, "/policies", None).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "no-order-deletes",
            "admins",
            "staff-from-office",
            "public-blog"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn the_pap_persists_across_a_restart_and_every_instance_sees_a_change_at_once() {
    let seed = seeded(vec![policy_json(
        "seed-open",
        "permit",
        0,
        json!({ "resources": [{ "app": "shop" }] }),
    )]);
    let server = start(seed.clone()).await;
    let (status, _) = send(&server, Method::GET, "/shop/", None, None).await;
    assert_eq!(status, 200);

    // Create, replace, create by PUT; invalid policies are refused naming the field.
    let block = policy_json(
        "block-shop",
        "deny",
        5,
        json!({ "resources": [{ "app": "sh?p" }] }),
    );
    let (status, body) = pap(&server, Method::POST, "/policies", Some(block.clone())).await;
    assert_eq!(status, 201, "{body}");
    // Every later request, whichever instance serves it, sees the deny.
    for _ in 0..20 {
        let (status, body) = send(&server, Method::GET, "/shop/", None, None).await;
        assert_eq!(
            (status, &body["policy"]),
            (403, &json!("block-shop")),
            "{body}"
        );
    }
    let mut changed = block.clone();
    changed["resources"] = json!([{ "app": "blog", "path": "/blog/private/**" }]);
    let (status, body) = pap(&server, Method::POST, "/policies", Some(changed)).await;
    assert_eq!(
        (status, &body["resources"][0]["app"]),
        (200, &json!("blog")),
        "{body}"
    );
    let (status, _) = send(&server, Method::GET, "/shop/", None, None).await;
    assert_eq!(status, 200);

    let put = json!({ "effect": "permit", "subjects": [{ "claim": { "name": "tier", "operator": "gt", "value": 2 } }],
                      "resources": [{ "path": "/blog/**" }], "actions": [] });
    let (status, body) = pap(&server, Method::PUT, "/policies/gold", Some(put)).await;
    assert_eq!((status, &body["id"]), (201, &json!("gold")), "{body}");
    let (status, body) = pap(&server, Method::GET, "/policies/gold", None).await;
    assert_eq!((status, &body["effect"]), (200, &json!("permit")), "{body}");

    for (bad, needle) in [
        (
            json!({ "id": "x", "effect": "permit", "subjects": [{ "rol": "a" }], "resources": [], "actions": [] }),
            "unknown field `rol`",
        ),
        (
            json!({ "id": "x", "effect": "permit", "subjects": [], "resources": [{ "path": "/a" }], "actions": [],
                 "conditions": [{ "type": "ip", "allowlist": ["10.0.0.0/33"] }] }),
            "`conditions[0]`: `allowlist[0]`",
        ),
        (
            json!({ "id": "x", "effect": "permit", "subjects": [{ "claim": { "name": "e", "operator": "regex", "value": "(" } }],
                 "resources": [], "actions": [] }),
            "does not compile",
        ),
    ] {
        let (status, body) = pap(&server, Method::POST, "/policies", Some(bad)).await;
        assert_eq!(
            (status, &body["code"]),
            (400, &json!("INVALID_POLICY")),
            "{body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{needle}: {body}"
        );
    }
    let (status, body) = pap(
        &server,
        Method::PUT,
        "/policies/a",
        Some(json!({ "id": "b" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (status, _) = pap(&server, Method::DELETE, "/policies/seed-open", None).await;
    assert_eq!(status, 200);
    let (status, body) = pap(&server, Method::DELETE, "/policies/seed-open", None).await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("POLICY_NOT_FOUND")),
        "{body}"
    );
    let (status, _) = send(&server, Method::GET, "/shop/", None, None).await;
    assert_eq!(status, 403);

    // A restart keeps the store; the seed goes only into an empty one.
    let dir = server.stop_keep_dir().await;
    let server = restart(dir, policy(None), buntime::plugins::embedded()).await;
    let (status, body) = pap(&server, Method::GET, "/policies", None).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["block-shop", "gold"]);
    let (status, _) = send(&server, Method::GET, "/shop/", None, None).await;
    assert_eq!(status, 403);
    let gold = json!({ "sub": "c", "roles": [], "groups": [], "claims": { "tier": 3 } });
    let (status, _) = send(&server, Method::GET, "/blog/a", Some(gold.clone()), None).await;
    assert_eq!(status, 200);
    let (status, body) = send(&server, Method::GET, "/blog/private/a", Some(gold), None).await;
    assert_eq!(
        (status, &body["policy"]),
        (403, &json!("block-shop")),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn evaluate_and_explain() {
    let server = start(json!({
        "combiningAlgorithm": "first-applicable",
        "policySeed": { "policies": [
            policy_json("night-deny", "deny", 9, json!({
                "conditions": [{ "type": "time", "after": "22:00", "before": "06:00", "timezone": "Europe/Berlin" }] })),
            policy_json("editors", "permit", 5, json!({ "subjects": [{ "role": "editor:*" }],
                "actions": [{ "method": "PUT" }] })),
        ] }
    }))
    .await;
    let ctx = |time: &str| {
        json!({
            "subject": { "id": "e", "roles": ["editor:blog"] },
            "resource": { "app": "blog", "path": "/blog/a" },
            "action": { "method": "PUT" },
            "environment": { "ip": "10.0.0.1", "time": time }
        })
    };
    // 12:00 UTC is 13:00 in Berlin: the night rule does not hold; 21:30
    // UTC is 22:30 there. Explain agrees, with each policy's result.
    for (time, effect, policy) in [
        ("2025-01-06T12:00:00Z", "permit", "editors"),
        ("2025-01-06T21:30:00Z", "deny", "night-deny"),
    ] {
        let (status, body) = pap(&server, Method::POST, "/evaluate", Some(ctx(time))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (&body["effect"], &body["matchedPolicy"]),
            (&json!(effect), &json!(policy)),
            "{time}"
        );
    }
    let (status, body) = pap(
        &server,
        Method::POST,
        "/explain",
        Some(ctx("2025-01-06T12:00:00Z")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["combiningAlgorithm"], "first-applicable");
    assert_eq!(body["decision"]["effect"], "permit");
    let results: Vec<(&str, &str)> = body["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or(""),
                p["result"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        results,
        [("night-deny", "not_applicable"), ("editors", "permit")]
    );

    let (status, body) = pap(
        &server,
        Method::POST,
        "/evaluate",
        Some(json!({ "subjet": {} })),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("INVALID_CONTEXT")),
        "{body}"
    );
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
    assert_eq!(not_loaded(&list, AUTHZ)["state"], "disabled", "{list}");
    let (status, _) = send(&server, Method::GET, "/shop/", None, None).await;
    assert_eq!(status, 200);
    server.stop().await;

    let server = start(json!({ "combiningAlgorithm": "majority-vote" })).await;
    let list = plugins(&server).await;
    let entry = not_loaded(&list, AUTHZ);
    assert_eq!(entry["state"], "failed", "{list}");
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("majority-vote")),
        "{entry}"
    );
    server.stop().await;
}
