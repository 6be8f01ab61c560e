//! One sampled span as Buntime records it: a plain struct with what the
//! OTLP `Span` message carries for the spans this server makes (no events,
//! no links). Its attributes are kept already encoded (the `Span.attributes`
//! fields of `encode.rs`), so adding one is an append to one buffer, and
//! ending the span is one pass of its fields into the batch.

use std::borrow::Cow;
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
    pub(super) name: Cow<'static, str>,
    pub(super) kind: SpanKind,
    pub(super) start: SystemTime,
    /// `Span.attributes` fields, in the order they were set.
    pub(super) attributes: Vec<u8>,
    pub(super) status: Status,
}

/// What a span's attributes usually take, encoded (a server span's seven
/// fit; the buffer grows for a long URL or statement).
const ATTRIBUTE_BYTES: usize = 192;

impl SpanRecord {
    /// A span starting now.
    pub(super) fn start(
        context: SpanContext,
        parent: SpanId,
        parent_remote: bool,
        name: Cow<'static, str>,
        kind: SpanKind,
    ) -> Self {
        Self {
            context,
            parent,
            parent_remote,
            name,
            kind,
            start: SystemTime::now(),
            attributes: Vec::with_capacity(ATTRIBUTE_BYTES),
            status: Status::Unset,
        }
    }

    /// Adds a string attribute.
    pub(super) fn text(&mut self, key: &'static str, value: &str) {
        encode::string_attribute(&mut self.attributes, key, value);
    }

    /// Adds an integer attribute.
    pub(super) fn int(&mut self, key: &'static str, value: i64) {
        encode::int_attribute(&mut self.attributes, key, value);
    }
}
