//! One sampled span as Buntime records it: the bytes of its OTLP `Span`
//! message, all but its end time and status, written as it starts and as
//! its attributes are set (`encode.rs`; protobuf fields may come in any
//! order). Naming it allocates nothing of its own, adding an attribute is
//! an append to one buffer, and ending the span is one copy of those bytes
//! into the batch, with the end time and status behind them.

use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};

use super::encode;

/// A span's name as it starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Named<'a> {
    /// `name`, or `"{name} {suffix}"` with a suffix.
    Name(&'a str, Option<&'a str>),
    /// Its `Span.name` field and attributes, encoded beforehand (those of
    /// a call that are the same every time: `CallSpanFields`).
    Encoded(&'a [u8]),
}

/// A span between its start and its end.
#[derive(Debug)]
pub(super) struct SpanRecord {
    /// The `Span` fields known at its start (ids, parent, flags, kind,
    /// start time, trace state, name), then `Span.attributes` fields in
    /// the order they were set.
    pub(super) fields: Vec<u8>,
    pub(super) status: Status,
}

/// What a span's fields usually take, encoded: a server span's come to
/// about 300 bytes with a short path, and growing the buffer (a
/// reallocation and a copy) cost more than the whole span's encoding. The
/// buffer grows for a long URL, user agent or statement.
const FIELD_BYTES: usize = 384;

impl SpanRecord {
    /// A span of `context`, child of `parent` (`SpanId::INVALID` for a
    /// root; `parent_remote` when it came from another process), named as
    /// `name` says, starting now.
    pub(super) fn start(
        context: &SpanContext,
        parent: (SpanId, bool),
        name: Named<'_>,
        kind: SpanKind,
    ) -> Self {
        Self::start_at(context, parent, name, kind, SystemTime::now())
    }

    /// [`SpanRecord::start`], starting at `start`.
    pub(super) fn start_at(
        context: &SpanContext,
        parent: (SpanId, bool),
        name: Named<'_>,
        kind: SpanKind,
        start: SystemTime,
    ) -> Self {
        let mut fields = Vec::with_capacity(FIELD_BYTES);
        encode::span_start(&mut fields, context, parent, &kind, start);
        match name {
            Named::Name(name, suffix) => encode::name(&mut fields, name, suffix),
            Named::Encoded(encoded) => fields.extend_from_slice(encoded),
        }
        Self {
            fields,
            status: Status::Unset,
        }
    }

    /// Adds a string attribute.
    pub(super) fn text(&mut self, key: &'static str, value: &str) {
        encode::string_attribute(&mut self.fields, key, value);
    }

    /// Adds an integer attribute.
    pub(super) fn int(&mut self, key: &'static str, value: i64) {
        encode::int_attribute(&mut self.fields, key, value);
    }
}
