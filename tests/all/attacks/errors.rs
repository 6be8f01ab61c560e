//! Errors don't leak the server: in production (`RUNTIME_ENV=production`)
//! a client-facing error carries a generic message, its code and the
//! request id — no temp dir paths, no trap text; elsewhere the details stay.

use std::path::Path;

use buntime::server::ErrorDetail;
use serde_json::Value;

use super::framing::{Act, At, Guest, Server, app, plugin};

/// A trapping app, an app whose module file is missing, an app whose module
/// is not WebAssembly, an app with an invalid worker.jsonc, a plugin route
/// that traps and a plugin that cannot load.
fn hostile(root: &Path) {
    let invalid = root.join("apps/invalid");
    std::fs::create_dir_all(&invalid).expect("mkdir");
    std::fs::write(invalid.join("worker.jsonc"), r#"{ "tll": 1 }"#).expect("worker.jsonc");
    let rotten = root.join("plugins/rotten");
    std::fs::create_dir_all(&rotten).expect("mkdir");
    std::fs::write(
        rotten.join("manifest.jsonc"),
        r#"{ "name": "rotten", "version": "1.0.0" }"#,
    )
    .expect("manifest");
    std::fs::write(rotten.join("plugin.wasm"), "not a module").expect("plugin.wasm");
    app(
        root,
        "trap",
        &Guest::default().export("handle", Act::Trap),
        None,
    );
    let gone = root.join("apps/gone");
    std::fs::create_dir_all(&gone).expect("mkdir");
    std::fs::write(
        gone.join("worker.jsonc"),
        r#"{ "entrypoint": "missing.wasm" }"#,
    )
    .expect("worker.jsonc");
    let broken = root.join("apps/broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    std::fs::write(broken.join("app.wasm"), "not a module").expect("app.wasm");
    let stream = r#"{"status":200,"events":["t.*"],"poll":{"function":"explode","intervalMs":50}}"#;
    let crashy = Guest::default()
        .branches(
            "handle",
            vec![
                (Some((At::Start(25), b's')), Act::Output(stream.into())),
                (None, Act::Trap),
            ],
        )
        .export("explode", Act::Trap);
    plugin(
        root,
        "crashy",
        r#""base": "crashy", "capabilities": {"events": {"subscribe": ["t.*"]}}"#,
        &crashy,
    );
}

/// Each failing route, its status and its code: a guest that fails at run
/// time is a bad gateway, an app that cannot be loaded a server error.
const PATHS: [(&str, u16, &str); 5] = [
    ("/trap/", 502, "APP_FAILED"),
    ("/invalid/", 500, "APP_CONFIG_INVALID"),
    ("/gone/", 500, "APP_EMPTY"),
    ("/broken/", 500, "APP_LOAD_FAILED"),
    ("/_/crashy/x", 502, "PLUGIN_FAILED"),
];

/// The text of `/_/crashy/s`, an event stream whose producer traps, up to
/// its `error` event.
async fn failed_stream(server: &Server) -> String {
    use futures_util::StreamExt as _;
    let res = reqwest::get(server.url("/_/crashy/s"))
        .await
        .expect("request");
    let mut stream = res.bytes_stream();
    let mut seen = String::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: error") && seen.ends_with("\n\n") {
                break;
            }
        }
    })
    .await;
    assert!(seen.contains("event: error"), "no error event: {seen:?}");
    seen
}

/// Readiness once the worker dir is gone.
async fn unready(server: &Server) -> (u16, String, Value) {
    std::fs::remove_dir_all(server.dir.path().join("apps")).expect("remove apps");
    server.get("/_/api/health/ready").await
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_errors_carry_no_paths_or_internals() {
    let server = Server::start(ErrorDetail::Hidden, hostile).await;
    let root = server.dir.path().to_string_lossy().into_owned();
    for (path, want, code) in PATHS {
        let (status, id, body) = server.get(path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert_eq!(body["code"], code, "{path}: {body}");
        assert_eq!(body["requestId"], id.as_str(), "{path}: {body}");
        let text = body.to_string();
        assert!(
            !text.contains(&root),
            "{path} leaks the server's path: {text}"
        );
        let lower = text.to_lowercase();
        for internal in ["wasm", "backtrace", "unreachable", "trap", ".jsonc"] {
            assert!(
                !lower.contains(internal),
                "{path} leaks `{internal}`: {text}"
            );
        }
        assert!(
            message(&body).contains(&id),
            "{path}: the message names the request id: {text}"
        );
    }
    // The listings name no server path either.
    // Each lists its failure: the invalid app, the rotten plugin.
    for (path, failed) in [("/_/api/apps", "invalid"), ("/_/api/plugins", "rotten")] {
        let (status, _, body) = server.get(path).await;
        assert_eq!(status, 200, "{path}");
        let text = body.to_string();
        assert!(
            !text.contains(&root),
            "{path} leaks the server's path: {text}"
        );
        assert!(text.contains(failed), "{path}: {text}");
    }
    let streamed = failed_stream(&server).await;
    assert!(
        !streamed.contains("unreachable") && !streamed.contains("wasm"),
        "{streamed}"
    );
    // Errors a client can act on stay as they are.
    let (status, _, body) = server.get("/no-such-app/").await;
    assert_eq!(status, 404);
    assert!(message(&body).contains("no-such-app"), "{body}");
    let (status, _, body) = unready(&server).await;
    assert_eq!(status, 503);
    assert!(!body.to_string().contains(&root), "{body}");
    assert_eq!(body["unreadableWorkerDirs"][0], "RUNTIME_WORKER_DIRS[0]");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_production_errors_keep_their_details() {
    let server = Server::start(ErrorDetail::Full, hostile).await;
    let root = server.dir.path().to_string_lossy().into_owned();
    let details = [
        ("/trap/", "unreachable"),
        ("/invalid/", "unknown field `tll`"),
        ("/gone/", root.as_str()),
        ("/broken/", "not a valid WebAssembly module"),
        ("/_/crashy/x", "unreachable"),
    ];
    for ((path, want, code), (_, detail)) in PATHS.iter().zip(details) {
        let (status, id, body) = server.get(path).await;
        assert_eq!(status, *want, "{path}: {body}");
        assert_eq!(body["code"], *code, "{path}: {body}");
        assert_eq!(body["requestId"], id.as_str(), "{path}: {body}");
        assert!(
            message(&body).contains(detail),
            "{path}: `{detail}` missing: {body}"
        );
    }
    let streamed = failed_stream(&server).await;
    assert!(streamed.contains("unreachable"), "{streamed}");
    for path in ["/_/api/apps", "/_/api/plugins"] {
        let (_, _, body) = server.get(path).await;
        assert!(
            body.to_string().contains(&root),
            "{path} shows dirs and reasons: {body}"
        );
    }
    let (status, _, body) = unready(&server).await;
    assert_eq!(status, 503);
    assert!(body.to_string().contains(&root), "{body}");
    server.stop().await;
}
