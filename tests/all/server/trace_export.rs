//! The trace exporter end to end: what each export carries (the configured
//! headers), a refused export retried, and the batch sizes of
//! `OTEL_BSP_*` deciding when spans leave. The collectors and the traced
//! server come from `traces.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

use super::TestServer;
use super::traces::{Seen, TRACE_ID, collector, listen, telemetry, traced_get, wait_for};
use crate::plugins::echo;

/// What the flaky collector saw: each export's headers and span count.
type Posts = Seen<(HashMap<String, String>, usize)>;

/// A collector that answers the first export `503` (`Retry-After: 0`) and
/// the later ones `200` with a partial success.
async fn flaky_collector() -> (SocketAddr, Posts) {
    let seen = Posts::default();
    let sink = seen.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: Bytes| async move {
                let request =
                    ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                let spans = request
                    .resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len())
                    .sum();
                let first = sink.all().is_empty();
                sink.push((
                    headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    spans,
                ));
                if first {
                    return axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "0")],
                        "busy",
                    ));
                }
                let answer = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse {
                    partial_success: Some(
                        opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
                            rejected_spans: 0,
                            error_message: String::new(),
                        },
                    ),
                };
                axum::response::IntoResponse::into_response((
                    [("content-type", "application/x-protobuf")],
                    answer.encode_to_vec(),
                ))
            },
        ),
    );
    (listen(app).await, seen)
}

#[tokio::test]
async fn exports_carry_the_configured_headers_and_a_503_is_retried() {
    let (otlp, posts) = flaky_collector().await;
    let tracing = telemetry(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-ignored=general".into()),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "api-key=s%3Dcret,x-team=web".into(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "20".into()),
    ]);
    let server = TestServer::start_plugins_with(echo, |s| s.with_telemetry(tracing)).await;
    assert_eq!(traced_get(&server, "/echo/x").await.status(), 200);
    // The first attempt is refused, the retry delivers the same spans.
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all = posts.all();
        if all.len() >= 2 {
            break all;
        }
        assert!(Instant::now() < deadline, "no retry: {all:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.stop().await;
    let (refused, retried) = (&all[0], &all[1]);
    assert!(refused.1 > 0, "{all:?}");
    assert_eq!(retried.1, refused.1, "{all:?}");
    for (headers, _) in [refused, retried] {
        assert_eq!(headers.get("api-key").map(String::as_str), Some("s=cret"));
        assert_eq!(headers.get("x-team").map(String::as_str), Some("web"));
        assert_eq!(headers.get("x-ignored"), None, "the traces variable wins");
        assert_eq!(
            headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf")
        );
    }
}

/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` sets the spans per export: with a batch
/// of one, a request's spans reach the collector long before the schedule
/// delay (ten minutes here) would send a partial batch.
#[tokio::test]
async fn a_full_batch_is_exported_without_waiting_for_the_delay() {
    let (otlp, spans) = collector().await;
    let traced = telemetry(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000".into()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64".into()),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1".into()),
    ]);
    let server = TestServer::start_plugins_with(echo, |s| s.with_telemetry(traced)).await;
    let res = traced_get(&server, "/echo/x").await;
    assert_eq!(res.status(), 200);
    let names = wait_for(&spans, |all| {
        let names: Vec<String> = all
            .iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .map(|s| s.name.clone())
            .collect();
        (names.len() >= 2).then_some(names)
    })
    .await;
    assert!(names.iter().any(|n| n == "GET"), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(" handle")), "{names:?}");
    server.stop().await;
}
