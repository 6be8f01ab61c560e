//! Static and single-page apps: types, ETags, ranges, fallback, traversal.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_sites_serve_files_with_spa_fallback_and_etags() {
    let server = TestServer::start(install_site).await;
    let res = get(&server.url("/site/")).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    let etag = res.headers()["etag"].to_str().expect("etag").to_owned();
    assert!(res.text().await.expect("text").contains("spa"));

    let res = client()
        .get(server.url("/site/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 304);

    let res = get(&server.url("/site/assets/app.js")).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .contains("javascript")
    );

    let res = get(&server.url("/site/deep/client/route")).await;
    assert_eq!(
        res.status(),
        200,
        "navigation paths fall back to the entrypoint"
    );
    assert!(res.text().await.expect("text").contains("spa"));
    assert_eq!(
        get(&server.url("/site/missing.js")).await.status(),
        404,
        "assets do not fall back"
    );

    let res = client()
        .get(server.url("/site/assets/app.js"))
        .header("range", "bytes=0-6")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 206);
    assert_eq!(res.text().await.expect("text"), "console");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_is_refused_in_every_encoding() {
    let server = TestServer::start(install_site).await;
    let attempts = [
        "/site/../secret.txt",
        "/site/%2e%2e/secret.txt",
        "/site/%2E%2E%2Fsecret.txt",
        "/site/..%2fsecret.txt",
        "/site/..%5csecret.txt",
        "/site/assets/..%2f..%2fsecret.txt",
        "/site/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/site/.%2e/secret.txt",
        "/site/leak.txt",
        "/site/secret.txt%00.html",
    ];
    for path in attempts {
        // Send the path exactly as written (no client-side normalisation).
        let body = raw_get(&server.base, path).await;
        assert!(
            !body.contains("top secret"),
            "{path} leaked the file: {body}"
        );
        assert_eq!(
            body.lines().next().unwrap_or(""),
            "HTTP/1.1 404 Not Found",
            "{path}"
        );
    }
    server.stop().await;
}

async fn raw_get(base: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn html_gets_base_href_and_escaped_public_env() {
    let server = TestServer::start(|root| {
        install_site(root);
        std::fs::write(
            root.join("site/worker.jsonc"),
            r#"{ injectBase: true, env: { PUBLIC_API: "https://api.example.com", PUBLIC_EVIL: "</script><script>alert(1)", SECRET_KEY: "hidden" } }"#,
        )
        .expect("worker.jsonc");
    })
    .await;
    let res = get(&server.url("/site/some/route")).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.expect("text");
    assert!(html.contains(r#"<head><base href="/site/">"#), "{html}");
    assert!(
        html.contains(r#""PUBLIC_API":"https://api.example.com""#),
        "{html}"
    );
    assert!(
        !html.contains("</script><script>alert"),
        "a value closed the script element: {html}"
    );
    assert!(html.contains(r"\u003c/script>"), "{html}");
    assert!(
        !html.contains("hidden"),
        "a non-public variable leaked: {html}"
    );
    server.stop().await;
}

#[tokio::test]
async fn precompressed_siblings_are_served_to_clients_that_accept_them() {
    let server = TestServer::start(|root| {
        install_site(root);
        let js = "console.log('a fairly long script body that compresses');".repeat(20);
        std::fs::write(root.join("site/assets/big.js"), &js).expect("write");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, js.as_bytes()).expect("gzip");
        std::fs::write(
            root.join("site/assets/big.js.gz"),
            gz.finish().expect("gzip"),
        )
        .expect("write");
    })
    .await;
    let raw = client()
        .get(server.url("/site/assets/big.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.headers()["content-encoding"], "gzip");
    assert!(
        raw.headers()["content-type"]
            .to_str()
            .expect("ct")
            .contains("javascript")
    );
    let plain = client()
        .get(server.url("/site/assets/big.js"))
        .header("accept-encoding", "identity")
        .send()
        .await
        .expect("send");
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.text().await.expect("text").starts_with("console.log"));
    server.stop().await;
}
