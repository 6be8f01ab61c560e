//! The deployments plugin end to end: an app version uploaded as tar.gz or
//! zip is served at once; hostile archives and broken apps are refused
//! with nothing left behind; a deploy under load never shows a partial
//! version; download round-trips byte for byte; delete guards the last
//! version of a pin; file edits stay inside the version; the routes need
//! the core `apps:*` permissions.

use std::io::{Read, Write};
use std::path::Path;

use buntime_fixtures as fx;
use reqwest::Method;
use serde_json::{Value, json};

use super::{config, seen_header};
use crate::server::{TestServer, client};

pub(super) const DEPLOYMENTS: &str = "@buntime/plugin-deployments";
pub(super) const API: &str = "/_/deployments/api/apps";

/// The deployments plugin alone (compiling the other core plugins would
/// only slow the server's start).
pub(super) fn embedded() -> Vec<buntime::plugins::EmbeddedPlugin> {
    buntime::plugins::embedded()
        .into_iter()
        .filter(|p| p.manifest.contains(DEPLOYMENTS))
        .collect()
}

pub(super) async fn start() -> TestServer {
    TestServer::try_start_plugins(embedded(), |root| {
        config(root, &json!({ "plugins": [[DEPLOYMENTS, {}]] }).to_string());
    })
    .await
    .expect("server with the deployments plugin")
}

/// A tar.gz of `files` (name, bytes), names written as given.
pub(crate) fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        let raw = &mut h.as_gnu_mut().expect("gnu").name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("tar").finish().expect("gz")
}

/// `len` bytes that do not compress.
pub(super) fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in files {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        z.write_all(data).expect("zip write");
    }
    z.finish().expect("zip").into_inner()
}

pub(super) fn echo_files() -> (Vec<u8>, Vec<u8>) {
    let wasm = std::fs::read(fx::APP_ECHO).expect("echo wasm");
    (wasm, br#"{ "ttl": "1m" }"#.to_vec())
}

pub(super) async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let res = client()
        .request(method, server.url(path))
        .body(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls `GET path` until it answers `status` (10 s at most, by deadline);
/// returns the last.
async fn wait_status(server: &TestServer, path: &str, status: u16) -> u16 {
    let mut last = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        last = client()
            .get(server.url(path))
            .send()
            .await
            .expect("get")
            .status()
            .as_u16();
        if last == status {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    last
}

/// Every entry below `dir`, relative, sorted.
pub(super) fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).expect("below").display().to_string());
                if p.is_dir() && !p.is_symlink() {
                    walk(base, &p, out);
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn a_tar_gz_is_deployed_served_listed_downloaded_identically_and_not_replaced() {
    let server = start().await;
    let (wasm, worker) = echo_files();
    let archive = tar_gz(&[("worker.jsonc", &worker), ("app.wasm", &wasm)]);
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("{API}/hello/1.0.0"),
        archive.clone(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["path"], "/hello@1.0.0/");
    assert_eq!(body["kind"], "wasm");
    let res = client()
        .get(server.url("/hello@1.0.0/x"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    let echoed: Value = res.json().await.expect("json");
    assert_eq!(
        seen_header(&echoed, "x-base").as_deref(),
        Some("/hello@1.0.0")
    );
    let apps = server.dir.path().join("apps");
    assert_eq!(
        tree(&apps.join(".deployments")),
        Vec::<String>::new(),
        "staging is left empty"
    );

    let (status, body) = send(
        &server,
        Method::POST,
        &format!("{API}/hello/1.0.0"),
        archive,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("VERSION_EXISTS")),
        "{body}"
    );

    let (status, body) = send(&server, Method::GET, API, Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["apps"],
        json!([{"name": "hello", "versions": ["1.0.0"]}])
    );

    // Past the 8 MiB of the plugin's other routes: uploads are spooled.
    let big = noise(12 << 20);
    let site = tar_gz(&[("index.html", b"<p>big</p>"), ("asset.bin", &big)]);
    let (status, body) = send(&server, Method::POST, &format!("{API}/big/1.0.0"), site).await;
    assert_eq!(status, 201, "{body}");
    let res = client()
        .get(server.url("/big@1.0.0/asset.bin"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.expect("bytes").as_ref() == big.as_slice());
    // A 12 MiB download passes through the plugin's 64 MiB of memory.
    let res = client()
        .get(server.url(&format!("{API}/big/1.0.0/archive")))
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.expect("bytes").len() > 12 << 20);
    for format in ["tar.gz", "zip"] {
        let res = client()
            .get(server.url(&format!("{API}/hello/1.0.0/archive?format={format}")))
            .send()
            .await
            .expect("download");
        assert_eq!(res.status(), 200);
        let bytes = res.bytes().await.expect("bytes").to_vec();
        let mut got = Vec::new();
        if format == "zip" {
            let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
            z.by_name("app.wasm")
                .expect("entry")
                .read_to_end(&mut got)
                .expect("read");
        } else {
            let mut t = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
            for e in t.entries().expect("entries") {
                let mut e = e.expect("entry");
                if e.path().expect("path").to_str() == Some("app.wasm") {
                    e.read_to_end(&mut got).expect("read");
                }
            }
        }
        assert!(got == wasm, "{format}: app.wasm round-trips byte for byte");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_deploys_and_a_deploy_under_load_never_shows_a_partial_version() {
    let server = start().await;
    let (wasm, worker) = echo_files();
    let files: [(&str, &[u8]); 2] = [("worker.jsonc", &worker), ("app.wasm", &wasm)];
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("{API}/load/1.0.0"),
        zip_of(&files),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let url = server.url("/load@1/");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let res = client().get(&url).send().await.expect("get");
                let status = res.status().as_u16();
                let echoed: Value = res.json().await.unwrap_or(Value::Null);
                seen.push((status, seen_header(&echoed, "x-base")));
                // Paced, so the load does not starve the deploys it watches.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            seen
        })
    };
    for minor in 1..=2 {
        let (status, body) = send(
            &server,
            Method::PUT,
            &format!("{API}/load/1.{minor}.0"),
            tar_gz(&files),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(wait_status(&server, "/load@1.2.0/", 200).await, 200);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = poller.await.expect("poller");
    assert!(!seen.is_empty());
    for (status, base) in &seen {
        assert_eq!(
            *status, 200,
            "every request during the deploys was served: {seen:?}"
        );
        assert_eq!(base.as_deref(), Some("/load@1"), "answered by the app");
    }
}

#[tokio::test]
async fn hostile_archives_and_broken_apps_are_refused_with_nothing_left() {
    let server = start().await;
    let root = server.dir.path().to_owned();
    let (wasm, worker) = echo_files();
    let bomb = vec![0u8; 8 << 20];
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("dotdot", tar_gz(&[("../../evil.txt", b"x")]), 400, "`..`"),
        (
            "absolute",
            tar_gz(&[("/tmp/evil-deploy.txt", b"x")]),
            400,
            "absolute",
        ),
        ("zip-slip", zip_of(&[("../evil.txt", b"x")]), 400, "`..`"),
        (
            "collide",
            tar_gz(&[("app.wasm", &wasm), ("./app.wasm", &wasm)]),
            400,
            "same name",
        ),
        ("bomb", tar_gz(&[("app.wasm", &bomb)]), 413, "maxRatio"),
        ("not-an-archive", b"hello".to_vec(), 400, "neither"),
        (
            "bad-config",
            tar_gz(&[("worker.jsonc", b"{ \"ttl\": "), ("app.wasm", &wasm)]),
            422,
            "worker.jsonc",
        ),
        (
            "bad-module",
            tar_gz(&[("worker.jsonc", &worker), ("app.wasm", b"\0asm garbage")]),
            422,
            "app.wasm",
        ),
        (
            "empty",
            tar_gz(&[("readme.txt", b"hi")]),
            422,
            "no index.html",
        ),
    ];
    for (name, archive, status, needle) in cases {
        let (got, body) = send(
            &server,
            Method::POST,
            &format!("{API}/{name}/1.0.0"),
            archive,
        )
        .await;
        assert_eq!(got, status, "{name}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{name}: `{needle}` not in {body}");
        assert!(
            !root.join("apps").join(name).join("1.0.0").exists(),
            "{name}: installed"
        );
        assert_eq!(
            wait_status(&server, &format!("/{name}@1.0.0/"), 404).await,
            404
        );
    }
    assert_eq!(
        tree(&root.join("apps/.deployments")),
        Vec::<String>::new(),
        "staging is clean"
    );
    assert!(!root.join("evil.txt").exists() && !Path::new("/tmp/evil-deploy.txt").exists());
    // An upload cut off mid-body never reaches the plugin: nothing staged,
    // nothing installed, and the server serves the next request.
    {
        use tokio::io::AsyncWriteExt;
        let addr = server.url("").trim_start_matches("http://").to_owned();
        let mut conn = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let head =
            format!("POST {API}/cut/1.0.0 HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n");
        conn.write_all(head.as_bytes()).await.expect("head");
        conn.write_all(&tar_gz(&[("app.wasm", &wasm)])[..1000])
            .await
            .expect("part");
        drop(conn);
        let (status, body) = send(&server, Method::GET, API, Vec::new()).await;
        assert_eq!(status, 200, "{body}");
        assert!(!root.join("apps/cut").exists());
    }
    // A name installed in another layout is not shadowed.
    crate::server::install_echo(
        &root.join("apps"),
        "plain",
        Some(&String::from_utf8_lossy(&worker)),
    );
    let archive = tar_gz(&[("worker.jsonc", &worker), ("app.wasm", &wasm)]);
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("{API}/plain/1.0.0"),
        archive,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("LAYOUT_CONFLICT")),
        "{body}"
    );
    assert!(!root.join("apps/plain/1.0.0").exists());
    // Names and versions are checked before anything is written.
    let (status, _) = send(
        &server,
        Method::POST,
        &format!("{API}/.hidden/1.0.0"),
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(
        &server,
        Method::POST,
        &format!("{API}/ok/..%2F1.0.0"),
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn delete_guards_the_only_version_of_a_pin_and_files_stay_inside_the_version() {
    let server = start().await;
    let (wasm, worker) = echo_files();
    let files: [(&str, &[u8]); 2] = [("worker.jsonc", &worker), ("app.wasm", &wasm)];
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        let (status, body) = send(
            &server,
            Method::POST,
            &format!("{API}/app/{v}"),
            tar_gz(&files),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = send(
        &server,
        Method::DELETE,
        &format!("{API}/app/2.0.0"),
        Vec::new(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("ONLY_VERSION")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/app@2"),
        "{body}"
    );
    let (status, _) = send(
        &server,
        Method::DELETE,
        &format!("{API}/app/1.0.0"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(wait_status(&server, "/app@1.0.0/", 404).await, 404);
    let (status, _) = send(
        &server,
        Method::DELETE,
        &format!("{API}/app/2.0.0?force=true"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = send(&server, Method::GET, &format!("{API}/app"), Vec::new()).await;
    assert_eq!(body["versions"], json!(["1.1.0"]));
    let (status, _) = send(
        &server,
        Method::DELETE,
        &format!("{API}/app/1.1.0?force=true"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !server.dir.path().join("apps/app").exists(),
        "the app dir goes with its last version"
    );
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("{API}/app/1.1.0"),
        tar_gz(&files),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let f = format!("{API}/app/1.1.0/files");
    let (status, _) = send(
        &server,
        Method::PUT,
        &format!("{f}/public/notes.txt"),
        b"v1".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = send(
        &server,
        Method::GET,
        &format!("{f}/public/notes.txt"),
        Vec::new(),
    )
    .await;
    assert_eq!((status, body), (200, Value::String("v1".into())));
    let (status, body) = send(
        &server,
        Method::PATCH,
        &format!("{f}/public/notes.txt"),
        br#"{"to": "public/renamed.txt"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = send(&server, Method::GET, &format!("{f}/public"), Vec::new()).await;
    assert_eq!(body["entries"][0]["name"], "renamed.txt", "{body}");
    let (status, _) = send(
        &server,
        Method::DELETE,
        &format!("{f}/public/renamed.txt"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    // Out of the version: refused by the plugin, or by the host's fs checks.
    for bad in ["/..%2F2.0.0/x", "/..%2F..%2Fother/x", "/a%5C..%5Cb"] {
        let (status, body) = send(&server, Method::PUT, &format!("{f}{bad}"), b"x".to_vec()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    #[cfg(unix)]
    {
        let outside = server.dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, server.dir.path().join("apps/app/1.1.0/link"))
            .expect("link");
        let (status, body) = send(
            &server,
            Method::PUT,
            &format!("{f}/link/x.txt"),
            b"x".to_vec(),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("granted directory"),
            "{body}"
        );
        assert!(!outside.join("x.txt").exists());
    }
}
