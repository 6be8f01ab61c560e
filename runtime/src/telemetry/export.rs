//! The span pipeline behind a [`super::TraceConfig`]: an OTLP exporter
//! (HTTP, protobuf) over the hyper client and TLS roots the rest of the
//! server already uses, the batching processor of `batch.rs` running on the
//! tokio runtime, the configured sampler and resource.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter as _};

use super::TraceConfig;
use super::batch::{BatchSettings, BatchingProcessor};

/// Spans per export and spans that may wait (the `OTEL_BSP_*` defaults).
const BATCH_SIZE: usize = 512;
const QUEUE_SIZE: usize = 2048;
/// How long a span may wait in a partial batch by default.
const SCHEDULE_DELAY: Duration = Duration::from_secs(5);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot export traces to `{endpoint}`: {reason} (check OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)"
)]
pub struct TraceStartError {
    endpoint: String,
    reason: String,
}

/// Builds the tracer provider. Must run inside the tokio runtime the spans
/// are exported from (the batch processor's task is spawned on it).
pub(super) fn provider(config: &TraceConfig) -> Result<SdkTracerProvider, TraceStartError> {
    let fail = |reason: String| TraceStartError {
        endpoint: config.endpoint.clone(),
        reason,
    };
    let uri: http::Uri = config
        .endpoint
        .parse()
        .map_err(|e| fail(format!("not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(fail("the URL must start with http:// or https://".into()));
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.export_timeout)
        .with_http_client(client(config.export_timeout))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resource = Resource::builder_empty()
        .with_attributes(config.resource_attributes())
        .build();
    // The processor leaves the resource to the exporter, given it here.
    exporter.set_resource(&resource);
    let processor = BatchingProcessor::start(
        exporter,
        BatchSettings {
            batch_size: BATCH_SIZE,
            queue_size: QUEUE_SIZE,
            delay: config.schedule_delay.unwrap_or(SCHEDULE_DELAY),
            export_timeout: config.export_timeout,
        },
    );
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(config.sampler.sampler())
        .with_resource(resource)
        .build())
}

/// The exporter's HTTP client: plain HTTP or TLS (webpki roots), on tokio.
fn client(
    timeout: Duration,
) -> opentelemetry_http::hyper::HyperClient<hyper_rustls::HttpsConnector<HttpConnector>> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    opentelemetry_http::hyper::HyperClient::new(https, timeout, None)
}
