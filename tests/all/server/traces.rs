//! OpenTelemetry traces end to end: a collector on loopback (decoding OTLP
//! with the `opentelemetry-proto` types) receives the spans of one request
//! through two plugins and an app, linked to the caller's `traceparent`;
//! the plugin's outbound `http` call carries its client span's context; log
//! lines name the trace and span; a plugin route's `sql` statement is a
//! client span under its `handle`. Without an endpoint nothing is traced and
//! the request is left as it came.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use buntime::telemetry::{LogFormat, Telemetry, TraceConfig, TraceIdsWriter};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::Value;

use super::TestServer;
use crate::plugins::{config, echo, kit, seen_header};

pub(super) const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A span as the collector received it.
#[derive(Debug, Clone, Default)]
pub(super) struct Received {
    pub(super) trace_id: String,
    span_id: String,
    parent: String,
    pub(super) name: String,
    kind: i32,
    attributes: HashMap<String, String>,
    service: String,
    /// Start and end, nanoseconds since the Unix epoch.
    start: u64,
    end: u64,
}

/// What a loopback listener saw: exported spans, or request headers.
#[derive(Clone, Default)]
pub(super) struct Seen<T>(Arc<Mutex<Vec<T>>>);

impl<T: Clone> Seen<T> {
    pub(super) fn push(&self, v: T) {
        self.0.lock().expect("lock").push(v);
    }
    pub(super) fn all(&self) -> Vec<T> {
        self.0.lock().expect("lock").clone()
    }
}

pub(super) async fn listen(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// An OTLP/HTTP collector: `POST /v1/traces` with a protobuf body.
pub(super) async fn collector() -> (SocketAddr, Seen<Received>) {
    let seen = Seen::<Received>::default();
    let sink = seen.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| async move {
            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
            for rs in request.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| text(kv.value.as_ref()))
                    .unwrap_or_default();
                for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                    sink.push(Received {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                            .collect(),
                        service: service.clone(),
                        start: span.start_time_unix_nano,
                        end: span.end_time_unix_nano,
                    });
                }
            }
            (
                [("content-type", "application/x-protobuf")],
                Vec::<u8>::new(),
            )
        }),
    );
    (listen(app).await, seen)
}

/// A listener that records the headers of every request it answers.
async fn recorder() -> (SocketAddr, Seen<HashMap<String, String>>) {
    let seen = Seen::default();
    let sink = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| async move {
        sink.push(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
        );
        "recorded"
    });
    (listen(app).await, seen)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// `(trace id, span id)` of a `traceparent`.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "`{traceparent}` is not a traceparent");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Tracing as the variables in `vars` configure it.
pub(super) fn telemetry(vars: &[(&str, String)]) -> Telemetry {
    let vars = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let config = TraceConfig::from_map(&vars).expect("valid OTEL_* settings");
    Telemetry::start(config.as_ref()).expect("tracing starts")
}

/// Two kit plugins (`b` calls `fetch` over `http`) in front of the echo app.
fn setup(root: &std::path::Path, fetch: SocketAddr) {
    echo(root);
    kit(root, "a", r#""base": "a""#);
    kit(
        root,
        "b",
        r#""base": "b", "capabilities": { "http": ["http://127.0.0.1:*"], "log": true, "sql": ["default"] }"#,
    );
    config(
        root,
        &format!(
            r#"{{ plugins: [["a", {{ requestHeader: "x-a=1" }}], ["b", {{ fetch: "http://{fetch}/hook", log: "true" }}]] }}"#
        ),
    );
}

pub(super) async fn traced_get(server: &TestServer, path: &str) -> reqwest::Response {
    super::client()
        .get(server.url(path))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .header("tracestate", "vendor=x")
        .send()
        .await
        .expect("request")
}

/// A log writer for the test's own subscriber.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn one_request_through_two_plugins_and_an_app_is_one_trace() {
    // The test's runtime runs on this thread, so a thread-local subscriber
    // sees the server's log lines (the guests' included).
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(TraceIdsWriter::new(move || writer.clone(), LogFormat::Text))
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);

    let (otlp, spans) = collector().await;
    let (hook, outbound) = recorder().await;
    let tracing = telemetry(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_SERVICE_NAME", "shop".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "20".into()),
    ]);
    assert!(tracing.is_on());
    let server =
        TestServer::start_plugins_with(|root| setup(root, hook), |s| s.with_telemetry(tracing))
            .await;

    let res = traced_get(&server, "/echo/x").await;
    assert_eq!(res.status(), 200);
    let echoed: Value = res.json().await.expect("json");
    assert_eq!(seen_header(&echoed, "x-fetched").as_deref(), Some("200"));

    // Server span, a/b on_request, b's http call, the app, b/a on_response.
    let trace = wait_for(&spans, |all| {
        let trace: Vec<Received> = all
            .iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .cloned()
            .collect();
        (trace.len() >= 7).then_some(trace)
    })
    .await;
    assert_eq!(trace.len(), 7, "{trace:#?}");
    let named = |name: &str| {
        trace
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span `{name}` in {trace:#?}"))
    };
    let server_span = trace
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("a server span");
    assert_eq!(server_span.name, "GET");
    assert_eq!(server_span.parent, CALLER_SPAN);
    assert_eq!(server_span.service, "shop");
    let attr = |s: &Received, k: &str| s.attributes.get(k).cloned().unwrap_or_default();
    assert_eq!(attr(server_span, "http.request.method"), "GET");
    assert_eq!(attr(server_span, "url.path"), "/echo/x");
    assert_eq!(attr(server_span, "url.scheme"), "http");
    assert_eq!(attr(server_span, "http.response.status_code"), "200");
    assert_eq!(attr(server_span, "server.address"), "127.0.0.1");
    assert_eq!(attr(server_span, "buntime.app"), "echo");
    for name in [
        "a on_request",
        "b on_request",
        "b on_response",
        "a on_response",
    ] {
        let hook = named(name);
        assert_eq!(hook.parent, server_span.span_id, "{name}");
        assert_eq!(hook.kind, SpanKind::Internal as i32);
    }
    assert_eq!(attr(named("b on_request"), "buntime.plugin"), "b");
    assert_eq!(attr(named("b on_request"), "buntime.hook"), "on_request");
    let app = trace
        .iter()
        .find(|s| s.name.ends_with(" handle"))
        .expect("the app's span");
    assert_eq!(app.parent, server_span.span_id);
    assert_eq!(attr(app, "buntime.app"), "echo");
    let client = trace
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("the http call's span");
    assert_eq!(client.parent, named("b on_request").span_id);
    assert_eq!(attr(client, "http.request.method"), "GET");
    assert_eq!(attr(client, "http.response.status_code"), "200");
    assert_eq!(attr(client, "url.full"), format!("http://{hook}/hook"));

    // The outbound call carried the client span's context, the caller's
    // tracestate kept; the app saw its own call's context.
    let sent = outbound.all();
    assert_eq!(sent.len(), 1);
    let (trace_id, parent) = ids(&sent[0]["traceparent"]);
    assert_eq!(
        (trace_id.as_str(), parent.as_str()),
        (TRACE_ID, client.span_id.as_str())
    );
    assert_eq!(sent[0]["tracestate"], "vendor=x");
    let seen = seen_header(&echoed, "traceparent").expect("the app sees a traceparent");
    assert_eq!(ids(&seen), (TRACE_ID.to_owned(), app.span_id.clone()));

    // The guest's log line names the trace and the hook's span.
    let logged = String::from_utf8_lossy(&lines.0.lock().expect("lock")).into_owned();
    let line = logged
        .lines()
        .find(|l| l.contains("kit saw /echo/x"))
        .unwrap_or_else(|| panic!("no guest log line in {logged}"));
    assert!(line.contains(&format!("trace_id={TRACE_ID}")), "{line}");
    assert!(
        line.contains(&format!("span_id={}", named("b on_request").span_id)),
        "{line}"
    );

    // A plugin route: its `handle` span, and under it the statement's.
    let res = super::client()
        .post(server.url("/_/b/sql"))
        .json(&serde_json::json!({"op": "query", "db": "default", "sql": "select 1"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let (statement, route) = wait_for(&spans, |all| {
        let statement = all.iter().find(|s| s.name == "sql_query default")?;
        let route = all.iter().find(|s| s.span_id == statement.parent)?;
        Some((statement.clone(), route.clone()))
    })
    .await;
    assert_eq!(route.name, "b handle");
    assert_eq!(statement.kind, SpanKind::Client as i32);
    assert_eq!(attr(&statement, "db.system.name"), "sqlite");
    assert_eq!(attr(&statement, "db.namespace"), "default");
    assert_eq!(attr(&statement, "db.query.text"), "select 1");
    server.stop().await;
}

/// Polls the collector until `found` finds what it looks for.
pub(super) async fn wait_for<T>(
    spans: &Seen<Received>,
    found: impl Fn(&[Received]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = spans.all();
        if let Some(t) = found(&all) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "the collector never got them: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn without_an_endpoint_or_when_sampled_out_a_request_is_left_as_it_came() {
    let off = telemetry(&[("OTEL_SERVICE_NAME", "shop".into())]);
    assert!(!off.is_on(), "no endpoint: no tracing");
    let server = TestServer::start_plugins_with(echo, |s| s.with_telemetry(off)).await;
    let res = traced_get(&server, "/echo/x").await;
    assert_eq!(res.status(), 200);
    let echoed: Value = res.json().await.expect("json");
    let caller = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    assert_eq!(seen_header(&echoed, "traceparent"), Some(caller));
    server.stop().await;

    // Configured, but the sampler drops everything: still no span and no
    // header changed; the shutdown flushes, so the collector is final then.
    let (otlp, spans) = collector().await;
    let dropped = telemetry(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_TRACES_SAMPLER", "traceidratio".into()),
        ("OTEL_TRACES_SAMPLER_ARG", "0".into()),
    ]);
    let server = TestServer::start_plugins_with(echo, |s| s.with_telemetry(dropped)).await;
    let res = super::client()
        .get(server.url("/echo/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let echoed: Value = res.json().await.expect("json");
    assert_eq!(seen_header(&echoed, "traceparent"), None);
    server.stop().await;
    assert!(spans.all().is_empty(), "{:#?}", spans.all());
}

#[tokio::test]
async fn core_routes_are_traced_and_a_streamed_body_ends_its_span() {
    // A subscriber of this thread's own, as the other test here has: the
    // `tracing` spans' callsites then stay enabled for both when they run
    // at once.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);
    let (otlp, spans) = collector().await;
    let tracing = telemetry(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "20".into()),
    ]);
    let server = TestServer::start_plugins_with(
        |root| {
            kit(
                root,
                "k",
                r#""base": "k", "capabilities": { "events": { "subscribe": ["kit.*"] } }"#,
            )
        },
        |s| s.with_telemetry(tracing),
    )
    .await;
    let server_span = |path: &'static str| {
        move |all: &[Received]| {
            all.iter()
                .find(|s| {
                    s.kind == SpanKind::Server as i32
                        && s.attributes.get("url.path").map(String::as_str) == Some(path)
                })
                .cloned()
        }
    };
    // Core routes: the metrics exposition and the API.
    for path in ["/_/metrics", "/_/api/apps"] {
        assert_eq!(traced_get(&server, path).await.status(), 200, "{path}");
    }
    for path in ["/_/metrics", "/_/api/apps"] {
        let span = wait_for(&spans, server_span(path)).await;
        assert_eq!(span.trace_id, TRACE_ID, "{path}");
        assert_eq!(span.parent, CALLER_SPAN, "{path}");
        assert_eq!(
            span.attributes
                .get("http.response.status_code")
                .map(String::as_str),
            Some("200"),
            "{path}"
        );
    }

    // A plugin route's event stream: the head comes at once, the body stays
    // open until the client goes away.
    let opened = Instant::now();
    let stream = traced_get(&server, "/_/k/events").await;
    assert_eq!(stream.status(), 200);
    // Held open a while: a span that ended with the head would be shorter.
    // The sleep is the stimulus, not a wait for an outcome: a longer one on
    // a slow machine still meets `lasted >= held`.
    let held = Duration::from_millis(300);
    tokio::time::sleep(held).await;
    drop(stream);
    let open_for = opened.elapsed();
    let span = wait_for(&spans, server_span("/_/k/events")).await;
    let lasted = Duration::from_nanos(span.end.saturating_sub(span.start));
    assert!(
        lasted >= held && lasted <= open_for + Duration::from_secs(5),
        "the span lasted {lasted:?}; the stream was open {open_for:?}"
    );
    server.stop().await;
}

/// A request the proxy plugin delegates to an upstream carries the caller's
/// trace and the `traceparent` of the proxy's `on_request` span, whose
/// parent is the server span; the plugin before it saw its own span's.
#[tokio::test]
async fn a_proxied_request_carries_the_proxy_hooks_traceparent() {
    use crate::plugins::proxy::{PROXY, rule, setup, upstream};
    let (otlp, spans) = collector().await;
    let (up, _) = upstream().await;
    let traced = telemetry(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
    ]);
    let rules = serde_json::json!({
        "rules": [rule("^/svc/(.*)$", &format!("http://{up}/echo/$1"), serde_json::json!({}))]
    });
    let server = TestServer::start_embedded_with(
        buntime::plugins::embedded(),
        |root| setup(root, rules, None),
        |s| s.with_telemetry(traced),
    )
    .await;
    let res = traced_get(&server, "/svc/x").await;
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.expect("json");
    let hook_name = format!("{PROXY} on_request");
    let (server_span, hook) = wait_for(&spans, |all| {
        let server_span = all.iter().find(|s| s.kind == SpanKind::Server as i32)?;
        let hook = all.iter().find(|s| s.name == hook_name)?;
        Some((server_span.clone(), hook.clone()))
    })
    .await;
    assert_eq!(hook.trace_id, TRACE_ID);
    assert_eq!(hook.parent, server_span.span_id);
    let sent = seen_header(&seen, "traceparent").expect("the upstream gets a traceparent");
    assert_eq!(ids(&sent), (TRACE_ID.to_owned(), hook.span_id.clone()));
    assert_eq!(
        seen_header(&seen, "tracestate").as_deref(),
        Some("vendor=x"),
        "the caller's trace state is passed on"
    );
    server.stop().await;
}
