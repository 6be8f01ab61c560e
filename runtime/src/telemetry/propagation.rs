//! W3C Trace Context: the caller's `traceparent` / `tracestate` read from a
//! request, and a span's written into the heads guests see and the requests
//! they send.

use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The caller's context from `headers` (an empty context when there is none
/// or it is malformed: the request then starts a trace).
pub(super) fn extract(headers: &HeaderMap) -> Context {
    if !headers.contains_key("traceparent") {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Sets `traceparent` (and `tracestate`, or removes a stale one) in
/// `headers` to `span`.
pub(super) fn inject(span: &SpanContext, headers: &mut HeaderMap) {
    headers.remove("tracestate");
    let cx = Context::new().with_remote_span_context(span.clone());
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_is_read_and_written_back() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        headers.insert("tracestate", "vendor=x".parse().unwrap());
        let cx = extract(&headers);
        let span = cx.span().span_context().clone();
        assert!(span.is_valid() && span.is_remote() && span.is_sampled());
        let mut out = HeaderMap::new();
        out.insert("tracestate", "stale=1".parse().unwrap());
        inject(&span, &mut out);
        assert_eq!(out["traceparent"], headers["traceparent"]);
        assert_eq!(out["tracestate"], "vendor=x");
    }

    #[test]
    fn a_malformed_or_missing_traceparent_starts_a_trace() {
        assert!(!extract(&HeaderMap::new()).has_active_span());
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", "00-zz-00-01".parse().unwrap());
        assert!(!extract(&headers).span().span_context().is_valid());
    }
}
