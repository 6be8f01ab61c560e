//! Hostile guests written as WAT ([`Guest`]), a real server over `apps/` and
//! `plugins/` ([`Server`]) and raw HTTP/1.1 over one socket ([`Wire`]): what
//! the response-path attack files (framing, errors, allocation) share.

use std::path::Path;
use std::time::Duration;

use buntime::plugins::PluginSources;
use buntime::server::{AppState, ConnectionLimits, ErrorDetail, host_functions, serve_with};
use buntime::wasm::{Engine, EngineConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where a branch of a [`Guest`] export looks for its trigger byte.
#[derive(Debug, Clone, Copy)]
pub(crate) enum At {
    /// The input byte at this offset (25: the first byte of the path after
    /// `/` in a `GET` request head, `{"method":"GET","path":"/x`).
    Start(i64),
    /// The input byte this far from the end (3: the path's first byte in an
    /// `on_response` view whose path is `/x`).
    End(i64),
}

/// What an export does.
#[derive(Debug, Clone)]
pub(crate) enum Act {
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
pub(crate) type Branch = (Option<(At, u8)>, Act);

/// A hostile guest as WAT: exports that each take the first branch whose
/// trigger byte matches (or the one without a trigger).
#[derive(Debug, Default)]
pub(crate) struct Guest {
    exports: Vec<(String, Vec<Branch>)>,
}

impl Guest {
    /// An export doing `act`.
    pub(crate) fn export(self, name: &str, act: Act) -> Self {
        self.branches(name, vec![(None, act)])
    }

    /// An export with branches (first match wins; `None` always matches).
    pub(crate) fn branches(mut self, name: &str, branches: Vec<Branch>) -> Self {
        self.exports.push((name.to_owned(), branches));
        self
    }

    /// The module's text.
    pub(crate) fn wat(&self) -> String {
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
pub(crate) fn app(root: &Path, name: &str, guest: &Guest, worker: Option<&str>) {
    let dir = root.join("apps").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("app.wasm"), guest.wat()).expect("app.wasm");
    if let Some(w) = worker {
        std::fs::write(dir.join("worker.jsonc"), w).expect("worker.jsonc");
    }
}

/// Installs a plugin `plugins/<name>` with `extra` manifest fields.
pub(crate) fn plugin(root: &Path, name: &str, extra: &str, guest: &Guest) {
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
pub(crate) struct Server {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts it with `detail` after `setup` filled the dir.
    pub(crate) async fn start(detail: ErrorDetail, setup: impl FnOnce(&Path)) -> Self {
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path`: status, `x-request-id` and the body as JSON (`Null` if not JSON).
    pub(crate) async fn get(&self, path: &str) -> (u16, String, Value) {
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
    pub(crate) async fn stop(mut self) {
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
pub(crate) struct Raw {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Raw {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive connection, read exactly as the wire frames it.
pub(crate) struct Wire {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `GET path` and reads one response, framed by its head only.
    pub(crate) async fn get(&mut self, path: &str) -> Raw {
        // A loopback host: plugin routes answer local clients without a key.
        let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
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
