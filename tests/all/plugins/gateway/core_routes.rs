//! CORS on the core routes (`/_/api/*`, `/.well-known/buntime`, …): the
//! gateway's headers and preflight answers reach them through
//! `coreRoutes: "headers"`, its rate limits do not, and a plugin with that
//! field can change nothing else of a core response, sees no credentials
//! there, and cannot break a core route by failing.

use buntime::access::AccessPolicy;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::*;
use crate::security::{MASTER, policy};

const APP: &str = "https://app.example.com";

fn cors() -> Value {
    json!({ "origins": [APP], "credentials": true })
}

/// `(Access-Control-Allow-Origin, whether Vary names Origin)`.
fn cors_of(h: &HeaderMap) -> (Option<String>, bool) {
    (
        header(h, "access-control-allow-origin").map(str::to_owned),
        vary(h).contains(&"origin".to_owned()),
    )
}

#[tokio::test]
async fn core_routes_get_the_gateways_cors_headers_but_not_its_limits() {
    let cfg = json!({ "cors": cors(), "rateLimit": { "requests": 1, "window": "1h" } });
    let server = start(policy(Some(MASTER)), cfg, &[]).await;
    let allowed = (Some(APP.to_owned()), true);
    let from_app = [("origin", APP)];

    // A public route, several times: a limit of 1 neither refuses nor
    // counts core requests.
    for _ in 0..3 {
        let (status, h, body) = send(&server, "GET", "/_/api/health", &from_app).await;
        assert_eq!((status, cors_of(&h)), (200, allowed.clone()), "{body}");
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
        assert!(header(&h, "x-ratelimit-limit").is_none(), "{h:?}");
    }
    // The app's bucket is whole: one request, then the limit.
    assert_eq!(send(&server, "GET", "/echo/", &[]).await.0, 200);
    assert_eq!(send(&server, "GET", "/echo/", &[]).await.0, 429);

    // Another origin gets no CORS headers (and `Vary: Origin`).
    let (status, h, _) = send(
        &server,
        "GET",
        "/_/api/health",
        &[("origin", "https://evil.example.net")],
    )
    .await;
    assert_eq!((status, cors_of(&h)), (200, (None, true)));
    assert!(header(&h, "access-control-allow-credentials").is_none());

    // A preflight for a guarded route: the gateway's 204, which opens the
    // key header to the app; the route still needs the key itself.
    let (status, h, body) = send(
        &server,
        "OPTIONS",
        "/_/api/apps",
        &[
            ("origin", APP),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-api-key"),
        ],
    )
    .await;
    assert_eq!((status, cors_of(&h)), (204, allowed.clone()));
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("x-api-key")
    );
    assert!(header(&h, "x-request-id").is_some(), "{h:?}");
    assert_eq!(body, json!(""));
    // From another origin: no CORS headers, so the browser stops there.
    let (status, h, _) = send(
        &server,
        "OPTIONS",
        "/_/api/apps",
        &[
            ("origin", "https://evil.example.net"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!((status, cors_of(&h)), (204, (None, true)));

    // The core routes' own errors carry them, so the app can read why.
    let (status, h, body) = send(&server, "GET", "/_/api/apps", &from_app).await;
    assert_eq!((status, cors_of(&h)), (401, allowed.clone()), "{body}");
    assert_eq!(body["code"], "API_KEY_REQUIRED", "{body}");
    assert!(header(&h, "www-authenticate").is_some());
    let (status, h, body) = send(&server, "POST", "/_/api/keys", &from_app).await;
    assert_eq!((status, cors_of(&h)), (403, allowed.clone()), "{body}");
    assert_eq!(body["code"], "CROSS_SITE_REQUEST", "{body}");
    // And with the key, the answer.
    let (status, h, body) = send(
        &server,
        "GET",
        "/_/api/apps",
        &[("origin", APP), ("x-api-key", MASTER)],
    )
    .await;
    assert_eq!((status, cors_of(&h)), (200, allowed.clone()), "{body}");
    assert_eq!(body["apps"][0]["name"], "echo", "{body}");
    // The listing says which plugins reach the core routes.
    let (_, _, list) = send(&server, "GET", "/_/api/plugins", &[("x-api-key", MASTER)]).await;
    assert_eq!(
        super::super::loaded(&list, GATEWAY)["coreRoutes"],
        "headers",
        "{list}"
    );
    server.stop().await;
}

#[tokio::test]
async fn what_the_server_shows_its_own_machine_without_a_key_is_not_shared() {
    // No key configured: a client on this machine reads guarded routes
    // without one. A page on an allowed origin, in a browser there, must
    // not read them.
    let server = start(AccessPolicy::default(), json!({ "cors": cors() }), &[]).await;
    let (status, h, body) = send(&server, "GET", "/_/api/apps", &[("origin", APP)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cors_of(&h), (None, true), "{h:?}");
    // Public routes are shared as ever.
    let (status, h, _) = send(&server, "GET", "/_/api/health", &[("origin", APP)]).await;
    assert_eq!((status, cors_of(&h)), (200, (Some(APP.to_owned()), true)));
    server.stop().await;
}

/// The names a core response may carry with hostile plugins around it:
/// its own and CORS.
fn only_core_and_cors(h: &HeaderMap) {
    for name in h.keys() {
        let name = name.as_str();
        assert!(
            matches!(
                name,
                "content-type"
                    | "content-length"
                    | "date"
                    | "x-request-id"
                    | "vary"
                    | "www-authenticate"
                    | "allow"
            ) || name.starts_with("access-control-"),
            "`{name}` on a core response: {h:?}"
        );
    }
}

#[tokio::test]
async fn a_hostile_plugin_changes_nothing_but_cors_headers_and_sees_no_credentials() {
    let evil = json!([
        ["access-control-allow-origin", "*"],
        ["set-cookie", "stolen=1"],
        ["location", "https://evil.example/"],
        ["cache-control", "public, max-age=99999"],
        ["x-evil", "1"]
    ]);
    let server = crate::security::start(policy(Some(MASTER)), Vec::new(), |root| {
        echo(root);
        let manifest = |name: &str, extra: &str| {
            kit(
                root,
                name,
                &format!(r#""coreRoutes": "headers", "onError": "closed" {extra}"#),
            )
        };
        // Counts what it sees, asks for bad headers, rewrites the path.
        manifest(
            "spy",
            r#", "base": "spy", "capabilities": { "state": true }"#,
        );
        // Answers `/.well-known/…` with a 204 and bad headers.
        manifest("deny204", "");
        // Answers `/_/api/…` with a 403 and a cookie.
        manifest("deny403", "");
        config(
            root,
            &json!({ "plugins": [
                ["spy", {
                    "spyPrefix": "/", "askHeaders": evil.to_string(),
                    "rewrite": "/.well-known/=/echo/", "requestHeader": "x-api-key=forged"
                }],
                ["deny204", {
                    "denyPrefix": "/.", "denyStatus": "204",
                    "denyHeaders": json!([
                        ["access-control-allow-origin", "https://evil.example"],
                        ["access-control-allow-methods", "DELETE"],
                        ["set-cookie", "stolen=1"],
                        ["location", "https://evil.example/"]
                    ]).to_string()
                }],
                ["deny403", {
                    "denyPrefix": "/_/api/",
                    "denyHeaders": json!([["set-cookie", "stolen=1"]]).to_string()
                }]
            ] })
            .to_string(),
        );
    })
    .await;
    let bearer = format!("Bearer {MASTER}");
    let secrets = [
        ("origin", APP),
        ("authorization", bearer.as_str()),
        ("cookie", "session=s3cret"),
        ("proxy-authorization", "Basic eDp5"),
        ("x-identity", r#"{"sub":"root"}"#),
    ];

    // Not rewritten to the echo app, not answered 204: the route's own
    // answer, with the CORS header the plugin asked for and nothing else.
    let (status, h, body) = send(&server, "GET", "/.well-known/buntime", &secrets).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["runtime"], &body["api"]),
        (&json!("buntime"), &json!("/_/api"))
    );
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    only_core_and_cors(&h);

    // A guarded route: not the plugin's 403, served with the key.
    let mut keyed = secrets.to_vec();
    keyed.push(("x-api-key", MASTER));
    let (status, h, body) = send(&server, "GET", "/_/api/apps", &keyed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["apps"][0]["name"], "echo", "{body}");
    only_core_and_cors(&h);
    // Without a key, the core route's 401, not the plugin's 403 nor its
    // forged key.
    let (status, h, body) = send(&server, "GET", "/_/api/apps", &[("origin", APP)]).await;
    assert_eq!(
        (status, &body["code"]),
        (401, &json!("API_KEY_REQUIRED")),
        "{body}"
    );
    only_core_and_cors(&h);

    // A preflight the plugin answers: its status and CORS headers, nothing
    // else, no body.
    let (status, h, body) = send(
        &server,
        "OPTIONS",
        "/.well-known/buntime",
        &[("origin", APP), ("access-control-request-method", "GET")],
    )
    .await;
    assert_eq!((status, &body), (204, &json!("")), "{h:?}");
    assert_eq!(header(&h, "access-control-allow-methods"), Some("DELETE"));
    only_core_and_cors(&h);
    // An OPTIONS that is not a preflight is the router's 405, whatever the
    // plugin answers.
    let (status, h, _) = send(&server, "OPTIONS", "/_/api/apps", &[("origin", APP)]).await;
    assert_eq!(status, 405);
    only_core_and_cors(&h);

    // The spy ran on those five core requests and saw no credential or
    // identity header in any.
    let state = |key: &'static str| {
        let server = &server;
        async move {
            let path = format!("/_/spy/state/{key}");
            let (status, _, body) = send(server, "GET", &path, &[("x-api-key", MASTER)]).await;
            (status, body["value"].clone())
        }
    };
    assert_eq!(state("core").await, (200, json!(5)));
    assert_eq!(state("secrets").await.0, 404, "the spy saw credentials");
    server.stop().await;
}

#[tokio::test]
async fn a_plugin_that_traps_or_times_out_leaves_core_routes_working() {
    let server = crate::security::start(policy(Some(MASTER)), gateway_only(), |root| {
        echo(root);
        kit(root, "trapper", r#""coreRoutes": "headers""#);
        kit(
            root,
            "looper",
            r#""coreRoutes": "headers", "limits": { "timeout": "100ms" }"#,
        );
        config(
            root,
            &json!({ "plugins": [
                [GATEWAY, { "cors": cors() }],
                ["trapper", { "trap": "on_request" }],
                ["looper", { "loop": "on_request" }]
            ] })
            .to_string(),
        );
    })
    .await;
    // The chain fails closed on them: they do fail.
    assert_eq!(send(&server, "GET", "/echo/", &[]).await.0, 502);
    // The core routes answer, with the gateway's CORS headers.
    for _ in 0..3 {
        let (status, h, body) = send(&server, "GET", "/_/api/health", &[("origin", APP)]).await;
        assert_eq!(
            (status, cors_of(&h)),
            (200, (Some(APP.to_owned()), true)),
            "{body}"
        );
    }
    let (status, _, body) = send(&server, "GET", "/_/api/apps", &[("x-api-key", MASTER)]).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn an_operator_can_keep_the_gateway_off_the_core_routes() {
    let server = crate::security::start(policy(Some(MASTER)), gateway_only(), |root| {
        echo(root);
        config(
            root,
            &json!({ "plugins": [
                { "name": GATEWAY, "config": { "cors": cors() }, "coreRoutes": "none" }
            ] })
            .to_string(),
        );
    })
    .await;
    // The app still gets the gateway's CORS headers…
    let (status, h, body) = send(&server, "GET", "/echo/", &[("origin", APP)]).await;
    assert_eq!(
        (status, cors_of(&h)),
        (200, (Some(APP.to_owned()), true)),
        "{body}"
    );
    // …the core routes none of them, preflights included.
    let (status, h, body) = send(&server, "GET", "/_/api/health", &[("origin", APP)]).await;
    assert_eq!((status, cors_of(&h)), (200, (None, false)), "{body}");
    let (status, h, _) = send(
        &server,
        "OPTIONS",
        "/_/api/apps",
        &[("origin", APP), ("access-control-request-method", "GET")],
    )
    .await;
    assert_ne!(status, 204);
    assert_eq!(cors_of(&h), (None, false));
    let plugins = send(&server, "GET", "/_/api/plugins", &[("x-api-key", MASTER)]).await;
    let gateway = plugins.2["plugins"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == GATEWAY))
        .cloned()
        .unwrap_or_default();
    assert_eq!(gateway["coreRoutes"], "none", "{gateway}");
    server.stop().await;
}
