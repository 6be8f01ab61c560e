//! The hand-written encoder against the SDK's exporter: the same spans
//! through both, decoded with prost, must be the same request.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message as _;

use super::*;

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn context(trace: u128, span: u64, flags: u8, remote: bool, state: TraceState) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::new(flags),
        remote,
        state,
    )
}

/// Every attribute value type the API has, edge values included.
fn every_value() -> Vec<KeyValue> {
    vec![
        KeyValue::new("s", "text"),
        KeyValue::new("s.empty", ""),
        KeyValue::new("s.owned", String::from("owned ünïcode")),
        KeyValue::new("i", 443_i64),
        KeyValue::new("i.zero", 0_i64),
        KeyValue::new("i.negative", -1_i64),
        KeyValue::new("i.max", i64::MAX),
        KeyValue::new("b.true", true),
        KeyValue::new("b.false", false),
        KeyValue::new("f", 0.25_f64),
        KeyValue::new("f.zero", 0.0_f64),
        KeyValue::new("f.negative", -1e300_f64),
        KeyValue::new("a.b", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("a.i", Value::Array(Array::I64(vec![0, -7, 1 << 40]))),
        KeyValue::new("a.f", Value::Array(Array::F64(vec![1.5, 0.0]))),
        KeyValue::new(
            "a.s",
            Value::Array(Array::String(vec![
                StringValue::from("x"),
                StringValue::from(""),
            ])),
        ),
        KeyValue::new("a.empty", Value::Array(Array::I64(vec![]))),
    ]
}

fn spans() -> Vec<SpanData> {
    let scope = InstrumentationScope::builder("buntime").build();
    let base = |name: &'static str, kind: SpanKind, status: Status| SpanData {
        span_context: context(
            0x4bf92f3577b34da6a3ce929d0e0e4736,
            0x00f067aa0ba902b7,
            1,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: kind,
        name: Cow::Borrowed(name),
        start_time: at(1_700_000_000_123_456_789),
        end_time: at(1_700_000_000_223_456_789),
        attributes: vec![],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    };
    // A server span continuing a remote caller, with every value type.
    let mut server = base("GET", SpanKind::Server, Status::Unset);
    server.span_context = context(
        0x0af7651916cd43dd8448eb211c80319c,
        0xb7ad6b7169203331,
        1,
        false,
        TraceState::from_key_value([("vendor", "x"), ("b", "2")]).expect("state"),
    );
    server.parent_span_id = SpanId::from(0x00f067aa0ba902b7);
    server.parent_span_is_remote = true;
    server.attributes = every_value();
    server.dropped_attributes_count = 3;
    // A child with events and links, failed.
    let mut child = base(
        "@buntime/plugin-a on_request",
        SpanKind::Internal,
        Status::error("hook timed out"),
    );
    child.parent_span_id = SpanId::from(0xb7ad6b7169203331);
    child.name = Cow::Owned("@buntime/plugin-a on_request".to_owned());
    child.attributes = vec![
        KeyValue::new("buntime.plugin", "@buntime/plugin-a"),
        KeyValue::new("buntime.hook", "on_request"),
        KeyValue::new("error.type", "timeout"),
    ];
    child.events.events = vec![
        Event::new("exception", at(1_700_000_000_200_000_000), every_value(), 2),
        Event::new(String::new(), at(0), vec![], 0),
    ];
    child.events.dropped_count = 4;
    child.links.links = vec![
        Link::new(
            context(7, 8, 0, true, TraceState::NONE),
            vec![KeyValue::new("link.i", 5_i64)],
            1,
        ),
        Link::new(
            context(
                9,
                10,
                0xff,
                false,
                TraceState::from_key_value([("k", "v")]).expect("state"),
            ),
            vec![],
            0,
        ),
    ];
    child.links.dropped_count = 6;
    // Ok, client, a name and a value long enough for two- and three-byte
    // lengths.
    let mut client = base("sql_query default", SpanKind::Client, Status::Ok);
    client.attributes = vec![KeyValue::new("db.query.text", "x".repeat(20_000))];
    client.span_context = context(1, 2, 0, false, TraceState::NONE);
    let producer = base("", SpanKind::Producer, Status::Unset);
    let mut consumer = base("c", SpanKind::Consumer, Status::error(""));
    consumer.start_time = at(0);
    consumer.end_time = UNIX_EPOCH - Duration::from_secs(1);
    vec![server, child, client, producer, consumer]
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "buntime-edge"),
            KeyValue::new("service.version", "1.2.3"),
            KeyValue::new("team", "web ops"),
            KeyValue::new("replicas", 3_i64),
        ])
        .build()
}

/// The bytes of the hand-written encoder for `spans`.
fn ours(spans: &[SpanData], resource: &Resource) -> Vec<u8> {
    let frame = Frame::new(resource, &spans[0].instrumentation_scope);
    let mut buf = vec![0; frame.room()];
    for s in spans {
        span(&mut buf, s);
    }
    let start = frame.head(&mut buf);
    buf.split_off(start)
}

#[test]
fn the_encoding_is_the_sdk_exporters() {
    let resource = resource();
    let spans = spans();
    let decoded = ExportTraceServiceRequest::decode(&ours(&spans, &resource)[..])
        .expect("our bytes are an ExportTraceServiceRequest");
    let sdk = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            spans,
            &ResourceAttributesWithSchema::from(&resource),
        ),
    };
    assert_eq!(decoded, sdk);
    // And the same length as prost's: nothing extra, nothing padded.
    assert_eq!(
        ours(&self::spans(), &resource).len(),
        sdk.encode_to_vec().len()
    );
}

#[test]
fn one_span_and_an_empty_resource() {
    let resource = Resource::builder_empty().build();
    let spans = spans().split_off(3);
    let decoded = ExportTraceServiceRequest::decode(&ours(&spans[..1], &resource)[..])
        .expect("an ExportTraceServiceRequest");
    let sdk = group_spans_by_resource_and_scope(
        spans[..1].to_vec(),
        &ResourceAttributesWithSchema::from(&resource),
    );
    assert_eq!(decoded.resource_spans, sdk);
}

#[test]
fn partial_success_is_read_from_the_collectors_answer() {
    let answer = |rejected: i64, message: &str| {
        ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: message.to_owned(),
            }),
        }
        .encode_to_vec()
    };
    assert_eq!(
        partial_success(&answer(3, "too old")),
        Some((3, "too old".to_owned()))
    );
    assert_eq!(partial_success(&answer(0, "")), Some((0, String::new())));
    assert_eq!(partial_success(&[]), None);
    // Unknown fields are skipped; garbage is no answer.
    let mut with_unknown = vec![0x48, 0x01, 0x25, 1, 2, 3, 4];
    with_unknown.extend(answer(1, "x"));
    assert_eq!(partial_success(&with_unknown), Some((1, "x".to_owned())));
    assert_eq!(partial_success(&[0x0a, 0x05, 0x08]), None);
    assert_eq!(partial_success(&[0xff; 12]), None);
}
