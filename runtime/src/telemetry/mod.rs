//! OpenTelemetry traces: one server span per request, a child span per
//! plugin hook and app call, client spans for the `http` and `sql` calls
//! guests make, exported over OTLP (HTTP, protobuf) in batches.
//!
//! ```text
//! GET                              server span (traceparent of the caller continued)
//! ├─ @buntime/plugin-a on_request  internal: a hook
//! │  └─ GET                        client: the plugin's `http` call (traceparent injected)
//! ├─ hello@1.0.0 handle            internal: the app call
//! │  └─ sql_query default          client: a statement
//! └─ @buntime/plugin-a on_response
//! ```
//!
//! Off unless an OTLP endpoint is configured ([`TraceConfig`]); then a
//! [`Telemetry`] is `None` inside and the request path pays one branch. A
//! request the sampler drops creates no child spans and changes no header.
//! The server holds the [`Telemetry`]; no global tracer is installed. The
//! span of the sampled request, or of the guest call inside it, is current
//! on the thread that polls it (`current.rs`), where the hooks, the app
//! call and the host functions find their parent.
//!
//! Spans are Buntime's own records (`record.rs`), not the OpenTelemetry
//! SDK's: a sampled span is a plain struct from its start to its end, where
//! it is encoded straight into the batch being filled. The `opentelemetry`
//! API crate provides the vocabulary (ids, flags, trace state, kinds).
//!
//! - `config.rs`: the `OTEL_*` variables.
//! - `sampler.rs`: the `OTEL_TRACES_SAMPLER` decision.
//! - `ids.rs`: trace and span ids.
//! - `record.rs`: a span from its start to its end.
//! - `export.rs`: the OTLP/HTTP exporter and the resource.
//! - `encode.rs`: the OTLP protobuf encoding, written by hand.
//! - `batch.rs`: the span processor, encoding and batching where spans end.
//! - `spans.rs`: the spans of a request and their attributes.
//! - `current.rs`: the span current on a thread, and the future wrapper
//!   that makes a span current while it is polled.
//! - `log_ids.rs`: the ids of that span, and the log writer that ends each
//!   line written meanwhile with them.
//! - `propagation.rs`: W3C `traceparent` / `tracestate` in and out.

mod batch;
mod current;
mod encode;
mod export;
mod ids;
pub(crate) mod log_ids;
mod propagation;
mod record;
mod sampler;
mod spans;

use std::sync::Arc;
use std::time::Duration;

pub use crate::config::{SamplerChoice, TraceConfig};
pub(crate) use current::InSpan;
pub use export::TraceStartError;
pub use log_ids::{LineWriter, LogFormat, TraceIdsWriter};
pub(crate) use propagation::TraceHeaders;
pub(crate) use spans::{CallSpan, CallSpanFields, RequestSpan, SpanParent};

/// The server's tracing: off, or the sampler and the export pipeline.
/// Cloning is one reference count.
#[derive(Clone, Default)]
pub struct Telemetry(Option<Arc<Tracing>>);

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Telemetry")
            .field(&if self.0.is_some() { "on" } else { "off" })
            .finish()
    }
}

/// What a tracing server holds.
pub(crate) struct Tracing {
    sampler: SamplerChoice,
    processor: batch::BatchingProcessor,
}

impl Telemetry {
    /// No tracing.
    pub fn off() -> Self {
        Self(None)
    }

    /// Tracing as `config` says (off for `None`). Must be called inside the
    /// tokio runtime that serves, where the exports run.
    pub fn start(config: Option<&TraceConfig>) -> Result<Self, TraceStartError> {
        let Some(config) = config else {
            return Ok(Self::off());
        };
        let processor = export::pipeline(config)?;
        tracing::info!(
            endpoint = %config.endpoint,
            service = %config.service_name,
            sampler = ?config.sampler,
            "exporting traces over OTLP"
        );
        Ok(Self(Some(Arc::new(Tracing {
            sampler: config.sampler,
            processor,
        }))))
    }

    /// Whether spans are made at all.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Exports the spans still queued and stops the exporter, giving up
    /// after `within`.
    pub async fn shutdown(&self, within: Duration) {
        let Some(tracing) = &self.0 else {
            return;
        };
        match tracing.processor.shutdown(within).await {
            Ok(()) => {}
            Err(batch::ExportError::Timeout(_)) => tracing::warn!(
                "traces still exporting after {within:?} (RUNTIME_SHUTDOWN_TIMEOUT); stopping without them"
            ),
            Err(e) => tracing::warn!(error = %e, "traces not all exported at shutdown"),
        }
    }
}
