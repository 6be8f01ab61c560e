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
//! State is explicit: the server holds the [`Telemetry`], a sampled request
//! carries its [`SpanParent`] as a request extension, and a guest call
//! carries its own in the call's extensions, where the host functions find
//! it. No global tracer provider is installed.
//!
//! - `config.rs`: the `OTEL_*` variables.
//! - `export.rs`: the OTLP/HTTP exporter, sampler, resource.
//! - `encode.rs`: the OTLP protobuf encoding, written by hand.
//! - `batch.rs`: the span processor, encoding and batching where spans end.
//! - `spans.rs`: the spans and their attributes.
//! - `propagation.rs`: W3C `traceparent` / `tracestate` in and out.

mod batch;
mod encode;
mod export;
mod propagation;
mod spans;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub use crate::config::{SamplerChoice, TraceConfig};
pub use export::TraceStartError;
pub(crate) use spans::{CallSpan, SpanParent};

/// The server's tracing: off, or the tracer and its export pipeline.
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
    provider: SdkTracerProvider,
    tracer: SdkTracer,
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
        let provider = export::provider(config)?;
        let tracer = provider.tracer(export::SCOPE);
        tracing::info!(
            endpoint = %config.endpoint,
            service = %config.service_name,
            sampler = ?config.sampler,
            "exporting traces over OTLP"
        );
        Ok(Self(Some(Arc::new(Tracing { provider, tracer }))))
    }

    /// Whether spans are made at all.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Exports the spans still queued and stops the exporter, giving up
    /// after `within`. The SDK waits on a blocking channel, so the wait runs
    /// on the blocking pool while the export runs on the async workers.
    pub async fn shutdown(&self, within: Duration) {
        let Some(tracing) = self.0.clone() else {
            return;
        };
        let provider = tracing.provider.clone();
        let done = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(within));
        match tokio::time::timeout(within, done).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "traces not all exported at shutdown"),
            Ok(Err(e)) => tracing::warn!(error = %e, "traces not all exported at shutdown"),
            Err(_) => tracing::warn!(
                "traces still exporting after {within:?} (RUNTIME_SHUTDOWN_TIMEOUT); stopping without them"
            ),
        }
    }
}
