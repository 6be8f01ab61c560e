//! The gateway core plugin end to end: rate limits exact under concurrency,
//! per key, per route, through trusted proxies; CORS preflights and CORS
//! headers on app responses, host errors and short-circuits; the
//! `/_/gateway/api` routes (`gateway/api.rs`); CORS on the core routes
//! (`gateway/core_routes.rs`); off unless configured.

use std::path::Path;

use buntime::access::AccessPolicy;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::{config, echo, kit, not_loaded, plugins, seen_header};
use crate::server::install_echo;
use crate::server::{TestServer, client};

mod api;
mod core_routes;

const GATEWAY: &str = "@buntime/plugin-gateway";

/// Only the gateway of the embedded plugins (the others cost start time).
fn gateway_only() -> Vec<buntime::plugins::EmbeddedPlugin> {
    buntime::plugins::embedded()
        .into_iter()
        .filter(|p| p.manifest.contains(GATEWAY))
        .collect()
}

/// The echo app at `/echo`, the gateway configured with `cfg`, then the
/// `extra` entries of the plugin list.
fn setup(root: &Path, cfg: &Value, extra: &[Value]) {
    echo(root);
    let mut list = vec![json!([GATEWAY, cfg])];
    list.extend_from_slice(extra);
    config(root, &json!({ "plugins": list }).to_string());
}

async fn start(policy: AccessPolicy, cfg: Value, extra: &[Value]) -> TestServer {
    crate::security::start(policy, gateway_only(), |root| setup(root, &cfg, extra)).await
}

/// `method path` with `headers`: status, headers, body (JSON when it is).
async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(method, server.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let head = res.headers().clone();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, head, body)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Every `Vary` token of `h`, lower-cased.
fn vary(h: &HeaderMap) -> Vec<String> {
    h.get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect()
}

#[tokio::test]
async fn a_limit_of_n_admits_exactly_n_of_64_concurrent_requests() {
    const N: usize = 10;
    let cfg = json!({ "rateLimit": { "requests": N, "window": "1h" } });
    let server = start(AccessPolicy::default(), cfg, &[]).await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let url = server.url("/echo/");
            tokio::spawn(async move {
                let res = client().get(url).send().await.expect("request");
                let (status, head) = (res.status().as_u16(), res.headers().clone());
                let body = res.text().await.unwrap_or_default();
                (status, head, body)
            })
        })
        .collect();
    let mut ok = 0;
    let mut limited = None;
    for t in tasks {
        let (status, head, body) = t.await.expect("task");
        match status {
            200 => {
                ok += 1;
                assert_eq!(header(&head, "x-ratelimit-limit"), Some("10"));
                assert!(header(&head, "x-ratelimit-remaining").is_some());
            }
            429 => limited = Some(head),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(ok, N, "exactly N requests pass");
    let head = limited.expect("some were limited");
    assert_eq!(header(&head, "x-ratelimit-limit"), Some("10"));
    assert_eq!(header(&head, "x-ratelimit-remaining"), Some("0"));
    // The bucket refills over the hour: seconds until full, and at least
    // one second until the next token (6 minutes for 10 an hour).
    let reset: u64 = header(&head, "x-ratelimit-reset").unwrap().parse().unwrap();
    assert!((3000..=3600).contains(&reset), "{reset}");
    let retry: u64 = header(&head, "retry-after").unwrap().parse().unwrap();
    assert!((300..=360).contains(&retry), "{retry}");

    let (status, _, body) = send(&server, "GET", "/echo/x", &[]).await;
    assert_eq!(
        (status, &body["code"]),
        (429, &json!("RATE_LIMITED")),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn limits_are_per_key_per_route_and_skip_excluded_paths() {
    let cfg = json!({ "rateLimit": {
        "requests": 2, "window": "1h", "keyBy": "header:X-Tenant",
        "excludePaths": ["/echo/health"],
        "routes": [{ "path": "/echo/api/**", "methods": ["POST"], "requests": 1, "keyBy": "user" }]
    } });
    let server = start(AccessPolicy::default(), cfg, &[]).await;
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(send(&server, "GET", "/echo/", &[("x-tenant", "a")]).await.0);
    }
    assert_eq!(a, [200, 200, 429]);
    // Another key has its own bucket; an excluded path is never limited.
    assert_eq!(
        send(&server, "GET", "/echo/", &[("x-tenant", "b")]).await.0,
        200
    );
    for _ in 0..4 {
        assert_eq!(
            send(&server, "GET", "/echo/health", &[("x-tenant", "a")])
                .await
                .0,
            200
        );
    }
    // The POST route has its own limit of 1 (anonymous: the address), and a
    // GET there falls back to the default limit of tenant `a`, spent.
    assert_eq!(send(&server, "POST", "/echo/api/x", &[]).await.0, 200);
    assert_eq!(send(&server, "POST", "/echo/api/y", &[]).await.0, 429);
    assert_eq!(
        send(&server, "GET", "/echo/api/x", &[("x-tenant", "a")])
            .await
            .0,
        429
    );
    server.stop().await;
}

#[tokio::test]
async fn the_address_is_the_one_trusted_proxies_report() {
    let cfg = json!({ "rateLimit": { "requests": 1, "window": "1h" } });
    // Loopback is a trusted proxy: each forwarded client has its own bucket.
    let server = start(crate::security::policy(None), cfg.clone(), &[]).await;
    for ip in ["203.0.113.1", "203.0.113.2"] {
        let xff = [("x-forwarded-for", ip)];
        assert_eq!(send(&server, "GET", "/echo/", &xff).await.0, 200, "{ip}");
        assert_eq!(send(&server, "GET", "/echo/", &xff).await.0, 429, "{ip}");
    }
    server.stop().await;

    // From a peer nobody trusts, a spoofed X-Forwarded-For changes nothing.
    let server = start(AccessPolicy::default(), cfg, &[]).await;
    let spoofed = [("x-forwarded-for", "203.0.113.1")];
    assert_eq!(send(&server, "GET", "/echo/", &spoofed).await.0, 200);
    let spoofed = [("x-forwarded-for", "198.51.100.9")];
    assert_eq!(send(&server, "GET", "/echo/", &spoofed).await.0, 429);
    server.stop().await;
}

#[tokio::test]
async fn cors_preflights_and_headers_on_every_kind_of_response() {
    let cfg = json!({
        "rateLimit": { "requests": 100, "window": "1h", "routes": [
            { "path": "/echo/limited", "requests": 1 }
        ] },
        "cors": {
            "origins": ["https://app.example.com", "https://*.example.org"],
            "credentials": true, "maxAge": 600, "exposedHeaders": ["x-total"]
        }
    });
    // A plugin after the gateway that answers /echo/secret itself.
    let guard = json!(["guard", { "denyPrefix": "/echo/secret" }]);
    let server = crate::security::start(AccessPolicy::default(), gateway_only(), |root| {
        setup(root, &cfg, &[guard]);
        kit(root, "guard", "");
    })
    .await;
    let allowed = "https://a.b.example.org";

    // Preflight from an allowed origin.
    let (status, h, _) = send(
        &server,
        "OPTIONS",
        "/echo/",
        &[
            ("origin", allowed),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-one, content-type"),
        ],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(allowed));
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert!(header(&h, "access-control-allow-methods").is_some_and(|m| m.contains("PUT")));
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("x-one, content-type")
    );
    assert_eq!(header(&h, "access-control-max-age"), Some("600"));
    assert!(vary(&h).contains(&"origin".to_owned()), "{h:?}");

    // Preflights from origins that only look alike get no CORS headers.
    for origin in [
        "https://aXexample.org",
        "https://example.org",
        "http://a.example.org",
        "https://app.example.com.evil.net",
        "null",
    ] {
        let (status, h, _) = send(
            &server,
            "OPTIONS",
            "/echo/",
            &[("origin", origin), ("access-control-request-method", "GET")],
        )
        .await;
        assert_eq!(status, 204, "{origin}");
        assert!(
            header(&h, "access-control-allow-origin").is_none(),
            "{origin}: {h:?}"
        );
        assert!(vary(&h).contains(&"origin".to_owned()), "{origin}");
    }

    let with = |origin: &'static str| [("origin", origin)];
    let cors_of = |h: &HeaderMap| {
        (
            header(h, "access-control-allow-origin").map(str::to_owned),
            vary(h).contains(&"origin".to_owned()),
        )
    };
    let expect = (Some("https://app.example.com".to_owned()), true);
    // The app's response.
    let (status, h, _) = send(&server, "GET", "/echo/", &with("https://app.example.com")).await;
    assert_eq!((status, cors_of(&h)), (200, expect.clone()));
    let exposed = header(&h, "access-control-expose-headers").unwrap_or_default();
    assert!(
        exposed.contains("x-total") && exposed.contains("x-ratelimit-remaining"),
        "{exposed}"
    );
    // A host error: no such app.
    let (status, h, _) = send(&server, "GET", "/nope/", &with("https://app.example.com")).await;
    assert_eq!((status, cors_of(&h)), (404, expect.clone()));
    // A later plugin's short-circuit.
    let (status, h, _) = send(
        &server,
        "GET",
        "/echo/secret",
        &with("https://app.example.com"),
    )
    .await;
    assert_eq!((status, cors_of(&h)), (403, expect.clone()));
    // The gateway's own 429.
    let origin = with("https://app.example.com");
    assert_eq!(send(&server, "GET", "/echo/limited", &origin).await.0, 200);
    let (status, h, _) = send(&server, "GET", "/echo/limited", &origin).await;
    assert_eq!((status, cors_of(&h)), (429, expect.clone()));
    assert!(header(&h, "retry-after").is_some());
    // A disallowed origin: no CORS headers, on any of them; `Vary` still.
    for path in ["/echo/", "/nope/", "/echo/secret"] {
        let (_, h, _) = send(&server, "GET", path, &with("https://evil.example.net")).await;
        assert_eq!(cors_of(&h), (None, true), "{path}");
        assert!(header(&h, "access-control-allow-credentials").is_none());
    }
    server.stop().await;
}

#[tokio::test]
async fn any_origin_gets_a_star_and_credentials_with_it_are_refused() {
    let cfg = json!({ "cors": { "origins": "*" } });
    let server = start(AccessPolicy::default(), cfg, &[]).await;
    let (status, h, _) = send(&server, "GET", "/echo/", &[("origin", "https://x.net")]).await;
    assert_eq!(
        (status, header(&h, "access-control-allow-origin")),
        (200, Some("*"))
    );
    assert!(header(&h, "access-control-allow-credentials").is_none());
    server.stop().await;

    let cfg = json!({ "cors": { "origins": "*", "credentials": true } });
    let server = start(AccessPolicy::default(), cfg, &[]).await;
    let list = plugins(&server).await;
    let entry = not_loaded(&list, GATEWAY);
    assert_eq!(entry["state"], "failed", "{list}");
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cors.credentials")),
        "{entry}"
    );
    server.stop().await;
}

#[tokio::test]
async fn browser_navigations_are_served_by_the_shell_app() {
    let cfg = json!({ "shell": { "app": "shell", "excludes": ["api"] } });
    let server = crate::security::start(AccessPolicy::default(), gateway_only(), |root| {
        setup(root, &cfg, &[]);
        for app in ["shell", "api"] {
            install_echo(&root.join("apps"), app, Some(r#"{ "ttl": "1m" }"#));
        }
    })
    .await;
    let served_by = |body: &Value| (seen_header(body, "x-base"), body["path"].clone());
    let doc = ("sec-fetch-dest", "document");
    let (status, _, body) = send(&server, "GET", "/echo/page?q=1", &[doc]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        served_by(&body),
        (Some("/shell".into()), json!("/echo/page")),
        "{body}"
    );
    // Frames, scripts, excluded segments, a client's cookie: the app itself.
    for extra in [
        vec![("sec-fetch-dest", "iframe")],
        vec![("sec-fetch-dest", "empty")],
        vec![doc, ("cookie", "gateway_shell_excludes=echo,other")],
    ] {
        let (_, _, body) = send(&server, "GET", "/echo/page", &extra).await;
        assert_eq!(
            served_by(&body),
            (Some("/echo".into()), json!("/page")),
            "{extra:?}"
        );
    }
    let (_, _, body) = send(&server, "GET", "/api/x", &[doc]).await;
    assert_eq!(served_by(&body).0, Some("/api".into()), "{body}");
    // Plugin routes are never the shell's.
    let (status, _, body) = send(&server, "GET", "/_/gateway/api/config", &[doc]).await;
    assert_eq!(
        (status, &body["shell"]["app"]),
        (200, &json!("shell")),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn off_unless_configured_and_a_bad_config_is_refused() {
    let server = crate::security::start(AccessPolicy::default(), gateway_only(), echo).await;
    let list = plugins(&server).await;
    assert_eq!(not_loaded(&list, GATEWAY)["state"], "disabled", "{list}");
    let (status, h, _) = send(&server, "GET", "/echo/", &[("origin", "https://a.com")]).await;
    assert_eq!(status, 200);
    assert!(header(&h, "access-control-allow-origin").is_none());
    server.stop().await;

    for (cfg, named) in [
        (
            json!({ "rateLimit": { "requests": 0 } }),
            "rateLimit.requests",
        ),
        (
            json!({ "rateLimit": { "requests": 5, "window": "5x" } }),
            "rateLimit.window",
        ),
        (
            json!({ "rateLimit": { "requests": 5, "keyBy": "cookie:a" } }),
            "rateLimit.keyBy",
        ),
        (
            json!({ "cors": { "origins": ["https://a*.example.com"] } }),
            "cors.origins",
        ),
    ] {
        let server = start(AccessPolicy::default(), cfg.clone(), &[]).await;
        let list = plugins(&server).await;
        let entry = not_loaded(&list, GATEWAY);
        assert_eq!(entry["state"], "failed", "{cfg}: {list}");
        assert!(
            entry["reason"].as_str().is_some_and(|r| r.contains(named)),
            "{cfg}: {entry}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_limit_by_api_key_holds_on_plugin_routes_and_made_up_keys_count_by_address() {
    use crate::security::{MASTER, create_key, policy};
    let cfg = json!({ "rateLimit": { "requests": 2, "window": "1h", "keyBy": "apiKey" } });
    let server = start(policy(Some(MASTER)), cfg, &[]).await;
    let a = create_key(&server, MASTER, json!({ "name": "a", "role": "viewer" })).await;
    let b = create_key(&server, MASTER, json!({ "name": "b", "role": "viewer" })).await;
    let stats = "/_/gateway/api/stats";
    // The server takes its keys out of requests to `/_/…`; the gateway
    // still keys by them (their hash).
    for expected in [200, 200, 429] {
        let (status, _, body) = send(&server, "GET", stats, &[("x-api-key", &a)]).await;
        assert_eq!(status, expected, "{body}");
    }
    let bearer = format!("Bearer {b}");
    let (status, _, body) = send(&server, "GET", stats, &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "key b has a bucket of its own: {body}");

    // Invented keys are no callers of their own: they share the address's
    // bucket (2), and the route refuses them.
    let mut seen = Vec::new();
    for fake in ["made-up-1", "made-up-2", "made-up-3"] {
        let (status, _, body) = send(&server, "GET", stats, &[("x-api-key", fake)]).await;
        seen.push((status, body["code"].as_str().unwrap_or_default().to_owned()));
    }
    assert_eq!(seen[2], (429, "RATE_LIMITED".to_owned()), "{seen:?}");
    assert!(seen[..2].iter().all(|(s, _)| *s == 401), "{seen:?}");
    server.stop().await;
}
