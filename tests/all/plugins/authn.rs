//! The authn core plugin end to end against a real OpenID provider
//! (`oidc-provider`, `fixtures/oidc/provider.mjs`, started on loopback):
//! its access tokens pass and carry the identity to the app; expired,
//! not-yet-valid, wrong-issuer, wrong-audience, tampered, unsigned, HS256
//! signed with the public key, and unknown-key tokens are 401 with their
//! reason in the log; key rotation at the provider is picked up, and made-up
//! key ids refetch the key set at most once per `refreshSeconds`; public
//! routes, browsers and the plugin's own routes; apps' `publicRoutes`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{config, echo, seen_header};
use crate::attacks::kernel::limits::log_counter;
use crate::server::{TestServer, client, install_echo};

pub(super) const AUTHN: &str = "@buntime/plugin-authn";

/// The OpenID provider process; killed on drop.
pub(super) struct Provider {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub(super) issuer: String,
}

impl Provider {
    pub(super) fn start() -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "fixtures/oidc/node_modules is missing: run `./x setup` (npm ci in fixtures/oidc)"
        );
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs fixtures/oidc/provider.mjs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut provider = Self {
            child,
            stdin,
            stdout,
            issuer: String::new(),
        };
        let hello = provider.answer();
        provider.issuer = hello["issuer"].as_str().expect("issuer").to_owned();
        provider
    }

    /// The next protocol line (oidc-provider's own notices are skipped).
    fn answer(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("read the provider");
            assert!(n > 0, "the provider exited");
            if line.starts_with('{') {
                return serde_json::from_str(&line).expect("JSON answer");
            }
        }
    }

    pub(super) fn command(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").expect("write a command");
        self.stdin.flush().expect("flush");
        let answer = self.answer();
        assert!(answer.get("error").is_none(), "{cmd}: {answer}");
        answer
    }

    /// An access token from the provider's own token endpoint.
    fn token(&mut self) -> String {
        self.command(json!({"cmd": "token"}))["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// A token signed here (see provider.mjs).
    fn mint(&mut self, claims: Value, key: &str) -> String {
        self.command(json!({"cmd": "mint", "claims": claims, "key": key}))["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) async fn start(authn: Value) -> TestServer {
    TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        echo(root);
        install_echo(
            &root.join("apps"),
            "docs",
            Some(r#"{ "ttl": "1m", "publicRoutes": { "GET": ["/guide/**"] } }"#),
        );
        config(root, &json!({ "plugins": [[AUTHN, authn]] }).to_string());
    })
    .await
    .expect("server with the authn plugin")
}

fn settings(issuer: &str) -> Value {
    json!({
        "providers": [{
            "name": "test-idp",
            "issuer": issuer,
            "audience": "urn:buntime:api",
            "clientId": "buntime",
            "refreshSeconds": 1
        }],
        "publicRoutes": { "echo": { "GET": ["/public/**"] } }
    })
}

/// `GET path` with optional bearer token and accept header: status, headers, body.
async fn get(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    accept: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().get(server.url(path)).header("accept", accept);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn identity(server: &TestServer, token: &str) -> (u16, Option<Value>) {
    let (status, _, body) = get(server, "/echo/private", Some(token), "application/json").await;
    let id = seen_header(&body, "x-identity").map(|h| serde_json::from_str(&h).expect("JSON"));
    (status, id)
}

#[tokio::test]
async fn provider_tokens_pass_and_bad_tokens_are_refused() {
    let log = log_counter();
    let mut idp = Provider::start();
    let server = start(settings(&idp.issuer)).await;

    // A real access token from the provider (client_credentials, JWT format).
    let token = idp.token();
    let (status, id) = identity(&server, &token).await;
    assert_eq!(status, 200);
    let id = id.expect("the app sees X-Identity");
    assert_eq!(id["sub"], "buntime");
    assert_eq!(id["name"], "Machine Client");
    assert_eq!(id["provider"], "test-idp");
    assert_eq!(id["roles"], json!(["reader", "writer", "app-admin"]));
    assert_eq!(id["groups"], json!(["ops"]));
    assert_eq!(id["claims"]["iss"], idp.issuer.as_str());

    // A client-supplied X-Identity never reaches the app.
    let res = client()
        .get(server.url("/echo/public/x"))
        .header("x-identity", r#"{"sub":"forged"}"#)
        .send()
        .await
        .expect("request");
    let body: Value = res.json().await.expect("json");
    assert_eq!(seen_header(&body, "x-identity"), None);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // Each refusal is logged with its reason.
    let bad = [
        (
            "expired",
            "expired",
            idp.mint(json!({"exp": now - 3600, "iat": now - 7200}), "current"),
        ),
        (
            "not yet valid",
            "not_yet_valid",
            idp.mint(json!({"nbf": now + 3600}), "current"),
        ),
        (
            "wrong issuer",
            "wrong_issuer",
            idp.mint(json!({"iss": "http://evil.example"}), "current"),
        ),
        (
            "wrong audience",
            "wrong_audience",
            idp.mint(json!({"aud": "urn:other"}), "current"),
        ),
        (
            "no exp",
            "missing_claim",
            idp.mint(json!({"exp": null}), "current"),
        ),
        ("alg none", "alg_none", idp.mint(json!({}), "none")),
        (
            "HS256 with the public key",
            "algorithm_not_allowed",
            idp.mint(json!({}), "hs-public"),
        ),
        (
            "unknown kid",
            "unknown_kid",
            idp.mint(json!({}), "stranger"),
        ),
        (
            "tampered payload",
            "bad_signature",
            idp.command(json!({"cmd": "tamper", "token": token}))["token"]
                .as_str()
                .expect("token")
                .to_owned(),
        ),
        ("garbage", "malformed", "a.b.c".to_owned()),
    ];
    // A minted token that is valid passes (the negatives differ in one thing).
    let good = idp.mint(json!({}), "current");
    assert_eq!(identity(&server, &good).await.0, 200);
    for (i, (what, reason, token)) in bad.iter().enumerate() {
        let path = format!("/echo/private/refused-{i}");
        let (status, headers, body) = get(&server, &path, Some(token), "application/json").await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["code"], "TOKEN_INVALID", "{what}");
        assert!(
            headers
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().unwrap_or("").contains("invalid_token")),
            "{what}"
        );
        // The line is written before the answer leaves the plugin.
        let lines = log.lines_containing(&format!("GET {path} "));
        assert!(
            lines.iter().any(|l| l.contains(&format!("({reason})"))),
            "{what}: no `({reason})` in {lines:?}"
        );
    }
}

#[tokio::test]
async fn key_rotation_is_picked_up() {
    let mut idp = Provider::start();
    let server = start(settings(&idp.issuer)).await;
    assert_eq!(identity(&server, &idp.token()).await.0, 200);

    idp.command(json!({"cmd": "rotate"}));
    let rotated = idp.token();
    // The new key id is unknown to the cached set: refetched at most once a
    // second (refreshSeconds: 1), so it passes within a few tries.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, id) = identity(&server, &rotated).await;
        if status == 200 {
            assert_eq!(id.expect("identity")["sub"], "buntime");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated key was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_key_set_at_most_once_per_refresh_interval() {
    let mut idp = Provider::start();
    let server = start(settings(&idp.issuer)).await;
    let fetches = |idp: &mut Provider| {
        idp.command(json!({"cmd": "stats"}))["jwksFetches"]
            .as_u64()
            .expect("count")
    };
    assert_eq!(identity(&server, &idp.token()).await.0, 200);
    let before = fetches(&mut idp);
    assert_eq!(before, 1, "the first token fetches the set once");

    // Tokens with made-up key ids: each one is refused, and the set is
    // fetched again at most once per `refreshSeconds` (1 s here), however
    // many of them come.
    let stranger = idp.mint(json!({}), "stranger");
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(identity(&server, &stranger).await.0, 401);
    }
    let elapsed = started.elapsed().as_secs();
    let refetched = fetches(&mut idp) - before;
    assert!(
        refetched <= elapsed + 1,
        "{refetched} refetches in {elapsed} s of unknown key ids"
    );
    assert!(refetched < 20, "every unknown kid refetched the set");
}

#[tokio::test]
async fn anonymous_requests_public_routes_and_the_plugin_routes() {
    let mut idp = Provider::start();
    let server = start(settings(&idp.issuer)).await;

    // No token: JSON clients get a 401, browsers the login page.
    let (status, _, body) = get(&server, "/echo/private", None, "application/json").await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "AUTHENTICATION_REQUIRED");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = no_redirects
        .get(server.url("/echo/private?a=1"))
        .header("accept", "text/html,*/*;q=0.8")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 302);
    assert_eq!(
        res.headers()["location"],
        "/_/auth/login?redirect=/echo/private%3Fa%3D1"
    );
    let page = client()
        .get(server.url("/_/auth/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("/_/auth/login.js")
    );
    // The page lists the providers the API names.
    let (status, _, body) = get(&server, "/_/auth/api/providers", None, "application/json").await;
    assert_eq!(status, 200);
    assert!(body.to_string().contains("test-idp"), "{body}");

    // The app's public routes need nothing; only for the methods listed.
    let (status, _, _) = get(&server, "/echo/public/page", None, "application/json").await;
    assert_eq!(status, 200);
    let post = client()
        .post(server.url("/echo/public/page"))
        .send()
        .await
        .expect("post");
    assert_eq!(post.status().as_u16(), 401);
    // The client resolves the `..`: the private route, which needs a token.
    let (status, _, body) = get(&server, "/echo/public/../private", None, "application/json").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "AUTHENTICATION_REQUIRED", "{body}");

    // An app's own publicRoutes (its worker.jsonc) count too.
    let (status, _, body) = get(&server, "/docs/guide/intro", None, "application/json").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = get(&server, "/docs/admin", None, "application/json").await;
    assert_eq!(status, 401);

    // The plugin's API: providers, and the session of the token sent.
    let (status, _, body) = get(&server, "/_/auth/api/providers", None, "application/json").await;
    assert_eq!(status, 200);
    assert_eq!(body["providers"][0]["name"], "test-idp");
    let (status, _, _) = get(&server, "/_/auth/api/session", None, "application/json").await;
    assert_eq!(status, 401);
    let token = idp.token();
    let (status, _, body) = get(
        &server,
        "/_/auth/api/session",
        Some(&token),
        "application/json",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sub"], "buntime");
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let mut idp = Provider::start();
    // The provider says it is http://127.0.0.1:<port>; configured as localhost.
    let issuer = idp.issuer.replace("127.0.0.1", "localhost");
    let server = start(settings(&issuer)).await;
    let token = idp.token();
    let (status, _, body) = get(&server, "/echo/private", Some(&token), "application/json").await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn api_keys_identify_machine_clients() {
    // printf %s k-machine-1 | sha256sum
    let digest = "b8ee3efd3884f4804294d0c3bbc53eeac2e0e348aa14b2dbec543f6fe9b63a52";
    let server = start(json!({
        "providers": [{
            "type": "apiKeys",
            "name": "machines",
            "keys": [{ "name": "ci", "sha256": digest, "roles": ["deployer"] }]
        }]
    }))
    .await;
    for (header, value) in [
        ("x-api-key", "k-machine-1"),
        ("authorization", "Bearer k-machine-1"),
    ] {
        let res = client()
            .get(server.url("/echo/private"))
            .header(header, value)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 200, "{header}");
        let body: Value = res.json().await.expect("json");
        let id: Value = serde_json::from_str(&seen_header(&body, "x-identity").expect("identity"))
            .expect("JSON");
        assert_eq!(id["sub"], "apikey:ci");
        assert_eq!(id["roles"], json!(["deployer"]));
        assert_eq!(id["provider"], "machines");
        // The key itself never reaches the app.
        assert_eq!(seen_header(&body, header), None);
    }
    let res = client()
        .get(server.url("/echo/private"))
        .header("x-api-key", "k-machine-2")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 401);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "TOKEN_INVALID");
}

#[tokio::test]
async fn a_key_set_outside_the_crypto_grant_is_denied() {
    let mut idp = Provider::start();
    let issuer = idp.issuer.clone();
    // The operator narrows the grant to public HTTPS: the loopback provider
    // is out of it.
    let server = TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        echo(root);
        let entry = json!({
            "name": AUTHN,
            "config": settings(&issuer),
            "capabilities": { "crypto": { "jwks": ["https://*:*"] } }
        });
        config(root, &json!({ "plugins": [entry] }).to_string());
    })
    .await
    .expect("server with the authn plugin");
    let token = idp.token();
    let (status, _, body) = get(&server, "/echo/private", Some(&token), "application/json").await;
    assert_eq!(status, 401, "{body}");
    let metrics: Value = client()
        .get(server.url("/_/metrics"))
        .send()
        .await
        .expect("metrics")
        .json()
        .await
        .expect("json");
    assert!(
        metrics["engine"]["denialsByCapability"]["crypto"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{metrics:#}"
    );
}
