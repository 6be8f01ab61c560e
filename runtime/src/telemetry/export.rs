//! The span pipeline behind a [`super::TraceConfig`]: the OTLP/HTTP exporter
//! (protobuf bodies from `encode.rs`, posted over the hyper client and TLS
//! roots the rest of the server already uses, retried as the OTLP
//! specification recommends), the batching processor of `batch.rs` running
//! on the tokio runtime, and the resource every batch is framed with.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{HttpClient, ResponseBodyTooLarge};

use super::TraceConfig;
use super::batch::{Batch, BatchSettings, BatchingProcessor, Export, ExportError};
use super::encode::{self, Frame};

/// The instrumentation scope of every span.
pub(super) const SCOPE: &str = "buntime";

/// How long a span may wait in a partial batch by default.
const SCHEDULE_DELAY: Duration = Duration::from_secs(5);

/// Retries of a failed export (the policy `opentelemetry-otlp` recommends):
/// up to three more attempts, 100 ms apart and doubling to at most 1.6 s,
/// plus up to 100 ms of jitter, all within the export timeout. A collector's
/// `Retry-After` (on 429 and 503) raises the delay, to at most 30 s.
const RETRIES: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_millis(1600);
const MAX_JITTER_MS: u32 = 100;
const MAX_THROTTLE: Duration = Duration::from_secs(30);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot export traces to `{endpoint}`: {reason} (check OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)"
)]
pub struct TraceStartError {
    endpoint: String,
    reason: String,
}

/// Starts the span pipeline. Must run inside the tokio runtime the spans
/// are exported from (the batch processor's task is spawned on it).
pub(super) fn pipeline(config: &TraceConfig) -> Result<BatchingProcessor, TraceStartError> {
    let fail = |reason: String| TraceStartError {
        endpoint: config.endpoint.clone(),
        reason,
    };
    let uri: Uri = config
        .endpoint
        .parse()
        .map_err(|e| fail(format!("not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(fail("the URL must start with http:// or https://".into()));
    }
    let resource = each_key_once(config.resource_attributes());
    let exporter = OtlpHttp {
        client: client(config.export_timeout),
        endpoint: uri,
        headers: headers(config),
        timeout: config.export_timeout,
        frame: Frame::new(&resource, &InstrumentationScope::builder(SCOPE).build()),
    };
    Ok(BatchingProcessor::start(
        exporter,
        BatchSettings {
            batch_size: config.batch_size(),
            queue_size: config.queue_size(),
            delay: config.schedule_delay.unwrap_or(SCHEDULE_DELAY),
            export_timeout: config.export_timeout,
        },
    ))
}

/// `attributes` with each key once: a later value replaces an earlier one
/// in its place (a resource is a map).
fn each_key_once(attributes: Vec<KeyValue>) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = Vec::with_capacity(attributes.len());
    for attribute in attributes {
        match out.iter_mut().find(|kv| kv.key == attribute.key) {
            Some(kv) => kv.value = attribute.value,
            None => out.push(attribute),
        }
    }
    out
}

type Client = opentelemetry_http::hyper::HyperClient<hyper_rustls::HttpsConnector<HttpConnector>>;

/// The exporter's HTTP client: plain HTTP or TLS (webpki roots), on tokio.
fn client(timeout: Duration) -> Client {
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

/// Every export's headers: the protobuf content type, a user agent, and
/// `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` (checked when read, so each is a
/// valid header here).
fn headers(config: &TraceConfig) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    out.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(concat!("buntime/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in &config.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out.insert(name, value);
        }
    }
    out
}

/// Posts batches to the collector.
struct OtlpHttp {
    client: Client,
    endpoint: Uri,
    headers: HeaderMap,
    timeout: Duration,
    frame: Frame,
}

/// A failed attempt, and whether it is worth another.
struct Failure {
    message: String,
    retry: Retry,
}

enum Retry {
    No,
    /// After the usual backoff.
    Backoff,
    /// After at least this long (the collector's `Retry-After`).
    After(Duration),
}

impl Export for OtlpHttp {
    fn room(&self) -> usize {
        self.frame.room()
    }

    async fn export(&self, batch: Batch) -> Result<(), ExportError> {
        let mut bytes = batch.bytes;
        let start = self.frame.head(&mut bytes);
        let body = Bytes::from(bytes).slice(start..);
        let began = Instant::now();
        let (mut attempt, mut delay, mut cap) = (0, FIRST_DELAY, MAX_DELAY);
        loop {
            let failure = match self.send(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            match failure.retry {
                Retry::No => return Err(ExportError::Failed(failure.message)),
                Retry::Backoff => {}
                Retry::After(wait) => {
                    let wait = wait.min(MAX_THROTTLE);
                    if wait > cap {
                        cap = MAX_THROTTLE;
                    }
                    delay = delay.max(wait);
                }
            }
            let pause = (delay + jitter()).min(cap);
            if attempt == RETRIES || began.elapsed() + pause >= self.timeout {
                let message = format!("{} (after {} attempts)", failure.message, attempt + 1);
                return Err(ExportError::Failed(message));
            }
            attempt += 1;
            tracing::debug!(attempt, error = %failure.message, "retrying a trace export");
            tokio::time::sleep(pause).await;
            delay = (delay * 2).min(cap);
        }
    }
}

impl OtlpHttp {
    /// One attempt.
    async fn send(&self, body: Bytes) -> Result<(), Failure> {
        let mut request = http::Request::new(body);
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        *request.headers_mut() = self.headers.clone();
        let response = self.client.send_bytes(request).await.map_err(|e| {
            let too_large = e.downcast_ref::<ResponseBodyTooLarge>().is_some();
            Failure {
                message: format!("no answer from the collector: {e}"),
                retry: if too_large { Retry::No } else { Retry::Backoff },
            }
        })?;
        let status = response.status();
        if status.is_success() {
            if let Some((rejected, message)) = encode::partial_success(response.body())
                && (rejected > 0 || !message.is_empty())
            {
                tracing::warn!(
                    rejected_spans = rejected,
                    error_message = %message,
                    "the trace collector accepted an export only in part"
                );
            }
            return Ok(());
        }
        let retry = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after)
                .map_or(Retry::Backoff, Retry::After),
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => Retry::Backoff,
            _ => Retry::No,
        };
        Err(Failure {
            message: format!("the collector answered {status}"),
            retry,
        })
    }
}

/// A `Retry-After` value: seconds, or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Up to [`MAX_JITTER_MS`], so that servers whose exports failed together
/// do not retry together.
fn jitter() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    Duration::from_millis(u64::from(
        nanos.wrapping_mul(2_654_435_761) % (MAX_JITTER_MS + 1),
    ))
}

#[cfg(test)]
mod tests {
    use opentelemetry::KeyValue;

    #[test]
    fn a_resource_has_each_key_once_the_last_value_winning() {
        let attributes = vec![
            KeyValue::new("team", "a"),
            KeyValue::new("service.name", "edge"),
            KeyValue::new("team", "b"),
        ];
        assert_eq!(
            super::each_key_once(attributes),
            vec![
                KeyValue::new("team", "b"),
                KeyValue::new("service.name", "edge")
            ]
        );
    }
}
