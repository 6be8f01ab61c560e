//! OTLP protobuf (`ExportTraceServiceRequest`), written by hand: each span
//! is encoded straight from its [`SpanRecord`] into the bytes of the batch
//! it joins, and an export only puts the request's head in front of them.
//!
//! Hand-written because of what the usual route costs per span: an
//! exporter built on `opentelemetry-proto` first converts a batch into
//! prost structs (every id, name, key and value copied into a fresh `Vec` or
//! `String`, spans grouped through a hash map), has prost walk them twice
//! (sizes, then bytes) and then frees it all. Here a span costs one pass
//! over its fields into a buffer that is already there; its attributes were
//! encoded when they were set.
//!
//! The wire format is the protobuf one (varints, length-delimited fields),
//! with the field numbers of `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto` and `resource/v1/resource.proto`. A batch is a
//! run of `ScopeSpans.spans` fields (tag 2, one per span); [`Frame::head`]
//! writes `ExportTraceServiceRequest { resource_spans: [ResourceSpans {
//! resource, scope_spans: [ScopeSpans { scope, spans }] }] }` around them.
//! Every span of this server has the one instrumentation scope, so one
//! scope holds them all. `encode_tests.rs` decodes these bytes with
//! `opentelemetry-proto`'s types and compares them with what the SDK's
//! conversion makes of the same spans.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};

use super::record::SpanRecord;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// The longest varint (a `u64`).
const MAX_VARINT: usize = 10;

/// `SpanFlags`: the flags say whether the parent is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Writes the `Span` fields known when a span starts into its (empty)
/// field buffer: trace and span ids, the parent's, flags, kind, start time
/// and trace state. Put together on the stack, at fixed places, and
/// appended at once.
pub(super) fn span_start(
    buf: &mut Vec<u8>,
    context: &SpanContext,
    (parent, parent_remote): (SpanId, bool),
    kind: &SpanKind,
    start: SystemTime,
) {
    let mut fixed = [0u8; 55];
    fixed[0] = tag_byte(1, LEN);
    fixed[1] = 16;
    fixed[2..18].copy_from_slice(&context.trace_id().to_bytes());
    fixed[18] = tag_byte(2, LEN);
    fixed[19] = 8;
    fixed[20..28].copy_from_slice(&context.span_id().to_bytes());
    let mut flags = u32::from(context.trace_flags().to_u8()) | HAS_IS_REMOTE;
    if parent_remote {
        flags |= IS_REMOTE;
    }
    // Field 16 takes a two-byte tag.
    fixed[28] = (16 << 3 | FIXED32 as u8) | 0x80;
    fixed[29] = 1;
    fixed[30..34].copy_from_slice(&flags.to_le_bytes());
    fixed[34] = tag_byte(6, VARINT);
    fixed[35] = span_kind(kind);
    let mut len = 36 + time_field(&mut fixed[36..], 7, start);
    if parent != SpanId::INVALID {
        fixed[len] = tag_byte(4, LEN);
        fixed[len + 1] = 8;
        fixed[len + 2..len + 10].copy_from_slice(&parent.to_bytes());
        len += 10;
    }
    buf.extend_from_slice(&fixed[..len]);
    let state = context.trace_state();
    if *state != TraceState::NONE {
        bytes(buf, 3, state.header().as_bytes());
    }
}

/// Appends `span`, ended at `end`, to a batch, as a `ScopeSpans.spans`
/// field: its length, the fields it has had since its start, then its end
/// time and status.
pub(super) fn span(buf: &mut Vec<u8>, span: &SpanRecord, end: SystemTime) {
    // End time and `Status` (always present, as the SDK's exporter sends
    // it): its code, and a description for an error.
    let mut tail = [0u8; 10];
    let mut len = time_field(&mut tail, 8, end);
    tail[len] = tag_byte(15, LEN);
    len += 1;
    let (code, description): (Option<u8>, &[u8]) = match &span.status {
        Status::Unset => (None, &[]),
        Status::Ok => (Some(1), &[]),
        Status::Error { description } => (Some(2), description.as_bytes()),
    };
    let status = code.map_or(0, |_| field_len(description.len()) + 2);
    let total = span.fields.len() + len + varint_len(status as u64) + status;
    buf.reserve(1 + MAX_VARINT + total);
    buf.push(tag_byte(2, LEN));
    varint(buf, total as u64);
    buf.extend_from_slice(&span.fields);
    buf.extend_from_slice(&tail[..len]);
    varint(buf, status as u64);
    if let Some(code) = code {
        bytes(buf, 2, description);
        buf.extend_from_slice(&[tag_byte(3, VARINT), code]);
    }
}

/// Writes a timestamp field (`fixed64` nanoseconds; left out at 0, as
/// proto3 does) at the start of `out`. Returns its length.
fn time_field(out: &mut [u8], field: u32, time: SystemTime) -> usize {
    let nanos = nanos(time);
    if nanos == 0 {
        return 0;
    }
    out[0] = tag_byte(field, FIXED64);
    out[1..9].copy_from_slice(&nanos.to_le_bytes());
    9
}

/// The one-byte tag of a field numbered below 16.
const fn tag_byte(field: u32, wire: u32) -> u8 {
    (field << 3 | wire) as u8
}

/// What [`bytes`] writes for `len` bytes.
fn field_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + varint_len(len as u64) + len
    }
}

/// Appends the `Span.name` field, `"{name} {suffix}"` with a suffix, to
/// `buf` (no string of the joined name is made).
pub(super) fn name(buf: &mut Vec<u8>, name: &str, suffix: Option<&str>) {
    let len = name.len() + suffix.map_or(0, |s| 1 + s.len());
    if len == 0 {
        return;
    }
    tag(buf, 5, LEN);
    varint(buf, len as u64);
    buf.extend_from_slice(name.as_bytes());
    if let Some(suffix) = suffix {
        buf.push(b' ');
        buf.extend_from_slice(suffix.as_bytes());
    }
}

// The attributes are written with their lengths computed first, rather
// than through `nested`: a span sets several on every sampled request, and
// one pass with no length patched afterwards is about half the work.

/// Appends a string attribute (a `Span.attributes` field) to `buf`.
#[inline]
pub(super) fn string_attribute(buf: &mut Vec<u8>, key: &str, value: &str) {
    // `KeyValue { key, value: AnyValue { string_value } }`: when the whole
    // field is under 128 bytes (nearly every attribute), every length in it
    // takes one byte, and it is two four-byte heads and the two strings.
    let key_value = key.len() + value.len() + 6;
    if key_value < 0x80 {
        buf.reserve(2 + key_value);
        buf.extend_from_slice(&[
            tag_byte(9, LEN),
            key_value as u8,
            tag_byte(1, LEN),
            key.len() as u8,
        ]);
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(&[
            tag_byte(2, LEN),
            value.len() as u8 + 2,
            tag_byte(1, LEN),
            value.len() as u8,
        ]);
        buf.extend_from_slice(value.as_bytes());
        return;
    }
    let any = 1 + varint_len(value.len() as u64) + value.len();
    key_value_head(buf, key, any);
    tag(buf, 1, LEN);
    varint(buf, value.len() as u64);
    buf.extend_from_slice(value.as_bytes());
}

/// Appends an integer attribute (a `Span.attributes` field) to `buf`.
pub(super) fn int_attribute(buf: &mut Vec<u8>, key: &str, value: i64) {
    // `AnyValue { int_value }`.
    let any = 1 + varint_len(value as u64);
    key_value_head(buf, key, any);
    tag(buf, 3, VARINT);
    varint(buf, value as u64);
}

/// A `Span.attributes` field up to its value's `AnyValue` message, which
/// takes `any` bytes and is to follow.
fn key_value_head(buf: &mut Vec<u8>, key: &str, any: usize) {
    let key_value = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
    buf.reserve(1 + varint_len(key_value as u64) + key_value);
    tag(buf, 9, LEN);
    varint(buf, key_value as u64);
    tag(buf, 1, LEN);
    varint(buf, key.len() as u64);
    buf.extend_from_slice(key.as_bytes());
    tag(buf, 2, LEN);
    varint(buf, any as u64);
}

/// What goes around every batch: the resource and the scope, encoded once.
#[derive(Debug, Clone)]
pub(super) struct Frame {
    /// The `ResourceSpans.resource` field.
    resource: Vec<u8>,
    /// `ScopeSpans.scope` and `.schema_url` fields.
    scope: Vec<u8>,
}

impl Frame {
    /// The frame of a `resource` (its attributes, each key once) and
    /// `scope`.
    pub(super) fn new(resource: &[KeyValue], scope: &InstrumentationScope) -> Self {
        let mut r = Vec::new();
        nested(&mut r, 1, |b| {
            for attribute in resource {
                nested(b, 1, |b| key_value(b, attribute));
            }
        });
        let mut s = Vec::new();
        nested(&mut s, 1, |b| {
            bytes(b, 1, scope.name().as_bytes());
            bytes(b, 2, scope.version().unwrap_or_default().as_bytes());
            for attribute in scope.attributes() {
                nested(b, 3, |b| key_value(b, attribute));
            }
        });
        if let Some(url) = scope.schema_url() {
            bytes(&mut s, 3, url.as_bytes());
        }
        Self {
            resource: r,
            scope: s,
        }
    }

    /// Bytes a batch keeps free at its front for [`Frame::head`].
    pub(super) fn room(&self) -> usize {
        self.resource.len() + self.scope.len() + 2 * (1 + MAX_VARINT)
    }

    /// Writes the request's head into `buf[..room]`, whose spans follow at
    /// `room`, right before them. Returns where the request starts.
    pub(super) fn head(&self, buf: &mut [u8]) -> usize {
        let room = self.room();
        let spans = buf.len() - room;
        let scope_spans = self.scope.len() + spans;
        let resource_spans = self.resource.len() + 1 + varint_len(scope_spans as u64) + scope_spans;
        let mut head = Vec::with_capacity(room);
        tag(&mut head, 1, LEN);
        varint(&mut head, resource_spans as u64);
        head.extend_from_slice(&self.resource);
        tag(&mut head, 2, LEN);
        varint(&mut head, scope_spans as u64);
        head.extend_from_slice(&self.scope);
        let start = room - head.len();
        buf[start..room].copy_from_slice(&head);
        start
    }
}

/// The `partial_success` of an `ExportTraceServiceResponse`: the spans the
/// collector rejected and its message, when it says so. `None` for an empty
/// or unreadable answer.
pub(super) fn partial_success(response: &[u8]) -> Option<(i64, String)> {
    let mut found = None;
    for (field, value) in Fields(response) {
        if let (1, Field::Len(inner)) = (field, value?) {
            let (mut rejected, mut message) = (0, String::new());
            for (field, value) in Fields(inner) {
                match (field, value?) {
                    (1, Field::Varint(n)) => rejected = n as i64,
                    (2, Field::Len(text)) => message = String::from_utf8_lossy(text).into_owned(),
                    _ => {}
                }
            }
            found = Some((rejected, message));
        }
    }
    found
}

fn span_kind(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn key_value(buf: &mut Vec<u8>, kv: &KeyValue) {
    bytes(buf, 1, kv.key.as_str().as_bytes());
    nested(buf, 2, |b| any_value(b, &kv.value));
}

/// An `AnyValue`'s `value` (a `oneof`: written even when it is the default).
fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(v) => {
            tag(buf, 2, VARINT);
            varint(buf, u64::from(*v));
        }
        Value::I64(v) => {
            tag(buf, 3, VARINT);
            varint(buf, *v as u64);
        }
        Value::F64(v) => {
            tag(buf, 4, FIXED64);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        Value::String(v) => string_value(buf, v.as_str()),
        Value::Array(array) => nested(buf, 5, |b| match array {
            Array::Bool(vs) => vs.iter().for_each(|v| {
                nested(b, 1, |b| any_value(b, &Value::Bool(*v)));
            }),
            Array::I64(vs) => vs.iter().for_each(|v| {
                nested(b, 1, |b| any_value(b, &Value::I64(*v)));
            }),
            Array::F64(vs) => vs.iter().for_each(|v| {
                nested(b, 1, |b| any_value(b, &Value::F64(*v)));
            }),
            Array::String(vs) => vs.iter().for_each(|v| {
                nested(b, 1, |b| string_value(b, v.as_str()));
            }),
            // A kind of array added to the API later: its text.
            other => nested(b, 1, |b| string_value(b, &other.to_string())),
        }),
        // A kind of value added to the API later: its text.
        other => string_value(buf, &other.as_str()),
    }
}

fn string_value(buf: &mut Vec<u8>, s: &str) {
    tag(buf, 1, LEN);
    varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from(field << 3 | wire));
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A string or bytes field (left out when empty, as proto3 does).
fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    tag(buf, field, LEN);
    varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

/// A message field: written in place after a one-byte length, moved up
/// when its length needs more bytes (a span, usually: a few hundred bytes).
fn nested(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(buf, field, LEN);
    let at = buf.len();
    buf.push(0);
    body(buf);
    let end = buf.len();
    let len = end - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
        return;
    }
    let (mut prefix, mut n, mut v) = ([0u8; MAX_VARINT], 0, len);
    while v >= 0x80 {
        prefix[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    prefix[n] = v as u8;
    n += 1;
    buf.resize(end + n - 1, 0);
    buf.copy_within(at + 1..end, at + n);
    buf[at..at + n].copy_from_slice(&prefix[..n]);
}

/// A field read back: what [`partial_success`] needs.
enum Field<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Other,
}

/// The fields of a message; an item is `None` where the bytes stop making
/// sense (and the iteration ends).
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Option<Field<'a>>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let Some(key) = read_varint(&mut self.0) else {
            self.0 = &[];
            return Some((0, None));
        };
        let field = (key >> 3) as u32;
        let value = match key & 7 {
            0 => read_varint(&mut self.0).map(Field::Varint),
            1 => self.skip(8),
            5 => self.skip(4),
            2 => read_varint(&mut self.0).and_then(|n| {
                let n = usize::try_from(n).ok().filter(|n| *n <= self.0.len())?;
                let (value, rest) = self.0.split_at(n);
                self.0 = rest;
                Some(Field::Len(value))
            }),
            _ => None,
        };
        if value.is_none() {
            self.0 = &[];
        }
        Some((field, value))
    }
}

impl<'a> Fields<'a> {
    fn skip(&mut self, n: usize) -> Option<Field<'a>> {
        self.0 = self.0.get(n..)?;
        Some(Field::Other)
    }
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
