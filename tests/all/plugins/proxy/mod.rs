//! The proxy plugin and the host-executed proxy end to end, against an
//! upstream written here (axum on loopback): streamed bodies both ways,
//! forwarded and hop-by-hop headers, failures mapped to 502/504, the
//! `upstream` grant, WebSocket relaying over HTTP/1.1 and HTTP/2 (against a
//! tokio-tungstenite echo),
//! kept-alive upstream connections, and the rules (static, dynamic,
//! identity, order).

mod host;
mod pool;
mod rules;
mod table;
mod ws;
mod ws_h2;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::{config, kit};
use crate::server::TestServer;

pub(crate) const PROXY: &str = "@buntime/plugin-proxy";
/// One MiB.
pub(crate) const MIB: usize = 1 << 20;

/// What the upstream's handlers share with the test.
#[derive(Clone)]
pub(crate) struct Upstream {
    /// Bytes `/upload` has received so far.
    pub received: watch::Sender<u64>,
    /// Lets `/download` send the rest of its body.
    pub go: Arc<Notify>,
}

/// Starts the upstream on loopback: its address and its shared state.
///
/// - `/echo/*`: `{method, path, query, headers}` as received, with
///   response headers `x-upstream: 1` and `proxy-authenticate` (hop-by-hop);
/// - `POST /upload`: counts the body as it arrives, answers `{"received"}`;
/// - `GET /download?mib=N`: 1 MiB, then (after `go`) N-1 MiB more;
/// - `/slow`: never answers.
pub(crate) async fn upstream() -> (SocketAddr, Upstream) {
    let shared = Upstream {
        received: watch::channel(0).0,
        go: Arc::new(Notify::new()),
    };
    let app = Router::new()
        .route("/echo/{*rest}", any(echo))
        .route("/upload", post(upload))
        .route("/download", get(download))
        .route("/slow", any(std::future::pending::<&'static str>))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shared)
}

async fn echo(req: Request) -> Response {
    let headers: Vec<Value> = req
        .headers()
        .iter()
        .map(|(k, v)| json!([k.as_str(), v.to_str().unwrap_or("?")]))
        .collect();
    let body = json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers,
    });
    (
        [("x-upstream", "1"), ("proxy-authenticate", "Basic")],
        axum::Json(body),
    )
        .into_response()
}

async fn upload(State(up): State<Upstream>, body: Body) -> Response {
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return (axum::http::StatusCode::BAD_REQUEST, "broken body").into_response();
        };
        n += chunk.len() as u64;
        up.received.send_replace(n);
    }
    axum::Json(json!({ "received": n })).into_response()
}

async fn download(State(up): State<Upstream>, req: Request) -> Response {
    let mib: usize = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("mib="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let first =
        futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from(vec![7u8; MIB])) });
    let go = up.go.clone();
    let rest = futures_util::stream::once(async move {
        go.notified().await;
    })
    .flat_map(move |()| {
        futures_util::stream::iter((1..mib).map(|_| Ok(Bytes::from(vec![7u8; MIB]))))
    });
    Body::from_stream(first.chain(rest)).into_response()
}

/// A server with the proxy plugin configured with `proxy` (plus its
/// `capabilities` narrowing when given), after a kit plugin that copies
/// `x-test-identity` into `x-identity` and marks responses `x-kit: seen`.
pub(crate) async fn start(proxy: Value, capabilities: Option<Value>) -> TestServer {
    TestServer::try_start_plugins(buntime::plugins::embedded(), |root: &Path| {
        setup(root, proxy, capabilities)
    })
    .await
    .expect("server with the proxy plugin")
}

/// [`start`] (no narrowing) under connection `limits`.
pub(crate) async fn start_limited(
    proxy: Value,
    limits: buntime::server::ConnectionLimits,
) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["apps", "plugins"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    setup(dir.path(), proxy, None);
    TestServer::plugins_limited(
        dir,
        buntime::plugins::embedded(),
        Default::default(),
        |s| s,
        limits,
    )
    .await
    .expect("server with the proxy plugin")
}

/// The plugins of [`start`], written under `root`.
pub(crate) fn setup(root: &Path, proxy: Value, capabilities: Option<Value>) {
    kit(root, "identity", "");
    let mut entry = json!({ "name": PROXY, "config": proxy });
    if let Some(c) = capabilities {
        entry["capabilities"] = c;
    }
    config(
        root,
        &json!({ "plugins": [
            ["identity", {
                "copyHeader": "x-test-identity=x-identity",
                "responseHeader": "x-kit=seen",
            }],
            entry,
            // Not needed here; off, they are not compiled for each test.
            { "name": "@buntime/plugin-keyval", "enabled": false },
            { "name": "@buntime/plugin-database", "enabled": false },
        ] })
        .to_string(),
    );
}

/// A public static rule from `pattern` to `target`, with `extra` fields.
pub(crate) fn rule(pattern: &str, target: &str, extra: Value) -> Value {
    let mut r = json!({ "pattern": pattern, "target": target, "public": true });
    if let Some(map) = extra.as_object() {
        for (k, v) in map {
            r[k] = v.clone();
        }
    }
    r
}
