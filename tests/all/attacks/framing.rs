//! Framing belongs to the host: no guest header, status or event name can
//! split a response, hijack the connection or break an event stream.
//!
//! Also the helpers the response-path attack files share: hostile guests
//! written as WAT ([`Guest`]), a server over `apps/` and `plugins/`
//! ([`Server`]) and raw HTTP/1.1 over one socket ([`Wire`]).

use std::path::Path;
use std::time::Duration;

use buntime::plugins::PluginSources;
use buntime::server::{AppState, ConnectionLimits, ErrorDetail, host_functions, serve_with};
use buntime::wasm::{Engine, EngineConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where a branch of a [`Guest`] export looks for its trigger byte.
#[derive(Debug, Clone, Copy)]
pub(super) enum At {
    /// The input byte at this offset (25: the first byte of the path after
    /// `/` in a `GET` request head, `{"method":"GET","path":"/x`).
    Start(i64),
    /// The input byte this far from the end (3: the path's first byte in an
    /// `on_response` view whose path is `/x`).
    End(i64),
}

/// What an export does.
#[derive(Debug, Clone)]
pub(super) enum Act {
    /// Outputs this text.
    Output(String),
    /// Traps (`unreachable`).
    Trap,
    /// Writes a binary body of `chunk` bytes `times` times, then outputs `head`.
    Body {
        chunk: u32,
        times: u32,
        head: String,
    },
    /// Publishes `event` (the `events_publish` input), writes the host's
    /// answer as the body and outputs `head`.
    Publish { event: String, head: String },
}

/// One branch of an export: its trigger (none: always) and what it does.
pub(super) type Branch = (Option<(At, u8)>, Act);

/// A hostile guest as WAT: exports that each take the first branch whose
/// trigger byte matches (or the one without a trigger).
#[derive(Debug, Default)]
pub(super) struct Guest {
    exports: Vec<(String, Vec<Branch>)>,
}

impl Guest {
    /// An export doing `act`.
    pub(super) fn export(self, name: &str, act: Act) -> Self {
        self.branches(name, vec![(None, act)])
    }

    /// An export with branches (first match wins; `None` always matches).
    pub(super) fn branches(mut self, name: &str, branches: Vec<Branch>) -> Self {
        self.exports.push((name.to_owned(), branches));
        self
    }

    /// The module's text.
    pub(super) fn wat(&self) -> String {
        let mut data = String::new();
        let mut next = 1024u32;
        let mut text = |s: &str| -> (u32, u32) {
            let at = next;
            let escaped: String = s.bytes().map(|b| format!("\\{b:02x}")).collect();
            data.push_str(&format!("  (data (i32.const {at}) \"{escaped}\")\n"));
            next += s.len() as u32 + 1;
            (at, s.len() as u32)
        };
        let mut funcs = String::new();
        for (name, branches) in &self.exports {
            let mut body = String::new();
            for (trigger, act) in branches {
                let action = match act {
                    Act::Output(s) => {
                        let (at, len) = text(s);
                        format!(
                            "(call $out (call $copy (i32.const {at}) (i32.const {len})) (i64.const {len})) (return (i32.const 0))"
                        )
                    }
                    Act::Trap => "unreachable".to_owned(),
                    Act::Body { chunk, times, head } => {
                        let (at, len) = text(head);
                        format!(
                            "(local.set $h (call $alloc (i64.const {chunk})))
                             (local.set $i (i32.const 0))
                             (block $done (loop $w
                               (br_if $done (i32.ge_u (local.get $i) (i32.const {times})))
                               (drop (call $body (local.get $h)))
                               (local.set $i (i32.add (local.get $i) (i32.const 1)))
                               (br $w)))
                             (call $out (call $copy (i32.const {at}) (i32.const {len})) (i64.const {len})) (return (i32.const 0))"
                        )
                    }
                    Act::Publish { event, head } => {
                        let (eat, elen) = text(event);
                        let (at, len) = text(head);
                        format!(
                            "(drop (call $body (call $publish (call $copy (i32.const {eat}) (i32.const {elen})))))
                             (call $out (call $copy (i32.const {at}) (i32.const {len})) (i64.const {len})) (return (i32.const 0))"
                        )
                    }
                };
                body.push_str(&match trigger {
                    None => format!("{action}\n"),
                    Some((at, byte)) => {
                        let offset = match at {
                            At::Start(n) => format!("(i64.const {n})"),
                            At::End(n) => format!("(i64.sub (call $input_len) (i64.const {n}))"),
                        };
                        format!("(if (i32.eq (call $in8 {offset}) (i32.const {byte})) (then {action}))\n")
                    }
                });
            }
            funcs.push_str(&format!(
                "  (func (export \"{name}\") (result i32) (local $h i64) (local $i i32)\n{body} (i32.const 0))\n"
            ));
        }
        let publish = self
            .exports
            .iter()
            .flat_map(|(_, b)| b)
            .any(|(_, a)| matches!(a, Act::Publish { .. }));
        let publish_import = if publish {
            r#"(import "extism:host/user" "events_publish" (func $publish (param i64) (result i64)))"#
        } else {
            ""
        };
        format!(
            r#"(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $out (param i64 i64)))
  (import "extism:host/env" "input_length" (func $input_len (result i64)))
  (import "extism:host/env" "input_load_u8" (func $in8 (param i64) (result i32)))
  (import "extism:host/user" "buntime_response_body_write" (func $body (param i64) (result i64)))
  {publish_import}
  (memory (export "memory") 1)
{data}
  (func $copy (param $ptr i32) (param $len i32) (result i64) (local $h i64) (local $i i32)
    (local.set $h (call $alloc (i64.extend_i32_u (local.get $len))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (call $store8 (i64.add (local.get $h) (i64.extend_i32_u (local.get $i)))
        (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $h))
{funcs})"#
        )
    }
}

/// Installs an app `apps/<name>/app.wasm` (WAT text) with an optional worker.jsonc.
pub(super) fn app(root: &Path, name: &str, guest: &Guest, worker: Option<&str>) {
    let dir = root.join("apps").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("app.wasm"), guest.wat()).expect("app.wasm");
    if let Some(w) = worker {
        std::fs::write(dir.join("worker.jsonc"), w).expect("worker.jsonc");
    }
}

/// Installs a plugin `plugins/<name>` with `extra` manifest fields.
pub(super) fn plugin(root: &Path, name: &str, extra: &str, guest: &Guest) {
    let dir = root.join("plugins").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let comma = if extra.is_empty() { "" } else { "," };
    std::fs::write(
        dir.join("manifest.jsonc"),
        format!(r#"{{ "name": "{name}", "version": "1.0.0"{comma} {extra} }}"#),
    )
    .expect("manifest");
    std::fs::write(dir.join("plugin.wasm"), guest.wat()).expect("plugin.wasm");
}

/// A real server over `dir/apps` and `dir/plugins`.
pub(super) struct Server {
    pub(super) addr: std::net::SocketAddr,
    pub(super) dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts it with `detail` after `setup` filled the dir.
    pub(super) async fn start(detail: ErrorDetail, setup: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["apps", "plugins"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        setup(dir.path());
        let engine = Engine::new(EngineConfig {
            host_functions: host_functions(),
            ..EngineConfig::default()
        })
        .expect("engine");
        let sources = PluginSources {
            dirs: vec![dir.path().join("plugins")],
            data_dir: Some(dir.path().join("data")),
            ..PluginSources::default()
        };
        let state = AppState::build(engine, vec![dir.path().join("apps")], 16, sources)
            .await
            .expect("state")
            .with_error_detail(detail);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(
            listener,
            state,
            async move {
                let _ = rx.await;
            },
            ConnectionLimits::default(),
        ));
        Self {
            addr,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path`: status, `x-request-id` and the body as JSON (`Null` if not JSON).
    pub(super) async fn get(&self, path: &str) -> (u16, String, Value) {
        let res = reqwest::get(self.url(path)).await.expect("request");
        let status = res.status().as_u16();
        let id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = res.text().await.expect("body");
        (
            status,
            id,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// Signals shutdown and waits for the server to finish.
    pub(super) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("serve");
        }
    }
}

/// One raw HTTP/1.1 response.
#[derive(Debug)]
pub(super) struct Raw {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Raw {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive connection, read exactly as the wire frames it.
pub(super) struct Wire {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    pub(super) async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `GET path` and reads one response, framed by its head only.
    pub(super) async fn get(&mut self, path: &str) -> Raw {
        let req = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await.expect("write");
        tokio::time::timeout(Duration::from_secs(5), self.read())
            .await
            .expect("a response within 5 s")
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn read(&mut self) -> Raw {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut raw = Raw {
            status,
            headers,
            body: Vec::new(),
        };
        if raw.header("transfer-encoding") == Some("chunked") {
            loop {
                let line = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    self.fill().await;
                };
                let size =
                    usize::from_str_radix(String::from_utf8_lossy(&self.buf[..line]).trim(), 16)
                        .expect("chunk size");
                self.buf.drain(..line + 2);
                while self.buf.len() < size + 2 {
                    self.fill().await;
                }
                raw.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
        } else {
            let len: usize = raw
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while self.buf.len() < len {
                self.fill().await;
            }
            raw.body = self.buf.drain(..len).collect();
        }
        raw
    }
}

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
        app(
            root,
            "app",
            &Guest::default().export("handle", Act::Output(head(200, &headers, "from the app"))),
            None,
        );
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
