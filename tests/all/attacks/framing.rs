//! Framing belongs to the host: no guest header, status or event name can
//! split a response, hijack the connection or break an event stream.

mod guests;

use std::time::Duration;

use buntime::server::ErrorDetail;
use serde_json::Value;

pub(crate) use guests::{Act, At, Guest, Server, app, plugin};
use guests::{Branch, Raw, Wire};

/// A response head as an app or a plugin writes it.
fn head(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    serde_json::json!({ "status": status, "headers": headers, "body": body }).to_string()
}

/// Every header a guest may not set, with a hostile value.
const FRAMING: [(&str, &str); 9] = [
    ("Content-Length", "0"),
    ("transfer-encoding", "chunked"),
    ("connection", "close"),
    ("keep-alive", "timeout=1"),
    ("upgrade", "h2c"),
    ("te", "trailers"),
    ("trailer", "x-forged"),
    ("proxy-authenticate", "Basic"),
    ("proxy-anything", "x"),
];

/// The body an app forges: a whole second response.
const FORGED: &str = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged";

/// Asserts that `raw` is the guest's answer with its body intact, framed by
/// the host and with none of [`FRAMING`] passed on.
fn assert_host_framed(raw: &Raw, body: &str, who: &str) {
    assert_eq!(raw.status, 200, "{who}: {raw:?}");
    assert_eq!(String::from_utf8_lossy(&raw.body), body, "{who}");
    assert_eq!(raw.header("x-kept"), Some("yes"), "{who}: {raw:?}");
    assert_eq!(
        raw.header("content-length"),
        Some(body.len().to_string().as_str()),
        "{who}: {raw:?}"
    );
    for (name, value) in FRAMING.iter().skip(1) {
        assert!(
            raw.header(name) != Some(value),
            "{who}: `{name}: {value}` reached the client: {raw:?}"
        );
    }
}

/// App `app`, answering "from the app" with `headers`.
fn framing_app(root: &std::path::Path, headers: &[(&str, &str)]) {
    app(
        root,
        "app",
        &Guest::default().export("handle", Act::Output(head(200, headers, "from the app"))),
        None,
    );
}

fn framing_with(extra: (&'static str, &'static str)) -> Vec<(&'static str, &'static str)> {
    let mut all = FRAMING.to_vec();
    all.push(extra);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_response_cannot_split_a_keep_alive_connection() {
    let server = Server::start(ErrorDetail::Full, |root| {
        let evil = head(200, &[("content-length", "0")], FORGED);
        app(
            root,
            "evil",
            &Guest::default().export("handle", Act::Output(evil)),
            None,
        );
    })
    .await;
    let mut wire = Wire::connect(server.addr).await;
    let first = wire.get("/evil/").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&first.body),
        FORGED,
        "the body is the app's, framed by the host"
    );
    let second = wire.get("/_/api/health").await;
    let body = String::from_utf8_lossy(&second.body);
    assert!(
        !body.contains("forged"),
        "the second request got the forged answer: {second:?}"
    );
    let health: Value = serde_json::from_slice(&second.body).expect("the genuine health JSON");
    assert_eq!(health["status"], "ok");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_headers_from_any_guest_are_dropped() {
    let headers = framing_with(("x-kept", "yes"));
    let server = Server::start(ErrorDetail::Full, |root| {
        framing_app(root, &headers);
        app(
            root,
            "plain",
            &Guest::default().export("handle", Act::Output(head(200, &[], "plain app"))),
            None,
        );
        let respond = serde_json::json!({
            "action": "respond",
            "response": { "status": 200, "headers": headers, "body": "from respond" },
        })
        .to_string();
        let changes = serde_json::json!({
            "set_headers": headers,
            "remove_headers": ["content-length", "transfer-encoding"],
        })
        .to_string();
        let guest = Guest::default()
            // `/r…`: answer in on_request; anything else goes on.
            .branches(
                "on_request",
                vec![
                    (Some((At::Start(25), b'r')), Act::Output(respond)),
                    (None, Act::Output(r#"{"action":"continue"}"#.into())),
                ],
            )
            // `/plain/`: change the app's response.
            .branches(
                "on_response",
                vec![
                    (Some((At::End(8), b'p')), Act::Output(changes)),
                    (None, Act::Output(String::new())),
                ],
            )
            .export("handle", Act::Output(head(200, &headers, "from the route")));
        plugin(root, "evil", r#""base": "evil""#, &guest);
    })
    .await;
    let mut wire = Wire::connect(server.addr).await;
    for (path, body, who) in [
        ("/app/", "from the app", "an app"),
        ("/respond/", "from respond", "a plugin's respond"),
        ("/plain/", "plain app", "a plugin's on_response"),
        ("/_/evil/x", "from the route", "a plugin route"),
    ] {
        let raw = wire.get(path).await;
        if who == "a plugin's on_response" {
            assert_eq!(raw.header("x-kept"), Some("yes"), "{raw:?}");
        }
        assert_host_framed(&raw, body, who);
    }
    // The connection is still the client's: one more request on it works.
    let last = wire.get("/_/api/health").await;
    assert_eq!(last.status, 200);
    server.stop().await;
}

/// The same over HTTP/2, where a guest's `content-length: 0` over a body
/// would have the client reset the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_headers_are_dropped_over_http2() {
    let headers = framing_with(("x-kept", "yes"));
    let server = Server::start(ErrorDetail::Full, |root| {
        framing_app(root, &headers);
    })
    .await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("an HTTP/2 client");
    // Twice: the connection stays usable after the first answer.
    for round in 0..2 {
        let res = h2
            .get(server.url("/app/"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: no HTTP/2 response: {e:?}"));
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-kept"], "yes");
        for (name, value) in FRAMING.iter().skip(1) {
            assert!(
                res.headers().get(*name).is_none_or(|v| v != value),
                "`{name}: {value}` reached the client over HTTP/2"
            );
        }
        let body = res.text().await.expect("the whole body");
        assert_eq!(body, "from the app");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_outside_200_to_599_are_a_502() {
    const BAD: [u16; 6] = [0, 99, 100, 101, 600, 1000];
    // Path bytes `a`..`f` pick the status, in every hook of one plugin.
    let pick = |to: &dyn Fn(u16) -> String, at: At| -> Vec<Branch> {
        BAD.iter()
            .enumerate()
            .map(|(i, &s)| (Some((at, b'a' + i as u8)), Act::Output(to(s))))
            .collect()
    };
    let respond =
        |s: u16| serde_json::json!({"action": "respond", "response": {"status": s}}).to_string();
    let change = |s: u16| serde_json::json!({ "status": s }).to_string();
    let server = Server::start(ErrorDetail::Full, |root| {
        for (i, &s) in BAD.iter().enumerate() {
            app(
                root,
                &format!("s{i}"),
                &Guest::default().export("handle", Act::Output(head(s, &[], "x"))),
                None,
            );
        }
        app(
            root,
            "ok",
            &Guest::default().export("handle", Act::Output(head(200, &[], "ok"))),
            None,
        );
        let mut on_request = pick(&respond, At::Start(25));
        on_request.push((None, Act::Output(r#"{"action":"continue"}"#.into())));
        // on_response sees `"path":"/ok/<x>"}`: `<x>` is 3 bytes from the end.
        let mut on_response = pick(&change, At::End(3));
        on_response.push((None, Act::Output(String::new())));
        let mut route: Vec<_> = pick(&|s| head(s, &[], "x"), At::Start(25));
        route.push((None, Act::Output(head(200, &[], "fine"))));
        let guest = Guest::default()
            .branches("on_request", on_request)
            .branches("on_response", on_response)
            .branches("handle", route);
        plugin(root, "picky", r#""base": "picky""#, &guest);
    })
    .await;
    for (i, status) in BAD.iter().enumerate() {
        let c = (b'a' + i as u8) as char;
        for (path, code, who) in [
            (format!("/s{i}/"), "APP_BAD_RESPONSE", "app"),
            (format!("/{c}"), "PLUGIN_FAILED", "respond"),
            (format!("/ok/{c}"), "PLUGIN_FAILED", "on_response"),
            (format!("/_/picky/{c}/"), "PLUGIN_FAILED", "route"),
        ] {
            let (got, _, body) = server.get(&path).await;
            assert_eq!(got, 502, "{who} answering {status}: {body}");
            assert_eq!(body["code"], code, "{who} answering {status}: {body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!("status {status} is not allowed")),
                "{who} answering {status}: {message}"
            );
        }
    }
    let (ok, _, _) = server.get("/ok/z").await;
    assert_eq!(ok, 200, "a valid answer still passes");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_response_changes_the_status_of_host_errors_too() {
    let server = Server::start(ErrorDetail::Full, |root| {
        let guest = Guest::default().export(
            "on_response",
            Act::Output(r#"{"status":418,"set_headers":[["x-seen","yes"]]}"#.into()),
        );
        plugin(root, "teapot", "", &guest);
    })
    .await;
    let res = reqwest::get(server.url("/no-such-app/"))
        .await
        .expect("request");
    assert_eq!(res.status(), 418, "the plugin's status, not the host's 404");
    assert_eq!(res.headers()["x-seen"], "yes");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "APP_NOT_FOUND", "the host's error body stays");
    assert!(
        body["requestId"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    server.stop().await;
}

/// A plugin letting a request through cannot change how its body is framed:
/// the app reads the body the client sent, whatever lengths the plugin set
/// or removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_reframe_the_request_it_passes_on() {
    let server = Server::start(ErrorDetail::Full, |root| {
        let dir = root.join("apps").join("echo");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("app.wasm"),
            buntime_fixtures::bytes(buntime_fixtures::APP_ECHO),
        )
        .expect("app.wasm");
        let changes = serde_json::json!({
            "action": "continue",
            "set_headers": [
                ["content-length", "3"],
                ["transfer-encoding", "chunked"],
                ["connection", "close"],
                ["x-kept", "yes"],
            ],
            "remove_headers": ["content-length"],
        })
        .to_string();
        plugin(
            root,
            "reframer",
            "",
            &Guest::default().export("on_request", Act::Output(changes)),
        );
    })
    .await;
    let res = reqwest::Client::new()
        .post(server.url("/echo/"))
        .body("hello world")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.expect("the app's echo");
    assert_eq!(seen["body"], "hello world", "{seen}");
    let header = |name: &str| crate::plugins::seen_header(&seen, name);
    assert_eq!(header("x-kept").as_deref(), Some("yes"), "{seen}");
    assert_eq!(header("content-length").as_deref(), Some("11"), "{seen}");
    assert_eq!(header("transfer-encoding"), None, "{seen}");
    assert_eq!(header("connection"), None, "{seen}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_with_a_line_break_is_refused_at_publish() {
    let server = Server::start(ErrorDetail::Full, |root| {
        let guest = Guest::default().branches(
            "handle",
            vec![
                (
                    Some((At::Start(25), b'b')),
                    Act::Publish {
                        event: r#"{"topic":"t.a\nevent: forged","data":1}"#.into(),
                        head: r#"{"status":200}"#.into(),
                    },
                ),
                (
                    None,
                    Act::Publish {
                        event: r#"{"topic":"t.fine","data":1}"#.into(),
                        head: r#"{"status":200}"#.into(),
                    },
                ),
            ],
        );
        plugin(
            root,
            "pub",
            r#""base": "pub", "capabilities": {"events": {"publish": ["t.*"]}}"#,
            &guest,
        );
    })
    .await;
    let text = |path: &'static str| {
        let url = server.url(path);
        async move {
            reqwest::get(url)
                .await
                .expect("request")
                .text()
                .await
                .expect("body")
        }
    };
    let refused = text("/_/pub/b").await;
    assert!(refused.contains("invalid_argument"), "{refused}");
    assert!(refused.contains("control characters"), "{refused}");
    let accepted = text("/_/pub/ok").await;
    assert!(
        accepted.contains("\"ok\""),
        "a clean topic publishes: {accepted}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_names_with_line_breaks_cannot_forge_sse_fields() {
    use futures_util::StreamExt as _;
    let server = Server::start(ErrorDetail::Full, |root| {
        let named = serde_json::json!({
            "status": 200, "events": ["t.*"], "event": "x\r\nevent: forged\ndata: evil", "body": "hello",
        });
        let polled = serde_json::json!({
            "status": 200, "events": ["t.*"],
            "poll": { "function": "produce", "intervalMs": 50 },
        });
        let guest = Guest::default()
            .branches(
                "handle",
                vec![
                    (Some((At::Start(25), b'n')), Act::Output(named.to_string())),
                    (None, Act::Output(polled.to_string())),
                ],
            )
            .export(
                "produce",
                Act::Output(r#"[{"event":"y\nevent: forged","data":"polled"}]"#.into()),
            );
        plugin(
            root,
            "sse",
            r#""base": "stream", "capabilities": {"events": {"subscribe": ["t.*"]}}"#,
            &guest,
        );
    })
    .await;
    for (path, want) in [("/_/stream/n", "hello"), ("/_/stream/p", "polled")] {
        let res = reqwest::get(server.url(path)).await.expect("request");
        assert_eq!(res.status(), 200, "{path}");
        let mut stream = res.bytes_stream();
        let mut seen = String::new();
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(chunk) = stream.next().await {
                seen.push_str(&String::from_utf8_lossy(
                    &chunk.expect("a chunk, not a broken stream"),
                ));
                if seen.contains(want) {
                    break;
                }
            }
        })
        .await;
        assert!(
            read.is_ok() && seen.contains(want),
            "{path}: the event never came: {seen:?}"
        );
        for line in seen.lines() {
            assert!(
                !line.starts_with("event: forged"),
                "{path}: a forged field: {seen:?}"
            );
            assert!(
                !line.starts_with("data: evil"),
                "{path}: a forged field: {seen:?}"
            );
        }
        assert!(
            seen.contains("forged"),
            "{path}: the name is kept, escaped: {seen:?}"
        );
    }
    server.stop().await;
}
