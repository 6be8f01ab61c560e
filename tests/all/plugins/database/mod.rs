//! `@buntime/plugin-database`, the embedded core plugin, end to end: its
//! routes under `/_/database/api/*` over the host's SQLite files in
//! `dir/data`, configured through `buntime.jsonc`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{config, expect_error, kit, loaded, not_loaded, plugins};
use crate::server::{TestServer, client, get};

const NAME: &str = "@buntime/plugin-database";
const KEYVAL: &str = "@buntime/plugin-keyval";

/// The database plugin alone, with the query endpoint open. (Keyval, the
/// other core plugin, is turned off so that it keeps no tables of its own in
/// `default`; it is not needed: see
/// `the_database_plugin_needs_no_other_plugin`.)
const QUERY_ON: &str = r#"{ "plugins": [
  ["@buntime/plugin-database", { "query": true }],
  { "name": "@buntime/plugin-keyval", "enabled": false }
] }"#;

/// `buntime.jsonc` with the database plugin configured by `config` (a JSON
/// object) and keyval off.
fn database_config(config: &str) -> String {
    format!(
        r#"{{ "plugins": [["@buntime/plugin-database", {config}], {{ "name": "{KEYVAL}", "enabled": false }}] }}"#
    )
}

/// A server with the core plugins and, when given, this `buntime.jsonc`.
async fn start(buntime_jsonc: Option<&str>) -> TestServer {
    TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        if let Some(text) = buntime_jsonc {
            config(root, text);
        }
    })
    .await
    .expect("server with the core plugins")
}

fn api(server: &TestServer, path: &str) -> String {
    server.url(&format!("/_/database/api{path}"))
}

/// Status and JSON body of `res`, after checking it is JSON.
async fn json_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/json", "status {status}");
    let body = res.json().await.expect("a JSON body");
    (status, body)
}

async fn get_json(server: &TestServer, path: &str) -> (u16, Value) {
    json_of(get(&api(server, path)).await).await
}

async fn post_json(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    json_of(
        client()
            .post(api(server, path))
            .json(body)
            .send()
            .await
            .expect("request"),
    )
    .await
}

/// `POST /api/query` (with `query` appended to the URL) that must succeed.
async fn sql(server: &TestServer, query: &str, statement: &str) -> Value {
    let (status, body) = post_json(
        server,
        &format!("/query{query}"),
        &json!({ "sql": statement }),
    )
    .await;
    assert_eq!(status, 200, "{statement}: {body}");
    body
}

/// `GET /api/tables` with `query`, as the list of names.
async fn tables(server: &TestServer, query: &str) -> Value {
    let (status, body) = get_json(server, &format!("/tables{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["tables"].clone()
}

/// Every file under `dir` whose name contains `.db`, relative to `dir`.
fn db_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(".db") {
                out.push(path.strip_prefix(dir).expect("under dir").to_owned());
            }
        }
    }
    out.sort();
    out
}

mod configuration;
mod tables;
mod tenants;
