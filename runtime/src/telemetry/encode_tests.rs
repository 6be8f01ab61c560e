//! The hand-written encoder against the SDK's exporter: the same spans as
//! Buntime's records and as the SDK's `SpanData`, through our encoder and
//! through `opentelemetry-proto`'s conversion, decoded with prost, must be
//! the same request.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message as _;

use super::*;
use crate::telemetry::record::Named;

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn context(trace: u128, span: u64, flags: u8, state: TraceState) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::new(flags),
        false,
        state,
    )
}

/// Every kind of value a span of ours carries, edge values included.
fn every_value() -> Vec<KeyValue> {
    vec![
        KeyValue::new("s", "text"),
        KeyValue::new("s.empty", ""),
        KeyValue::new("s.owned", String::from("owned ünïcode")),
        KeyValue::new("i", 443_i64),
        KeyValue::new("i.zero", 0_i64),
        KeyValue::new("i.negative", -1_i64),
        KeyValue::new("i.max", i64::MAX),
        KeyValue::new("i.min", i64::MIN),
        KeyValue::new("s", "a repeated key"),
    ]
}

/// One span both ways: our record (ended at `end`) and the SDK's data.
struct Both {
    record: SpanRecord,
    end: SystemTime,
    data: SpanData,
}

#[allow(clippy::too_many_arguments, reason = "a span's fields, spelled out")]
fn both(
    context: SpanContext,
    parent: SpanId,
    parent_remote: bool,
    name: Cow<'static, str>,
    kind: SpanKind,
    (start, end): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
    status: Status,
) -> Both {
    let mut record = SpanRecord::start_at(
        &context,
        (parent, parent_remote),
        Named::Name(&name, None),
        kind.clone(),
        start,
    );
    for kv in &attributes {
        match &kv.value {
            Value::I64(v) => record.int(static_key(kv.key.as_str()), *v),
            Value::String(v) => record.text(static_key(kv.key.as_str()), v.as_str()),
            other => panic!("spans carry no {other:?}"),
        }
    }
    record.status = status.clone();
    let data = SpanData {
        span_context: context,
        parent_span_id: parent,
        parent_span_is_remote: parent_remote,
        span_kind: kind,
        name,
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: InstrumentationScope::builder("buntime").build(),
    };
    Both { record, end, data }
}

/// Attribute keys are `&'static str` in a record; the test's are leaked.
fn static_key(key: &str) -> &'static str {
    Box::leak(key.to_owned().into_boxed_str())
}

fn spans() -> Vec<Both> {
    let times = (at(1_700_000_000_123_456_789), at(1_700_000_000_223_456_789));
    vec![
        // A server span continuing a remote caller, with every value.
        both(
            context(
                0x0af7651916cd43dd8448eb211c80319c,
                0xb7ad6b7169203331,
                1,
                TraceState::from_key_value([("vendor", "x"), ("b", "2")]).expect("state"),
            ),
            SpanId::from(0x00f067aa0ba902b7),
            true,
            Cow::Borrowed("GET"),
            SpanKind::Server,
            times,
            every_value(),
            Status::Unset,
        ),
        // A child, failed.
        both(
            context(
                0x4bf92f3577b34da6a3ce929d0e0e4736,
                0x00f067aa0ba902b7,
                1,
                TraceState::NONE,
            ),
            SpanId::from(0xb7ad6b7169203331),
            false,
            Cow::Owned("@buntime/plugin-a on_request".to_owned()),
            SpanKind::Internal,
            times,
            vec![
                KeyValue::new("buntime.plugin", "@buntime/plugin-a"),
                KeyValue::new("buntime.hook", "on_request"),
                KeyValue::new("error.type", "timeout"),
            ],
            Status::error("hook timed out"),
        ),
        // Ok, client, a name and a value long enough for two- and
        // three-byte lengths.
        both(
            context(1, 2, 0, TraceState::NONE),
            SpanId::INVALID,
            false,
            Cow::Owned("sql_query ".repeat(20)),
            SpanKind::Client,
            times,
            vec![KeyValue::new("db.query.text", "x".repeat(20_000))],
            Status::Ok,
        ),
        // Attributes on both sides of 128 bytes, where their lengths
        // start taking two bytes.
        both(
            context(1, 3, 1, TraceState::NONE),
            SpanId::INVALID,
            false,
            Cow::Borrowed("edges"),
            SpanKind::Internal,
            times,
            (100..=120)
                .map(|n| KeyValue::new(format!("k{n}"), "v".repeat(n)))
                .chain((0..=2).map(|n| KeyValue::new("k".repeat(120 + n), 1_i64 << (7 * n))))
                .collect(),
            Status::Unset,
        ),
        both(
            context(3, 4, 1, TraceState::NONE),
            SpanId::INVALID,
            false,
            Cow::Borrowed(""),
            SpanKind::Producer,
            times,
            vec![],
            Status::Unset,
        ),
        both(
            context(5, 6, 0xff, TraceState::NONE),
            SpanId::from(7),
            true,
            Cow::Borrowed("c"),
            SpanKind::Consumer,
            (at(0), UNIX_EPOCH - Duration::from_secs(1)),
            vec![],
            Status::error(""),
        ),
    ]
}

fn resource() -> Vec<KeyValue> {
    vec![
        KeyValue::new("service.name", "buntime-edge"),
        KeyValue::new("service.version", "1.2.3"),
        KeyValue::new("team", "web ops"),
        KeyValue::new("replicas", 3_i64),
    ]
}

/// The SDK's resource of `attributes`, and the same attributes in the
/// order it holds them.
fn sdk_resource(attributes: Vec<KeyValue>) -> (Resource, Vec<KeyValue>) {
    let resource = Resource::builder_empty()
        .with_attributes(attributes)
        .build();
    let ordered = resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    (resource, ordered)
}

/// The bytes of the hand-written encoder for `spans`.
fn ours(spans: &[Both], resource: &[KeyValue]) -> Vec<u8> {
    let frame = Frame::new(resource, &InstrumentationScope::builder("buntime").build());
    let mut buf = vec![0; frame.room()];
    for s in spans {
        span(&mut buf, &s.record, s.end);
    }
    let start = frame.head(&mut buf);
    buf.split_off(start)
}

fn sdk(spans: &[Both], resource: &Resource) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            spans.iter().map(|s| s.data.clone()).collect(),
            &ResourceAttributesWithSchema::from(resource),
        ),
    }
}

#[test]
fn the_encoding_is_the_sdk_exporters() {
    let (resource, attributes) = sdk_resource(resource());
    let spans = spans();
    let bytes = ours(&spans, &attributes);
    let decoded = ExportTraceServiceRequest::decode(&bytes[..])
        .expect("our bytes are an ExportTraceServiceRequest");
    let sdk = sdk(&spans, &resource);
    assert_eq!(decoded, sdk);
    // And the same length as prost's: nothing extra, nothing padded.
    assert_eq!(bytes.len(), sdk.encode_to_vec().len());
}

#[test]
fn one_span_and_an_empty_resource() {
    let (resource, attributes) = sdk_resource(vec![]);
    let spans = spans().split_off(3);
    let decoded = ExportTraceServiceRequest::decode(&ours(&spans[..1], &attributes)[..])
        .expect("an ExportTraceServiceRequest");
    assert_eq!(decoded, sdk(&spans[..1], &resource));
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
