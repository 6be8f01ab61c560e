//! Errors don't leak the server: in production (`RUNTIME_ENV=production`)
//! a client-facing error carries a generic message, its code and the
//! request id — no temp dir paths, no trap text; elsewhere the details stay.

use std::path::Path;

use buntime::server::ErrorDetail;
use serde_json::Value;

use super::framing::{Act, Guest, Server, app, plugin};

/// A trapping app, an app whose module file is missing, an app whose module
/// is not WebAssembly, and a plugin route that traps.
fn hostile(root: &Path) {
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
    plugin(
        root,
        "crashy",
        r#""base": "crashy""#,
        &Guest::default().export("handle", Act::Trap),
    );
}

const PATHS: [(&str, &str); 4] = [
    ("/trap/", "APP_FAILED"),
    ("/gone/", "APP_EMPTY"),
    ("/broken/", "APP_LOAD_FAILED"),
    ("/_/crashy/x", "PLUGIN_FAILED"),
];

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_errors_carry_no_paths_or_internals() {
    let server = Server::start(ErrorDetail::Hidden, hostile).await;
    let root = server.dir.path().to_string_lossy().into_owned();
    for (path, code) in PATHS {
        let (status, id, body) = server.get(path).await;
        assert!(status >= 500, "{path}: {status} {body}");
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
    // Errors a client can act on stay as they are.
    let (status, _, body) = server.get("/no-such-app/").await;
    assert_eq!(status, 404);
    assert!(message(&body).contains("no-such-app"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_production_errors_keep_their_details() {
    let server = Server::start(ErrorDetail::Full, hostile).await;
    let root = server.dir.path().to_string_lossy().into_owned();
    let details = [
        ("/trap/", "unreachable"),
        ("/gone/", root.as_str()),
        ("/broken/", "not a valid WebAssembly module"),
        ("/_/crashy/x", "unreachable"),
    ];
    for ((path, code), (_, detail)) in PATHS.iter().zip(details) {
        let (status, id, body) = server.get(path).await;
        assert!(status >= 500, "{path}: {status} {body}");
        assert_eq!(body["code"], *code, "{path}: {body}");
        assert_eq!(body["requestId"], id.as_str(), "{path}: {body}");
        assert!(
            message(&body).contains(detail),
            "{path}: `{detail}` missing: {body}"
        );
    }
    server.stop().await;
}
