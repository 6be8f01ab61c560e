//! Who may call what, end to end: API keys and roles on the core API,
//! plugin routes protected by default, the client's identity.
//!
//! The server binds loopback; a remote client is a request that a proxy
//! relayed: either through a trusted proxy (`RUNTIME_TRUSTED_PROXIES`
//! names 127.0.0.1 and `X-Forwarded-For` names a public address), or through
//! an untrusted one (a forwarding header from a peer nobody trusts), which
//! the server must not take for a local client either. Both go through the
//! same resolution the server applies to every request.

mod client;
mod keys;
mod plugin_routes;

use std::path::Path;

use buntime::access::AccessPolicy;
use buntime::config::{Secret, TrustedProxies};
use buntime::plugins::EmbeddedPlugin;
use serde_json::Value;

use crate::server::TestServer;

/// The master key of the tests that set one.
pub(crate) const MASTER: &str = "master-key-for-tests-0123456789";

/// The address remote clients have, as a trusted proxy reports it.
pub(crate) const REMOTE: &str = "203.0.113.7";

/// Settings with `127.0.0.1` as a trusted proxy and, if given, a master key.
pub(crate) fn policy(master: Option<&str>) -> AccessPolicy {
    AccessPolicy {
        master_key: master.map(Secret::new),
        trusted_proxies: TrustedProxies::parse("127.0.0.1").expect("proxies"),
        metrics_public: false,
        ..AccessPolicy::default()
    }
}

/// A server over `dir/apps`, `dir/plugins`, `dir/buntime.jsonc` and
/// `dir/data` under `policy`.
pub(crate) async fn start(
    policy: AccessPolicy,
    embedded: Vec<EmbeddedPlugin>,
    setup: impl FnOnce(&Path),
) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("apps")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("mkdir");
    setup(dir.path());
    restart(dir, policy, embedded).await
}

/// [`start`] over an existing dir.
pub(crate) async fn restart(
    dir: tempfile::TempDir,
    policy: AccessPolicy,
    embedded: Vec<EmbeddedPlugin>,
) -> TestServer {
    TestServer::try_start_with_access(dir, embedded, policy)
        .await
        .expect("server")
}

/// A request as a remote client makes it (relayed by the loopback proxy).
pub(crate) fn remote(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, server.url(path))
        .header("x-forwarded-for", REMOTE)
}

/// A request from this machine.
pub(crate) fn local(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    reqwest::Client::new().request(method, server.url(path))
}

/// Sends `req`; asserts the status and, for an error, its code.
pub(crate) async fn expect(req: reqwest::RequestBuilder, status: u16, code: Option<&str>) -> Value {
    let res = req.send().await.expect("request");
    let got = res.status().as_u16();
    let unauthorized = res.headers().contains_key("www-authenticate");
    let text = res.text().await.expect("body");
    assert_eq!(got, status, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if let Some(code) = code {
        assert_eq!(body["code"], code, "{text}");
    }
    assert_eq!(
        unauthorized,
        status == 401,
        "WWW-Authenticate on every 401 only"
    );
    body
}

/// Creates a key with `body` using `key`; returns the secret.
pub(crate) async fn create_key(server: &TestServer, key: &str, body: Value) -> String {
    let created = expect(
        local(server, reqwest::Method::POST, "/_/api/keys")
            .header("x-api-key", key)
            .json(&body),
        201,
        None,
    )
    .await;
    created["data"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key in {created}"))
        .to_owned()
}
