//! Log correlation: the trace and span ids of the span current on this
//! thread (`current.rs`), and the log writer that adds them to every line
//! written meanwhile.
//!
//! While a sampled request's future or a guest call inside it is polled,
//! its span's ids are this thread's current ones ([`scoped`]).
//! [`TraceIdsWriter`] wraps the formatter's writer and ends each line
//! written while ids are current with them: ` trace_id=… span_id=…` in the
//! text format, `"trace_id"` and `"span_id"` members in JSON, as the
//! OpenTelemetry log data model names them. The log feed takes the trace
//! id from the same place.
//!
//! Written by hand rather than as a `tracing` span around the request: a
//! span is created, entered on every poll and closed through the
//! subscriber's registry on every sampled request, which cost about a fifth
//! of what tracing adds to a request. Here a sampled request costs two
//! thread-local writes per poll, and only the rare line written inside it
//! pays for the ids' text.

use std::cell::Cell;
use std::io;

use opentelemetry::trace::{SpanContext, SpanId, TraceId};
use tracing_subscriber::fmt::MakeWriter;

thread_local! {
    /// The ids of the traced work running on this thread.
    static CURRENT: Cell<Option<TraceIds>> = const { Cell::new(None) };
}

/// A span's trace and span ids, as log lines name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceIds {
    trace: TraceId,
    span: SpanId,
}

impl TraceIds {
    /// The ids of `span`.
    pub(crate) fn of(span: &SpanContext) -> Self {
        Self {
            trace: span.trace_id(),
            span: span.span_id(),
        }
    }
}

/// The ids current on this thread, if traced work is running on it.
pub(crate) fn current() -> Option<TraceIds> {
    CURRENT.get()
}

/// The current trace id as 32 lowercase hex digits (for the log feed).
pub(crate) fn current_trace_id() -> Option<String> {
    current().map(|ids| ids.trace.to_string())
}

/// Runs `f` with `ids` current on this thread (then the previous ones
/// again).
pub(crate) fn scoped<R>(ids: TraceIds, f: impl FnOnce() -> R) -> R {
    let _restore = Restore(CURRENT.replace(Some(ids)));
    f()
}

/// Puts the previous ids back, also when the work inside panics.
struct Restore(Option<TraceIds>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.set(self.0);
    }
}

/// The format of the lines [`TraceIdsWriter`] adds ids to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `tracing_subscriber`'s text format: ` trace_id=… span_id=…` at the
    /// end of the line.
    Text,
    /// Its JSON format: `"trace_id"` and `"span_id"` members at the end of
    /// the line's object.
    Json,
}

/// A `tracing_subscriber` writer that adds the current trace and span ids
/// to each line written while a sampled request or guest call runs (see
/// the module doc). The server's subscriber writes through one; an
/// embedder's can too.
///
/// # Example
///
/// ```
/// use buntime::telemetry::{LogFormat, TraceIdsWriter};
///
/// let subscriber = tracing_subscriber::fmt()
///     .with_writer(TraceIdsWriter::new(std::io::stderr, LogFormat::Text))
///     .finish();
/// # drop(subscriber);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TraceIdsWriter<M> {
    inner: M,
    format: LogFormat,
}

impl<M> TraceIdsWriter<M> {
    /// Lines in `format`, written to `inner`.
    pub fn new(inner: M, format: LogFormat) -> Self {
        Self { inner, format }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for TraceIdsWriter<M> {
    type Writer = LineWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            inner: self.inner.make_writer(),
            format: self.format,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            inner: self.inner.make_writer_for(meta),
            format: self.format,
        }
    }
}

/// One line's writer (see [`TraceIdsWriter`]).
#[derive(Debug)]
pub struct LineWriter<W> {
    inner: W,
    format: LogFormat,
}

impl<W: io::Write> io::Write for LineWriter<W> {
    /// The formatter writes each line whole (`write_all` of its buffer):
    /// a buffer ending in a line break is a line, and gets the ids.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match current().and_then(|ids| with_ids(buf, ids, self.format)) {
            Some(line) => {
                self.inner.write_all(&line)?;
                Ok(buf.len())
            }
            None => self.inner.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `line` with `ids` added, or `None` when it is not a whole line of
/// `format`.
fn with_ids(line: &[u8], ids: TraceIds, format: LogFormat) -> Option<Vec<u8>> {
    let body = line.strip_suffix(b"\n")?;
    let trace = ids.trace.to_string();
    let span = ids.span.to_string();
    let mut out = Vec::with_capacity(line.len() + 64);
    match format {
        LogFormat::Text => {
            out.extend_from_slice(body);
            out.extend_from_slice(b" trace_id=");
            out.extend_from_slice(trace.as_bytes());
            out.extend_from_slice(b" span_id=");
        }
        LogFormat::Json => {
            let open = body.strip_suffix(b"}")?;
            out.extend_from_slice(open);
            // An empty object gets no leading comma.
            if open.last() != Some(&b'{') {
                out.push(b',');
            }
            out.extend_from_slice(b"\"trace_id\":\"");
            out.extend_from_slice(trace.as_bytes());
            out.extend_from_slice(b"\",\"span_id\":\"");
        }
    }
    out.extend_from_slice(span.as_bytes());
    if format == LogFormat::Json {
        out.extend_from_slice(b"\"}");
    }
    out.push(b'\n');
    Some(out)
}

#[cfg(test)]
#[path = "log_ids_tests.rs"]
mod tests;
