//! The deployments routes need the core API's app permissions:
//! `apps:read` to list, `apps:install` to deploy, `apps:remove` to delete.

use reqwest::Method;
use serde_json::json;

use super::config;
use super::deployments::{API, DEPLOYMENTS, echo_files, embedded, tar_gz};
use crate::security::{MASTER, create_key, expect, policy, remote, start as start_with};

#[tokio::test]
async fn the_routes_need_the_core_app_permissions() {
    let server = start_with(policy(Some(MASTER)), embedded(), |root| {
        config(root, &json!({ "plugins": [[DEPLOYMENTS, {}]] }).to_string());
    })
    .await;
    let reader = create_key(
        &server,
        MASTER,
        json!({"name": "r", "role": "custom", "permissions": ["apps:read"]}),
    )
    .await;
    let installer = create_key(
        &server,
        MASTER,
        json!({"name": "i", "role": "custom", "permissions": ["apps:install"]}),
    )
    .await;
    expect(remote(&server, Method::GET, API), 401, None).await;
    expect(
        remote(&server, Method::GET, API).header("x-api-key", &reader),
        200,
        None,
    )
    .await;
    let (wasm, worker) = echo_files();
    let archive = tar_gz(&[("worker.jsonc", &worker), ("app.wasm", &wasm)]);
    let body = expect(
        remote(&server, Method::POST, &format!("{API}/k/1.0.0"))
            .header("x-api-key", &reader)
            .body(archive.clone()),
        403,
        None,
    )
    .await;
    assert!(body.to_string().contains("apps:install"), "{body}");
    expect(
        remote(&server, Method::POST, &format!("{API}/k/1.0.0"))
            .header("x-api-key", &installer)
            .body(archive),
        201,
        None,
    )
    .await;
    let body = expect(
        remote(
            &server,
            Method::DELETE,
            &format!("{API}/k/1.0.0?force=true"),
        )
        .header("x-api-key", &installer),
        403,
        None,
    )
    .await;
    assert!(body.to_string().contains("apps:remove"), "{body}");
}
