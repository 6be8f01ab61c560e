//! Plugins end to end: fixture plugins on disk, `buntime.jsonc`, the real
//! server on loopback.

mod authn;
mod authn_browser;
mod authn_pages;
mod authz;
mod capabilities;
mod chain;
mod database;
mod deployments;
mod deployments_access;
mod deployments_upload;
mod deployments_versions;
mod failures;
mod gateway;
mod head_forms;
mod keyval;
mod keyval_compat;
mod keyval_streams;
mod loading;
mod logs;
mod metrics;
pub(crate) mod proxy;
mod reload;
mod state_memory;
mod vhosts;

use std::path::Path;

use buntime_fixtures as fx;
use serde_json::Value;

use crate::server::{TestServer, get, install_echo};

/// Installs a plugin dir `plugins/<dir>` with `manifest` and the module at `wasm`.
pub(crate) fn install_plugin(root: &Path, dir: &str, manifest: &str, wasm: &str) {
    let d = root.join("plugins").join(dir);
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join("manifest.jsonc"), manifest).expect("manifest");
    std::fs::copy(wasm, d.join("plugin.wasm")).expect("wasm");
}

/// Installs the configurable kit plugin as `name` with extra manifest fields.
pub(crate) fn kit(root: &Path, name: &str, extra: &str) {
    install_plugin(
        root,
        name,
        &format!(r#"{{ "name": "{name}", "version": "1.0.0", {extra} }}"#),
        fx::PLUGIN_KIT,
    );
}

/// Writes `buntime.jsonc`.
pub(crate) fn config(root: &Path, text: &str) {
    std::fs::write(root.join("buntime.jsonc"), text).expect("buntime.jsonc");
}

/// The echo app at `/echo`.
pub(crate) fn echo(root: &Path) {
    install_echo(&root.join("apps"), "echo", Some(r#"{ "ttl": "1m" }"#));
}

/// `GET /_/api/plugins`.
pub(crate) async fn plugins(server: &TestServer) -> Value {
    get(&server.url("/_/api/plugins"))
        .await
        .json()
        .await
        .expect("json")
}

/// The `notLoaded` entry for `name`.
pub(crate) fn not_loaded<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["notLoaded"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("`{name}` is not in notLoaded: {list:#}"))
}

/// The loaded entry for `name`.
pub(crate) fn loaded<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["plugins"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("`{name}` is not loaded: {list:#}"))
}

/// Polls the kit's `/_/<base>/state/<key>` route until the integer there
/// reaches `want` (or 10 s pass: by deadline, not by count, so a loaded
/// machine's slow polls do not cut the wait short); returns the last value
/// seen (0 if absent).
pub(crate) async fn wait_for_state(server: &TestServer, base: &str, key: &str, want: u64) -> u64 {
    let mut seen = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let res = get(&server.url(&format!("/_/{base}/state/{key}"))).await;
        if res.status() == 200 {
            seen = res.json::<Value>().await.expect("json")["value"]
                .as_u64()
                .unwrap_or(0);
            if seen >= want {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    seen
}

/// Asserts `res` is an error with `status` whose JSON `message` contains
/// `needle`; returns the body.
pub(crate) async fn expect_error(res: reqwest::Response, status: u16, needle: &str) -> Value {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.expect("json");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "`{needle}` not in {body}");
    body
}

/// The value of request header `name` as the echo app saw it (its JSON
/// answer lists the headers it received).
pub(crate) fn seen_header(echoed: &Value, name: &str) -> Option<String> {
    echoed["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
        .map(str::to_owned)
}
