//! An app directory is a boundary: nothing an app's files or `worker.jsonc`
//! say can reach outside it (symlinks, `..`, absolute paths), and an app
//! cannot grant itself more than the operator's `apps.ceiling` in
//! `buntime.jsonc`.

#![cfg(unix)]

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::server::{TestServer, client, get};
use buntime_fixtures as fx;

const SECRET: &str = "top secret";

/// `root/secret.txt` (outside every app), `root/apps/other/private.txt`
/// (another app) and a static site `root/apps/site`.
fn install(root: &Path) {
    std::fs::write(root.join("secret.txt"), SECRET).expect("secret");
    std::fs::write(root.join("secret.html"), SECRET).expect("secret");
    let other = root.join("apps/other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("index.html"), "other app").expect("write");
    std::fs::write(other.join("private.txt"), SECRET).expect("write");
    std::fs::copy(fx::APP_ECHO, other.join("mod.wasm")).expect("copy");
    site(root, "site");
}

fn site(root: &Path, name: &str) -> std::path::PathBuf {
    let site = root.join("apps").join(name);
    std::fs::create_dir_all(site.join("assets")).expect("mkdir");
    std::fs::write(site.join("index.html"), "<html><body>spa</body></html>").expect("write");
    std::fs::write(site.join("assets/app.js"), "console.log('hi')").expect("write");
    site
}

fn echo(root: &Path, name: &str, worker: Option<&str>) {
    let dir = root.join("apps").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(fx::APP_ECHO, dir.join("app.wasm")).expect("copy wasm");
    if let Some(w) = worker {
        std::fs::write(dir.join("worker.jsonc"), w).expect("worker.jsonc");
    }
}

/// A GET with `accept-encoding` and the raw (undecoded) answer.
async fn fetch(server: &TestServer, path: &str, encoding: &str) -> (u16, String) {
    let res = client()
        .get(server.url(path))
        .header("accept-encoding", encoding)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.text().await.expect("text"))
}

/// Asserts `path` answers `status` with an error body that leaks nothing.
async fn refused(server: &TestServer, path: &str, status: u16) -> serde_json::Value {
    let (got, body) = fetch(server, path, "gzip, br").await;
    assert!(!body.contains(SECRET), "{path} leaked: {body}");
    assert_eq!(got, status, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_file_symlinked_out_of_the_app_is_a_404_that_says_nothing() {
    let server = TestServer::start_plugins(|root| {
        install(root);
        let site = root.join("apps/site");
        symlink(root.join("secret.txt"), site.join("abs.txt")).expect("symlink");
        symlink("../../secret.txt", site.join("assets/rel.txt")).expect("symlink");
        symlink("../other/private.txt", site.join("neighbour.txt")).expect("symlink");
        symlink("../other", site.join("neighbour")).expect("symlink");
    })
    .await;
    for path in [
        "/site/abs.txt",
        "/site/assets/rel.txt",
        "/site/neighbour.txt",
        "/site/neighbour/private.txt",
    ] {
        let body = refused(&server, path, 404).await;
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("outside") && !message.contains("symlink"),
            "{path}: the client is told why: {message}"
        );
    }
    assert_eq!(get(&server.url("/site/assets/app.js")).await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precompressed_sibling_symlinked_out_is_never_sent() {
    let server = TestServer::start_plugins(|root| {
        install(root);
        let assets = root.join("apps/site/assets");
        // Small and large originals: both paths of the static server.
        std::fs::write(assets.join("big.js"), "x".repeat(300 << 10)).expect("write");
        for file in ["app.js", "big.js"] {
            symlink(root.join("secret.txt"), assets.join(format!("{file}.gz"))).expect("symlink");
            symlink("../../other/private.txt", assets.join(format!("{file}.br"))).expect("symlink");
        }
    })
    .await;
    for encoding in ["gzip", "br", "gzip, br"] {
        let (status, body) = fetch(&server, "/site/assets/app.js", encoding).await;
        assert!(!body.contains(SECRET), "{encoding}: leaked {body}");
        assert_eq!(
            (status, body.as_str()),
            (200, "console.log('hi')"),
            "{encoding}"
        );
        let (status, body) = fetch(&server, "/site/assets/big.js", encoding).await;
        assert!(!body.contains(SECRET), "{encoding}: leaked a sibling");
        assert_eq!((status, body.len()), (200, 300 << 10), "{encoding}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spa_fallback_is_opened_inside_the_app_too() {
    let server = TestServer::start_plugins(install).await;
    let (status, body) = fetch(&server, "/site/client/route", "").await;
    assert_eq!((status, body.contains("spa")), (200, true), "{body}");
    // The entrypoint becomes a symlink out after the app was loaded: the
    // fallback opens it again, below the app dir, and refuses it.
    let index = server.dir.path().join("apps/site/index.html");
    std::fs::remove_file(&index).expect("rm");
    symlink(server.dir.path().join("secret.html"), &index).expect("symlink");
    for route in ["/site/another/route", "/site/", "/site/index.html"] {
        // Refused as a file that is not there, as a symlinked static file is.
        let body = refused(&server, route, 404).await;
        assert_eq!(body["code"], "NOT_FOUND", "{route}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entrypoint_outside_the_app_refuses_to_load_with_the_field_and_path() {
    let server = TestServer::start_plugins(|root| {
        install(root);
        let absolute = format!(
            r#"{{ entrypoint: "{}" }}"#,
            root.join("secret.html").display()
        );
        let cases = [
            ("dotdot", r#"{ entrypoint: "../other/private.txt" }"#),
            ("absolute", absolute.as_str()),
            ("linked", r#"{ entrypoint: "main.html" }"#),
            ("module", r#"{ entrypoint: "main.wasm" }"#),
        ];
        for (name, worker) in cases {
            let dir = root.join("apps").join(name);
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("worker.jsonc"), worker).expect("write");
        }
        symlink(root.join("secret.html"), root.join("apps/linked/main.html")).expect("symlink");
        symlink("../other/mod.wasm", root.join("apps/module/main.wasm")).expect("symlink");
        // Detected entrypoints too: an `app.wasm` that is another app's module.
        std::fs::create_dir_all(root.join("apps/detected")).expect("mkdir");
        symlink("../other/mod.wasm", root.join("apps/detected/app.wasm")).expect("symlink");
    })
    .await;
    for (app, field, needle) in [
        (
            "dotdot",
            "`entrypoint`",
            "`../other/private.txt` leaves the app directory",
        ),
        ("absolute", "`entrypoint`", "leaves the app directory"),
        (
            "linked",
            "`entrypoint`",
            "`main.html` leads outside the app directory",
        ),
        (
            "module",
            "`entrypoint`",
            "`main.wasm` leads outside the app directory",
        ),
        (
            "detected",
            "app.wasm",
            "`app.wasm` leads outside the app directory",
        ),
    ] {
        for path in [format!("/{app}/"), format!("/{app}/x")] {
            let body = refused(&server, &path, 500).await;
            assert_eq!(body["code"], "APP_CONFIG_INVALID", "{path}: {body}");
            let message = body["message"].as_str().unwrap_or_default();
            let file = if field.starts_with('`') {
                "worker.jsonc"
            } else {
                field
            };
            assert!(
                message.contains(file) && message.contains(field) && message.contains(needle),
                "{path}: {message}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_version_dir_pointing_at_another_app_is_not_installed() {
    let server = TestServer::start_plugins(|root| {
        install(root);
        let hello = root.join("apps/hello");
        std::fs::create_dir_all(hello.join("1.0.0")).expect("mkdir");
        std::fs::write(hello.join("1.0.0/index.html"), "hello one").expect("write");
        symlink("../other", hello.join("2.0.0")).expect("symlink");
        // Inside its app dir, a version may alias another.
        symlink("1.0.0", hello.join("1.0.1")).expect("symlink");
    })
    .await;
    let body = refused(&server, "/hello@2.0.0/private.txt", 404).await;
    assert_eq!(body["code"], "VERSION_NOT_FOUND", "{body}");
    let (status, body) = fetch(&server, "/hello/private.txt", "").await;
    assert!(!body.contains(SECRET) && status == 404, "{status} {body}");
    let (status, body) = fetch(&server, "/hello@1.0.1/", "").await;
    assert_eq!((status, body.as_str()), (200, "hello one"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_traversal_is_still_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_plugins(install).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    for path in [
        "/site/%2e%2e/other/private.txt",
        "/site/%2E%2E%2Fother%2Fprivate.txt",
        "/site/..%2f..%2fsecret.txt",
        "/site/assets/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
        "/site/..%5c..%5csecret.txt",
        "/site/%252e%252e/%252e%252e/secret.txt",
        "/site/%2e%2e%00/secret.txt",
    ] {
        // Sent as written: no client normalises it.
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        let out = String::from_utf8_lossy(&out);
        assert!(!out.contains(SECRET), "{path} leaked: {out}");
        assert_eq!(
            out.lines().next().unwrap_or(""),
            "HTTP/1.1 404 Not Found",
            "{path}"
        );
    }
    server.stop().await;
}

/// Each field over the default ceiling, the file and text its error names.
const OVER_DEFAULTS: &[(&str, &str, &str, &str)] = &[
    (
        "timeout",
        r#"{ timeout: "6m" }"#,
        "`timeout`",
        "asks for 360s, above the operator's ceiling of 300s (raise `apps.ceiling.timeout` in buntime.jsonc",
    ),
    (
        "concurrency",
        "{ maxConcurrency: 1001 }",
        "`maxConcurrency`",
        "asks for 1001, above the operator's ceiling of 1000 (raise `apps.ceiling.maxConcurrency`",
    ),
    (
        "queue",
        "{ maxQueue: 10001 }",
        "`maxQueue`",
        "asks for 10001, above the operator's ceiling of 10000 (raise `apps.ceiling.maxQueue`",
    ),
    (
        "body",
        r#"{ maxBodySize: "101mb" }"#,
        "`maxBodySize`",
        "asks for 101mb, above the operator's ceiling of 100mb (raise `apps.ceiling.maxBodySize`",
    ),
    (
        "private",
        r#"{ capabilities: { http: { allow: ["api.example.com"], privateNetworks: true } } }"#,
        "`capabilities.http`",
        "asks for `privateNetworks: true`, which the operator's ceiling does not allow (set `privateNetworks: true` in `apps.ceiling.capabilities.http`",
    ),
    (
        "loopback",
        r#"{ capabilities: { http: ["http://127.0.0.1:8080"] } }"#,
        "`capabilities.http`",
        "asks for `http://127.0.0.1:8080`, a private address",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_over_the_default_ceiling_fails_to_load_naming_file_field_and_ceiling() {
    let server = TestServer::start_plugins(|root| {
        // Static apps: the ceiling holds at load, whatever the app's kind
        // (and they load without compiling a module).
        for (name, worker, ..) in OVER_DEFAULTS {
            std::fs::write(site(root, name).join("worker.jsonc"), worker).expect("write");
        }
        echo(
            root,
            "within",
            Some(
                r#"{ timeout: "5m", maxConcurrency: 1000, maxQueue: 10000, maxBodySize: "100mb",
                      capabilities: { http: ["https://api.example.com", "*.example.org"] } }"#,
            ),
        );
    })
    .await;
    for (name, _, field, needle) in OVER_DEFAULTS {
        let res = get(&server.url(&format!("/{name}/x"))).await;
        assert_eq!(res.status(), 500, "{name}");
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body["code"], "APP_CONFIG_INVALID", "{name}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        let file = format!("apps/{name}/worker.jsonc");
        assert!(
            message.contains(&file) && message.contains(field) && message.contains(needle),
            "{name}: {message}"
        );
        // What `buntime check` prints is the same load.
        let app = buntime::routing::AppVersion::new(
            name,
            None,
            server.dir.path().join("apps").join(name),
        );
        let e = buntime::server::load_settings(&app, &Default::default()).expect_err(name);
        assert_eq!(e.to_string(), message, "{name}");
    }
    let res = client()
        .post(server.url("/within/x"))
        .body("hello")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "an app within the ceiling still loads");
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["body"], "hello");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_ceiling_lets_those_apps_load_and_a_narrowed_one_refuses_hosts() {
    let server = TestServer::start_plugins(|root| {
        // Static apps: the ceiling holds at load, whatever the app's kind
        // (and they load without compiling a module).
        for (name, worker, ..) in OVER_DEFAULTS {
            std::fs::write(site(root, name).join("worker.jsonc"), worker).expect("write");
        }
        std::fs::write(
            root.join("buntime.jsonc"),
            r#"{ apps: { ceiling: {
                   timeout: "10m", maxConcurrency: 2000, maxQueue: 20000, maxBodySize: "1gb",
                   capabilities: { http: { allow: ["*.example.org", "http://127.0.0.1:8080", "api.example.com:*"], privateNetworks: true } }
               } } }"#,
        )
        .expect("buntime.jsonc");
    })
    .await;
    for (name, ..) in OVER_DEFAULTS {
        let res = get(&server.url(&format!("/{name}/x"))).await;
        assert_eq!(
            res.status(),
            200,
            "{name}: {}",
            res.text().await.unwrap_or_default()
        );
    }
    // A ceiling that lists hosts holds apps to them.
    let narrow = TestServer::start_plugins(|root| {
        for (name, worker) in [
            (
                "elsewhere",
                r#"{ capabilities: { http: ["api.example.com"] } }"#,
            ),
            (
                "listed",
                r#"{ capabilities: { http: ["https://a.example.org"] } }"#,
            ),
        ] {
            std::fs::write(site(root, name).join("worker.jsonc"), worker).expect("write");
        }
        std::fs::write(
            root.join("buntime.jsonc"),
            r#"{ apps: { ceiling: { capabilities: { http: ["*.example.org"] } } } }"#,
        )
        .expect("buntime.jsonc");
    })
    .await;
    let res = get(&narrow.url("/elsewhere/x")).await;
    assert_eq!(res.status(), 500);
    let body: serde_json::Value = res.json().await.expect("json");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`capabilities.http`: asks for `api.example.com`, outside the operator's ceiling [`*.example.org`]"),
        "{message}"
    );
    assert_eq!(get(&narrow.url("/listed/x")).await.status(), 200);
    narrow.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceiling_with_a_typo_stops_the_server_naming_the_field() {
    let err = TestServer::try_start_plugins(Vec::new(), |root| {
        std::fs::write(
            root.join("buntime.jsonc"),
            r#"{ apps: { ceiling: { maxBody: "1gb" } } }"#,
        )
        .expect("buntime.jsonc");
    })
    .await
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("buntime.jsonc") && text.contains("`apps.ceiling.maxBody`: unknown key"),
        "{text}"
    );
}
