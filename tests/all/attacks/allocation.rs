//! What a guest makes the host allocate is bounded: response bodies of apps
//! (`maxResponseBodySize` in worker.jsonc) and plugins (the same field in
//! manifest.jsonc) have a cap, 10 MiB by default; over it, 502 naming the
//! setting and the file.

use buntime::server::ErrorDetail;

use super::framing::{Act, At, Guest, Server, app, plugin};

/// Binary body writes: `chunk` bytes `times` times, then status 200.
fn writes(chunk: u32, times: u32) -> Act {
    Act::Body {
        chunk,
        times,
        head: r#"{"status":200}"#.into(),
    }
}

fn inline(len: usize) -> Act {
    Act::Output(serde_json::json!({ "status": 200, "body": "x".repeat(len) }).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_body_over_its_cap_is_a_502_naming_the_setting() {
    let small = Some(r#"{ "maxResponseBodySize": "1kb" }"#);
    let server = Server::start(ErrorDetail::Hidden, |root| {
        app(
            root,
            "written",
            &Guest::default().export("handle", writes(512, 3)),
            small,
        );
        app(
            root,
            "inline",
            &Guest::default().export("handle", inline(1025)),
            small,
        );
        app(
            root,
            "fits",
            &Guest::default().export("handle", writes(512, 2)),
            small,
        );
        // No setting: the 10 MiB default holds (11 writes of 1 MiB).
        app(
            root,
            "default",
            &Guest::default().export("handle", writes(1 << 20, 11)),
            None,
        );
    })
    .await;
    for (path, limit) in [
        ("/written/", "1024"),
        ("/inline/", "1024"),
        ("/default/", "10485760"),
    ] {
        let (status, _, body) = server.get(path).await;
        assert_eq!(status, 502, "{path}: {body}");
        assert_eq!(body["code"], "RESPONSE_TOO_LARGE", "{path}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        for want in [limit, "maxResponseBodySize", "worker.jsonc"] {
            assert!(
                message.contains(want),
                "{path}: `{want}` missing: {message}"
            );
        }
    }
    let res = reqwest::get(server.url("/fits/")).await.expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.bytes().await.expect("body").len(),
        1024,
        "at the cap is fine"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_body_over_its_cap_is_a_502_naming_the_setting() {
    let server = Server::start(ErrorDetail::Full, |root| {
        let respond = |len: usize| {
            Act::Output(
                serde_json::json!({
                    "action": "respond",
                    "response": { "status": 200, "body": "x".repeat(len) },
                })
                .to_string(),
            )
        };
        let guest = Guest::default()
            .branches(
                "on_request",
                vec![
                    (Some((At::Start(25), b'b')), respond(1025)),
                    (Some((At::Start(25), b'f')), respond(1024)),
                    (None, Act::Output(r#"{"action":"continue"}"#.into())),
                ],
            )
            .branches(
                "handle",
                vec![
                    (Some((At::Start(25), b'w')), writes(700, 2)),
                    (Some((At::Start(25), b'i')), inline(2000)),
                    (None, writes(1000, 1)),
                ],
            );
        plugin(
            root,
            "big",
            r#""base": "big", "maxResponseBodySize": "1kb""#,
            &guest,
        );
    })
    .await;
    for path in ["/big-respond", "/_/big/w", "/_/big/i"] {
        let (status, _, body) = server.get(path).await;
        assert_eq!(status, 502, "{path}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        for want in ["1024 bytes", "maxResponseBodySize", "manifest.jsonc"] {
            assert!(
                message.contains(want),
                "{path}: `{want}` missing: {message}"
            );
        }
    }
    for path in ["/fine", "/_/big/ok"] {
        let (status, _, _) = server.get(path).await;
        assert_eq!(status, 200, "{path}: within the cap");
    }
    server.stop().await;
}
