//! The authn core plugin's login page, session lifetime and login-start
//! limit: the page is the plugin's `ui/index.html`, compiled into the binary
//! and served by the host under a strict policy (no framing, no inline
//! code, no sniffing); a session past `sessionSeconds` is refused, shown by
//! moving the guests' clock forward (no waiting); `loginStartsPerMinute`
//! bounds the `oidc` logins one address starts.

use serde_json::{Value, json};

use buntime::access::AccessPolicy;

use super::authn::AUTHN;
use super::authn_browser::{app_identity, manual, post_json, session_cookie};
use super::{config, echo};
use crate::server::TestServer;

/// A server with the authn plugin configured by `authn`, and the clock its
/// guests read.
async fn server(authn: Value) -> (TestServer, buntime::wasm::GuestClock) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("mkdir");
    echo(dir.path());
    config(
        dir.path(),
        &json!({ "plugins": [[AUTHN, authn]] }).to_string(),
    );
    let mut clock = None;
    let server = TestServer::plugins_in(
        dir,
        buntime::plugins::embedded(),
        AccessPolicy::default(),
        |state| {
            clock = Some(state.pools.engine().guest_clock().clone());
            state
        },
    )
    .await
    .expect("server with the authn plugin");
    (server, clock.expect("the engine's clock"))
}

const UI_PAGE: &str = include_str!("../../../plugins-wasm/authn/ui/index.html");
const UI_SCRIPT: &str = include_str!("../../../plugins-wasm/authn/ui/login.js");

#[tokio::test]
async fn the_login_page_is_served_from_ui_under_a_strict_policy() {
    let (server, _) = server(json!({
        "providers": [{"type": "email-password", "name": "local", "signUp": true}]
    }))
    .await;

    let res = manual()
        .get(server.url("/_/auth/login?redirect=//evil.example/"))
        .send()
        .await
        .expect("page");
    assert_eq!(res.status().as_u16(), 200);
    let h = res.headers().clone();
    let header = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("referrer-policy"), "no-referrer");
    let csp = header("content-security-policy");
    for directive in [
        "frame-ancestors 'none'",
        "script-src 'self'",
        "default-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    // The page is the ui/ file as it is, whatever the query says: nothing of
    // the request is written into it.
    let body = res.text().await.expect("html");
    assert_eq!(body, UI_PAGE);
    assert!(!body.contains("evil"));

    // Its script and style come from ui/ too, without a key, each with its
    // own type.
    for (path, kind) in [
        ("/_/auth/login.js", "javascript"),
        ("/_/auth/login.css", "text/css"),
    ] {
        let res = manual().get(server.url(path)).send().await.expect("asset");
        assert_eq!(res.status().as_u16(), 200, "{path}");
        let ct = res.headers()["content-type"]
            .to_str()
            .expect("type")
            .to_owned();
        assert!(ct.contains(kind), "{path}: {ct}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    }
    // A file that is not there is not the page.
    let res = manual()
        .get(server.url("/_/auth/missing.js"))
        .send()
        .await
        .expect("missing");
    assert_eq!(res.status().as_u16(), 404);
    // Nor is an unknown API route: it stays a JSON 404.
    let (status, _, body) = get_json(&server, "/_/auth/api/nope").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.is_object(), "a JSON answer, not the page: {body}");
    // The script reads the list from the API and hands the redirect to the
    // API (which checks it); it never navigates anywhere by itself.
    assert!(UI_SCRIPT.contains("/_/auth/api/providers"));
    for navigation in [
        "location.href =",
        "location.assign",
        "location.replace",
        "innerHTML",
    ] {
        assert!(!UI_SCRIPT.contains(navigation), "{navigation}");
    }
    let (status, _, providers) = get_json(&server, "/_/auth/api/providers").await;
    assert_eq!(status, 200);
    assert_eq!(providers["providers"][0]["name"], "local");
    assert_eq!(providers["providers"][0]["type"], "email-password");
    // The redirect the page would hand on is refused by the API.
    let res = manual()
        .get(server.url("/_/auth/api/logout?returnTo=%2F%2Fevil.example%2F"))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status().as_u16(), 400);
    assert!(res.headers().get("location").is_none());

    // Pages are read, not posted to; the API still answers as JSON.
    let res = manual()
        .post(server.url("/_/auth/login"))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 405);
    let (status, _, body) = get_json(&server, "/_/auth/api/session").await;
    assert_eq!(status, 401, "{body}");
}

async fn get_json(server: &TestServer, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = manual()
        .get(server.url(path))
        .header("accept", "application/json")
        .send()
        .await
        .expect("get");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_session_past_session_seconds_is_refused() {
    let (server, clock) = server(json!({
        "providers": [{"type": "email-password", "name": "local", "signUp": true}],
        "sessionSeconds": 60
    }))
    .await;
    let (status, headers, _) = post_json(
        &server,
        "/_/auth/api/signup",
        json!({"email": "ana@example.com", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 201);
    let set = headers["set-cookie"].to_str().expect("cookie");
    assert!(set.contains("Max-Age=60"), "{set}");
    let cookie = session_cookie(&headers);
    assert_eq!(app_identity(&server, &cookie).await.0, 200);

    // Half way it still holds (the margin covers a slow machine's real
    // seconds between the login and this request).
    clock.advance(std::time::Duration::from_secs(30));
    assert_eq!(app_identity(&server, &cookie).await.0, 200);

    // Past it: the app refuses it, the API knows no session, and a browser
    // is sent to log in again.
    clock.advance(std::time::Duration::from_secs(31));
    let (status, identity) = app_identity(&server, &cookie).await;
    assert_eq!((status, identity), (401, None));
    let res = manual()
        .get(server.url("/_/auth/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("session");
    assert_eq!(res.status().as_u16(), 401);
    let res = manual()
        .get(server.url("/echo/private"))
        .header("accept", "text/html")
        .header("cookie", &cookie)
        .send()
        .await
        .expect("browser");
    assert_eq!(res.status().as_u16(), 302);

    // A new login makes a new session that holds.
    let (status, headers, _) = post_json(
        &server,
        "/_/auth/api/login",
        json!({"email": "ana@example.com", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        app_identity(&server, &session_cookie(&headers)).await.0,
        200
    );
    assert_eq!(app_identity(&server, &cookie).await.0, 401);
}

#[tokio::test]
async fn the_configured_login_start_limit_applies() {
    // A provider nobody answers for: each start gets as far as discovery.
    let (server, _) = server(json!({
        "providers": [{"type": "oidc", "name": "idp", "issuer": "http://127.0.0.1:9", "clientId": "c"}],
        "loginStartsPerMinute": 2
    }))
    .await;
    let start = || async {
        manual()
            .get(server.url("/_/auth/api/login?provider=idp"))
            .send()
            .await
            .expect("start")
    };
    for _ in 0..2 {
        assert_eq!(start().await.status().as_u16(), 502);
    }
    let res = start().await;
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().get("retry-after").is_some());
}
