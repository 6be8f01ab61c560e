//! One sampled span as Buntime records it: a plain struct with what the
//! OTLP `Span` message carries for the spans this server makes (no events,
//! no links). Its name and attributes are kept already encoded (the
//! `Span.name` and `Span.attributes` fields of `encode.rs`; protobuf fields
//! may come in any order), so naming it allocates nothing of its own,
//! adding an attribute is an append to one buffer, and ending the span is
//! one pass of its fields into the batch.

use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};

use super::encode;

/// A span between its start and its end.
#[derive(Debug)]
pub(super) struct SpanRecord {
    /// Its ids, flags and trace state.
    pub(super) context: SpanContext,
    /// The parent's span id (`SpanId::INVALID` for a root).
    pub(super) parent: SpanId,
    /// Whether the parent came from another process (a `traceparent`).
    pub(super) parent_remote: bool,
    pub(super) kind: SpanKind,
    pub(super) start: SystemTime,
    /// The `Span.name` field, then `Span.attributes` fields in the order
    /// they were set.
    pub(super) fields: Vec<u8>,
    pub(super) status: Status,
}

/// What a span's name and attributes usually take, encoded: a server
/// span's ten come to about 250 bytes with a short path, and growing the
/// buffer (a reallocation and a copy) cost more than the whole span's
/// encoding. The buffer grows for a long URL, user agent or statement.
const FIELD_BYTES: usize = 384;

impl SpanRecord {
    /// A span named `name` (`"{name} {suffix}"` with a suffix) starting
    /// now.
    pub(super) fn start(
        context: SpanContext,
        parent: SpanId,
        parent_remote: bool,
        (name, suffix): (&str, Option<&str>),
        kind: SpanKind,
    ) -> Self {
        let mut fields = Vec::with_capacity(FIELD_BYTES);
        encode::name(&mut fields, name, suffix);
        Self {
            context,
            parent,
            parent_remote,
            kind,
            start: SystemTime::now(),
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
