//! Uploads to the deployments plugin stream to disk: the host spools the
//! body to a file below the worker dir (`spoolUploads`), caps it as it
//! arrives, and removes the file however the request ends; an archive
//! larger than the plugin's whole memory deploys; what a stopped server
//! left in staging is swept by a later deploy.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::config;
use super::deployments::{API, DEPLOYMENTS, noise, send, tar_gz, tree};
use crate::server::{TestServer, client};

/// The deployments plugin with its manifest's `memory` and
/// `spoolUploads.maxSize` set as given.
async fn start_with(memory: &str, max_size: &str) -> TestServer {
    let plugins = buntime::plugins::embedded()
        .into_iter()
        .filter(|p| p.manifest.contains(DEPLOYMENTS))
        .map(|mut p| {
            let text = p
                .manifest
                .replace("\"memory\": \"64mb\"", &format!("\"memory\": \"{memory}\""))
                .replace(
                    "\"maxSize\": \"256mb\"",
                    &format!("\"maxSize\": \"{max_size}\""),
                );
            assert_ne!(text, p.manifest, "the manifest's limits moved");
            p.manifest = text.into();
            p
        })
        .collect();
    TestServer::try_start_plugins(plugins, |root| {
        config(root, &json!({ "plugins": [[DEPLOYMENTS, {}]] }).to_string());
    })
    .await
    .expect("server with the deployments plugin")
}

/// Polls until `.deployments` below `apps` holds exactly `want` entries
/// (10 s at most, by deadline); returns what it holds.
async fn staging_settles(apps: &Path, want: usize) -> Vec<String> {
    let mut now = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        now = tree(&apps.join(".deployments"));
        if now.len() == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    now
}

#[tokio::test]
async fn an_archive_larger_than_the_plugins_memory_deploys_without_entering_it() {
    let server = start_with("16mb", "64mb").await;
    let blob = noise(20 << 20);
    let archive = tar_gz(&[("index.html", b"<p>big</p>"), ("blob.bin", &blob)]);
    assert!(archive.len() > 16 << 20);
    let (status, body) = send(&server, Method::POST, &format!("{API}/big/1.0.0"), archive).await;
    assert_eq!(status, 201, "{body}");
    let res = client()
        .get(server.url("/big@1.0.0/blob.bin"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.expect("bytes").as_ref() == blob.as_slice());
    let apps = server.dir.path().join("apps");
    assert_eq!(staging_settles(&apps, 0).await, Vec::<String>::new());
}

#[tokio::test]
async fn an_upload_past_the_cap_is_refused_as_it_arrives_and_leaves_nothing() {
    let server = start_with("16mb", "1mb").await;
    let apps = server.dir.path().join("apps");
    // Declared too large: refused before a byte is read.
    let (status, body) = send(
        &server,
        Method::POST,
        &format!("{API}/big/1.0.0"),
        vec![0; (1 << 20) + 1],
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    // Chunked, so no length is declared: refused once past the cap.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(noise(256 << 10))).collect();
    let res = client()
        .post(server.url(&format!("{API}/big/1.0.0")))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    // The server may close the connection while the client still sends, so
    // the 413 cannot always be read; when it can, it is exactly that, and the
    // checks below hold either way.
    if let Ok(res) = res {
        assert_eq!(res.status(), 413);
    }
    assert_eq!(staging_settles(&apps, 0).await, Vec::<String>::new());
    assert!(!apps.join("big").exists());
}

#[tokio::test]
async fn an_interrupted_upload_leaves_no_trace() {
    let server = start_with("16mb", "64mb").await;
    let apps = server.dir.path().join("apps");
    let addr = server.url("").trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {API}/cut/1.0.0 HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/gzip\r\ncontent-length: {}\r\n\r\n",
        4 << 20
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tcp.write_all(&noise(1 << 20)).await.expect("half the body");
    // The spooled file exists while the body arrives...
    let during = staging_settles(&apps, 1).await;
    assert_eq!(during.len(), 1, "{during:?}");
    assert!(during[0].ends_with(".upload"), "{during:?}");
    // ...and is gone once the client drops the connection mid-body.
    drop(tcp);
    assert_eq!(staging_settles(&apps, 0).await, Vec::<String>::new());
    assert!(!apps.join("cut").exists());
    // The server is unharmed.
    let (status, _) = send(&server, Method::GET, API, Vec::new()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_client_cannot_name_the_spooled_file_and_stale_leftovers_are_swept() {
    let server = start_with("16mb", "64mb").await;
    let apps = server.dir.path().join("apps");
    std::fs::create_dir_all(apps.join(".deployments")).expect("mkdir");
    let planted = tar_gz(&[("index.html", b"planted")]);
    std::fs::write(apps.join(".deployments/planted.upload"), &planted).expect("plant");
    // What a server stopped mid-upload leaves, untouched for two hours.
    let stale = apps.join(".deployments/stale.upload");
    std::fs::write(&stale, b"half an archive").expect("stale");
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(7200)))
        .expect("age it");
    let site = tar_gz(&[("index.html", b"sent")]);
    let res = client()
        .post(server.url(&format!("{API}/site/1.0.0")))
        .header("x-buntime-upload", ".deployments/planted.upload")
        .body(site)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 201);
    let page = client()
        .get(server.url("/site@1.0.0/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert_eq!(page, "sent");
    assert!(
        apps.join(".deployments/planted.upload").exists(),
        "recent: kept"
    );
    assert!(!stale.exists(), "stale: swept by the next deploy");
}

#[tokio::test]
async fn spooled_uploads_without_an_fs_grant_fail_the_load() {
    let plugins = buntime::plugins::embedded()
        .into_iter()
        .filter(|p| p.manifest.contains(DEPLOYMENTS))
        .collect();
    let server = TestServer::try_start_plugins(plugins, |root| {
        config(
            root,
            &json!({ "plugins": [{ "name": DEPLOYMENTS, "capabilities": { "fs": false } }] })
                .to_string(),
        );
    })
    .await
    .expect("server");
    let list = super::plugins(&server).await;
    let entry = super::not_loaded(&list, DEPLOYMENTS);
    assert_eq!(entry["state"], "failed", "{list}");
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("`spoolUploads` needs an `fs` grant")),
        "{entry}"
    );
}
