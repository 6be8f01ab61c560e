//! Browser logins through the authn core plugin: the authorization code +
//! PKCE flow against a real OpenID provider (`oidc-provider`, its login and
//! consent forms submitted over HTTP), the session cookie it leaves, logout
//! (RP-initiated), and what is refused: a tampered `state`, a replayed
//! callback, open redirects. Then the `email-password` provider: sign-up,
//! login, wrong passwords, sign-up off, a cross-site login post, the
//! `Secure` cookie over HTTPS, and the login-attempt limit.

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use buntime::access::{AccessPolicy, TrustedProxies};

use super::authn::{AUTHN, Provider, start};
use super::{config, echo, seen_header};
use crate::server::TestServer;

/// A client that never follows redirects: each hop is checked.
pub(super) fn manual() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The cookies a response sets, by name (value empty when deleted).
fn set_cookies(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let pair = v.split(';').next()?;
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn cookie_header(jar: &BTreeMap<String, String>) -> String {
    jar.iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn location(headers: &HeaderMap) -> String {
    headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("a location")
        .to_owned()
}

/// Follows the provider's redirects from `url`, submitting its login form
/// (as `login`) and its consent form, until it sends the browser back to
/// `back`; returns that URL.
async fn at_the_provider(url: &str, back: &str, login: &str) -> String {
    let http = manual();
    let mut jar = BTreeMap::new();
    let mut next = url.to_owned();
    let mut form: Option<(String, String)> = None;
    for _ in 0..20 {
        let req = match form.take() {
            Some((action, body)) => http
                .post(&action)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
            None => http.get(&next),
        };
        let res = req
            .header("cookie", cookie_header(&jar))
            .send()
            .await
            .expect("provider");
        jar.extend(set_cookies(res.headers()));
        let status = res.status().as_u16();
        if (300..400).contains(&status) {
            let to = location(res.headers());
            next = if to.starts_with('/') {
                let origin: String = url.split('/').take(3).collect::<Vec<_>>().join("/");
                format!("{origin}{to}")
            } else {
                to
            };
            if next.starts_with(back) {
                return next;
            }
            continue;
        }
        let html = res.text().await.expect("page");
        assert_eq!(status, 200, "{next}: {html}");
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|a| a.split('"').next())
            .unwrap_or_else(|| panic!("no form at {next}: {html}"))
            .replace("&amp;", "&")
            .replace("&#x2F;", "/");
        let body = if html.contains("value=\"login\"") {
            format!("prompt=login&login={login}&password=any")
        } else {
            "prompt=consent".to_owned()
        };
        form = Some((action, body));
    }
    panic!("the provider never sent the browser back to {back}");
}

/// The identity the app sees for a request with `cookie` (and another
/// cookie of the app's own, which is all of the cookies the app gets: the
/// session id never reaches it).
pub(super) async fn app_identity(server: &TestServer, cookie: &str) -> (u16, Option<Value>) {
    let res = manual()
        .get(server.url("/echo/private"))
        .header("accept", "application/json")
        .header("cookie", format!("theme=dark; {cookie}"))
        .send()
        .await
        .expect("app");
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status == 200 {
        assert_eq!(seen_header(&body, "cookie").as_deref(), Some("theme=dark"));
    }
    let id = seen_header(&body, "x-identity").map(|h| serde_json::from_str(&h).expect("JSON"));
    (status, id)
}

#[tokio::test]
async fn the_oidc_code_flow_makes_a_session_and_logout_ends_it() {
    let mut idp = Provider::start();
    let server = start(json!({
        "providers": [{
            "type": "oidc",
            "name": "idp",
            "issuer": idp.issuer,
            "clientId": "buntime-web",
            "clientSecret": "buntime-web-secret",
            "refreshSeconds": 1
        }]
    }))
    .await;
    let callback = server.url("/_/auth/api/callback");
    idp.command(json!({"cmd": "client", "redirectUri": callback}));
    let http = manual();

    // A browser without a session is sent to the login page (ui/), whose
    // script lists the providers from the API: this one among them.
    let res = http
        .get(server.url("/echo/private"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("app");
    assert_eq!(res.status().as_u16(), 302);
    assert_eq!(
        location(res.headers()),
        "/_/auth/login?redirect=/echo/private"
    );
    let page = http
        .get(server.url("/_/auth/login?redirect=/echo/private"))
        .send()
        .await
        .expect("login page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("<script src=\"/_/auth/login.js\"></script>")
    );
    let providers: Value = http
        .get(server.url("/_/auth/api/providers"))
        .send()
        .await
        .expect("providers")
        .json()
        .await
        .expect("JSON");
    assert!(
        providers["providers"]
            .as_array()
            .expect("list")
            .iter()
            .any(|p| p["name"] == "idp" && p["type"] == "oidc"),
        "{providers}"
    );

    // Open redirects are refused before anything starts.
    for evil in [
        "//evil.com",
        "/\\evil.com",
        "https:evil.com",
        "https://evil.com/",
    ] {
        for route in [
            "/_/auth/api/login?provider=idp&redirect=",
            "/_/auth/api/logout?returnTo=",
        ] {
            let url = format!("{}{}", server.url(route), urlencode(evil));
            let res = http.get(&url).send().await.expect("refused");
            assert_eq!(res.status().as_u16(), 400, "{route}{evil}");
            assert!(res.headers().get("location").is_none(), "{route}{evil}");
        }
    }

    // The login: to the provider with PKCE, state and nonce.
    let res = http
        .get(server.url("/_/auth/api/login?provider=idp&redirect=/echo/private"))
        .send()
        .await
        .expect("login");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    assert_eq!(status, 302, "{:?}", res.text().await);
    let authorize = location(&headers);
    assert!(authorize.starts_with(&idp.issuer), "{authorize}");
    for param in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "response_type=code",
    ] {
        assert!(authorize.contains(param), "{param} in {authorize}");
    }
    let flow = set_cookies(&headers);
    let flow_cookie = format!("buntime_auth_flow={}", flow["buntime_auth_flow"]);
    let back = at_the_provider(&authorize, &callback, "ana").await;
    assert!(back.contains("code="), "{back}");

    // A tampered state is refused (and does not use up the login).
    let state = back
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("state="))
        .expect("state")
        .to_owned();
    let tampered = back.replace(&format!("state={state}"), &format!("state={state}x"));
    let res = http
        .get(&tampered)
        .header("cookie", &flow_cookie)
        .send()
        .await
        .expect("tampered");
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "STATE_INVALID");

    // The callback: a session cookie, HttpOnly, SameSite=Lax, not Secure
    // over plain HTTP, and back to where the browser was going.
    let res = http
        .get(&back)
        .header("cookie", &flow_cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(res.status().as_u16(), 302, "{:?}", res.text().await);
    assert_eq!(location(res.headers()), "/echo/private");
    let raw: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let session = raw
        .iter()
        .find(|c| c.starts_with("buntime_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "{session}");
    let cookie = session.split(';').next().expect("pair").to_owned();

    // Replaying the callback finds no login in progress.
    let res = http
        .get(&back)
        .header("cookie", &flow_cookie)
        .send()
        .await
        .expect("replay");
    assert_eq!(res.status().as_u16(), 400);

    // A provider's refusal is the browser's 401.
    let res = http
        .get(format!(
            "{callback}?error=access_denied&error_description=no"
        ))
        .header("cookie", &flow_cookie)
        .send()
        .await
        .expect("refused login");
    assert_eq!(res.status().as_u16(), 401);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "LOGIN_FAILED");

    // The session is the identity of later requests.
    let (status, id) = app_identity(&server, &cookie).await;
    assert_eq!(status, 200);
    let id = id.expect("X-Identity");
    assert_eq!(id["sub"], "ana");
    assert_eq!(id["provider"], "idp");
    assert_eq!(id["claims"]["iss"], idp.issuer.as_str());
    let me: Value = http
        .get(server.url("/_/auth/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    assert_eq!(me["sub"], "ana");

    // Logout ends it and hands the browser to the provider's logout.
    let res = http
        .get(server.url("/_/auth/api/logout?returnTo=/bye"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status().as_u16(), 302);
    let to = location(res.headers());
    assert!(
        to.starts_with(&format!("{}/session/end?", idp.issuer)),
        "{to}"
    );
    assert!(to.contains("id_token_hint="), "{to}");
    assert_eq!(set_cookies(res.headers())["buntime_session"], "");
    let (status, id) = app_identity(&server, &cookie).await;
    assert_eq!(status, 401);
    assert!(id.is_none());
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `POST path` with a JSON body: status, headers, body.
pub(super) async fn post_json(
    server: &TestServer,
    path: &str,
    body: Value,
) -> (u16, HeaderMap, Value) {
    let res = manual()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

pub(super) fn session_cookie(headers: &HeaderMap) -> String {
    format!(
        "buntime_session={}",
        set_cookies(headers)["buntime_session"]
    )
}

#[tokio::test]
async fn email_password_sign_up_login_and_the_attempt_limit() {
    // The test client is its own trusted proxy, to tell the server when the
    // client used HTTPS.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("mkdir");
    echo(dir.path());
    let authn = json!({
        "providers": [
            {"type": "email-password", "name": "local", "signUp": true,
             "minPasswordLength": 8, "maxAttemptsPerAccount": 3, "defaultRoles": ["member"]},
            {"type": "email-password", "name": "closed"}
        ]
    });
    config(
        dir.path(),
        &json!({ "plugins": [[AUTHN, authn]] }).to_string(),
    );
    let policy = AccessPolicy {
        trusted_proxies: TrustedProxies::parse("127.0.0.1").expect("proxies"),
        ..AccessPolicy::default()
    };
    let server = TestServer::try_start_with_access(dir, buntime::plugins::embedded(), policy)
        .await
        .expect("server with the authn plugin");

    // Over HTTPS (as the proxy reports it) the session cookie is Secure.
    let res = manual()
        .post(server.url("/_/auth/api/signup"))
        .header("x-forwarded-for", "203.0.113.5")
        .header("x-forwarded-proto", "https")
        .json(&json!({"email": "carol@example.com", "password": "carol's password"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(res.status().as_u16(), 201);
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .expect("a cookie");
    assert!(cookie.ends_with("; Secure"), "{cookie}");

    // Sign-up makes the account and a session.
    let (status, headers, id) = post_json(
        &server,
        "/_/auth/api/signup",
        json!({"email": "Ana@Example.com", "password": "correct horse", "name": "Ana"}),
    )
    .await;
    assert_eq!(status, 201, "{id}");
    assert_eq!(id["sub"], "ana@example.com");
    assert_eq!(id["roles"], json!(["member"]));
    let signed_up = session_cookie(&headers);
    let (status, app) = app_identity(&server, &signed_up).await;
    assert_eq!(status, 200);
    assert_eq!(app.expect("identity")["provider"], "local");
    for (body, want) in [
        (
            json!({"email": "ana@example.com", "password": "another one"}),
            409,
        ),
        (
            json!({"email": "bob@example.com", "password": "short"}),
            400,
        ),
        (
            json!({"email": "not-an-email", "password": "long enough"}),
            400,
        ),
        (
            json!({"provider": "closed", "email": "c@example.com", "password": "long enough"}),
            403,
        ),
    ] {
        let (status, _, answer) = post_json(&server, "/_/auth/api/signup", body.clone()).await;
        assert_eq!(status, want, "{body}: {answer}");
    }

    // Login: the right password makes a new session and ends the one the
    // browser held; a wrong password and an unknown account get the same
    // answer.
    let res = manual()
        .post(server.url("/_/auth/api/login"))
        .header("cookie", &signed_up)
        .json(&json!({"email": "ana@example.com", "password": "correct horse"}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status().as_u16(), 200);
    let headers = res.headers().clone();
    assert_ne!(session_cookie(&headers), signed_up);
    assert_eq!(app_identity(&server, &signed_up).await.0, 401);
    let (status, app) = app_identity(&server, &session_cookie(&headers)).await;
    assert_eq!(
        (status, app.expect("identity")["sub"].clone()),
        (200, json!("ana@example.com"))
    );
    let (wrong, _, wrong_body) = post_json(
        &server,
        "/_/auth/api/login",
        json!({"email": "ana@example.com", "password": "wrong horse"}),
    )
    .await;
    let (unknown, _, unknown_body) = post_json(
        &server,
        "/_/auth/api/login",
        json!({"email": "nobody@example.com", "password": "wrong horse"}),
    )
    .await;
    assert_eq!((wrong, unknown), (401, 401));
    assert_eq!(wrong_body["code"], "INVALID_CREDENTIALS");
    assert_eq!(wrong_body["message"], unknown_body["message"]);

    // A login posted from another site is refused (login CSRF).
    let res = manual()
        .post(server.url("/_/auth/api/login"))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=ana%40example.com&password=correct+horse")
        .send()
        .await
        .expect("cross-site");
    assert_eq!(res.status().as_u16(), 403);

    // A form post is sent on to its (checked) redirect.
    let res = manual()
        .post(server.url("/_/auth/api/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=ana%40example.com&password=correct+horse&redirect=%2Fecho%2Fhome")
        .send()
        .await
        .expect("form");
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(location(res.headers()), "/echo/home");

    // Three attempts per account in the window, under concurrency too:
    // exactly three of six concurrent tries are checked, the rest limited.
    let (status, _, _) = post_json(
        &server,
        "/_/auth/api/signup",
        json!({"email": "bob@example.com", "password": "bob's password"}),
    )
    .await;
    assert_eq!(status, 201);
    let tries = (0..6).map(|_| {
        post_json(
            &server,
            "/_/auth/api/login",
            json!({"email": "bob@example.com", "password": "guess"}),
        )
    });
    let mut statuses: Vec<u16> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .map(|(s, _, _)| s)
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    // Even the right password waits now.
    let (status, headers, _) = post_json(
        &server,
        "/_/auth/api/login",
        json!({"email": "bob@example.com", "password": "bob's password"}),
    )
    .await;
    assert_eq!(status, 429);
    assert!(headers.get("retry-after").is_some());
}
