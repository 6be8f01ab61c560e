//! W3C Trace Context: the caller's `traceparent` / `tracestate` read from a
//! request, and a span's written into the heads guests see and the requests
//! they send.

use std::str::FromStr as _;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// The caller's context from `headers`: a valid remote span context, or
/// `None` when there is none or it is malformed (the request then starts a
/// trace). Read as the SDK's `TraceContextPropagator` reads it: the first
/// `traceparent`, trimmed, split at `-` (a trailing `-` ignored); version
/// `00` has exactly four parts and a later version at least four (`ff` is
/// invalid); no uppercase hex; only the sampled flag kept; a `tracestate`
/// that does not parse is dropped.
#[cfg(test)]
pub(super) fn extract(headers: &HeaderMap) -> Option<SpanContext> {
    let found = RequestHeaders::of(headers);
    extract_from(found.traceparent, found.tracestate)
}

/// [`extract`] from the request's first `traceparent` and `tracestate`.
pub(super) fn extract_from(
    traceparent: Option<&HeaderValue>,
    tracestate: Option<&HeaderValue>,
) -> Option<SpanContext> {
    let value = traceparent?.to_str().ok()?.trim();
    let mut parts = [""; 4];
    let mut count = 0;
    for part in value.split_terminator('-') {
        if let Some(slot) = parts.get_mut(count) {
            *slot = part;
        }
        count += 1;
    }
    if count < 4 {
        return None;
    }
    let version = u8::from_str_radix(parts[0], 16).ok()?;
    if version == 0xff || version == 0 && count != 4 {
        return None;
    }
    if parts[1..]
        .iter()
        .any(|p| p.bytes().any(|c| c.is_ascii_uppercase()))
    {
        return None;
    }
    let trace_id = TraceId::from_hex(parts[1]).ok()?;
    let span_id = SpanId::from_hex(parts[2]).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(parts[3], 16).ok()?) & TraceFlags::SAMPLED;
    let state = match tracestate.map(HeaderValue::to_str) {
        Some(Ok(text)) => TraceState::from_str(text).unwrap_or_default(),
        _ => TraceState::default(),
    };
    let context = SpanContext::new(trace_id, span_id, flags, true, state);
    context.is_valid().then_some(context)
}

/// The headers a server span reads, each its first value, found in one
/// pass over the request's headers: a lookup per name hashed each name and
/// probed the map, four times per sampled request, where a request has a
/// handful of headers to compare with.
#[derive(Debug, Default)]
pub(super) struct RequestHeaders<'a> {
    pub(super) host: Option<&'a HeaderValue>,
    pub(super) user_agent: Option<&'a HeaderValue>,
    pub(super) traceparent: Option<&'a HeaderValue>,
    pub(super) tracestate: Option<&'a HeaderValue>,
}

impl<'a> RequestHeaders<'a> {
    /// Those of `headers`.
    pub(super) fn of(headers: &'a HeaderMap) -> Self {
        let mut found = Self::default();
        for (name, value) in headers {
            let slot = if name == http::header::HOST {
                &mut found.host
            } else if name == http::header::USER_AGENT {
                &mut found.user_agent
            } else if name == TRACEPARENT {
                &mut found.traceparent
            } else if name == TRACESTATE {
                &mut found.tracestate
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        found
    }
}

/// Sets `traceparent` (and `tracestate`, or removes a stale one) in
/// `headers` to `span` ([`TraceHeaders`]).
pub(super) fn inject(span: &SpanContext, headers: &mut HeaderMap) {
    match TraceHeaders::of(span) {
        Some(trace) => trace.inject(headers),
        None => {
            headers.remove(TRACESTATE);
        }
    }
}

/// A span's `traceparent` and `tracestate`, as the SDK's
/// `TraceContextPropagator` writes them, except that a span without trace
/// state gets no `tracestate` at all where the propagator writes an empty
/// one (W3C Trace Context: vendors must accept empty `tracestate` headers
/// but should avoid sending them; every guest would read, and every
/// upstream receive, one header more).
///
/// Written out here because the propagator formats through `format!` and
/// parses the result back into a header value, which profiled at about 6 %
/// of a traced server's CPU; this is a hex encode into a fixed buffer. A
/// guest's head takes the values as they are (`head_json.rs`), in place of
/// the request's own: no header map is changed for a head.
#[derive(Debug, Clone)]
pub(crate) struct TraceHeaders {
    traceparent: [u8; 55],
    tracestate: Option<String>,
}

impl TraceHeaders {
    /// The headers of `span`; `None` for an invalid one (nothing to send).
    pub(crate) fn of(span: &SpanContext) -> Option<Self> {
        if !span.is_valid() {
            return None;
        }
        let state = span.trace_state();
        let tracestate = (*state != TraceState::NONE)
            .then(|| state.header())
            // The propagator skips a value that is not a header value.
            .filter(|text| HeaderValue::from_str(text).is_ok());
        Some(Self {
            traceparent: traceparent(span),
            tracestate,
        })
    }

    /// Whether `name` is one of the headers these replace.
    pub(crate) fn replaces(name: &HeaderName) -> bool {
        name == TRACEPARENT || name == TRACESTATE
    }

    /// The `traceparent` value's bytes (hex digits and dashes).
    pub(crate) fn traceparent_bytes(&self) -> &[u8] {
        &self.traceparent
    }

    /// The `traceparent` value.
    pub(crate) fn traceparent(&self) -> &str {
        // Written from hex digits and dashes (`of`).
        std::str::from_utf8(&self.traceparent).unwrap_or_default()
    }

    /// The `tracestate` value, when the span has a trace state.
    pub(crate) fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// `(name, value)` of each header, `traceparent` first.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once(("traceparent", self.traceparent())).chain(
            self.tracestate
                .as_deref()
                .map(|state| ("tracestate", state)),
        )
    }

    /// Sets them in `headers`, removing a stale `tracestate`.
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        headers.remove(TRACESTATE);
        // Hex digits and dashes are always a valid header value.
        if let Ok(value) = HeaderValue::from_bytes(&self.traceparent) {
            headers.insert(TRACEPARENT, value);
        }
        if let Some(state) = self
            .tracestate
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            headers.insert(TRACESTATE, state);
        }
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `00-<trace id>-<span id>-<flags>`, the sampled flag only.
fn traceparent(span: &SpanContext) -> [u8; 55] {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex(&span.trace_id().to_bytes(), &mut out[3..35]);
    hex(&span.span_id().to_bytes(), &mut out[36..52]);
    hex(
        &[(span.trace_flags() & TraceFlags::SAMPLED).to_u8()],
        &mut out[53..55],
    );
    out
}

/// `bytes` as lowercase hex into `out` (twice as long): one lookup of
/// both digits per byte.
fn hex(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
}

/// The two lowercase hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::Context;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_http::{HeaderExtractor, HeaderInjector};
    use opentelemetry_sdk::propagation::TraceContextPropagator;

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
        let span = extract(&headers).expect("a context");
        assert!(span.is_valid() && span.is_remote() && span.is_sampled());
        let mut out = HeaderMap::new();
        out.insert("tracestate", "stale=1".parse().unwrap());
        inject(&span, &mut out);
        assert_eq!(out["traceparent"], headers["traceparent"]);
        assert_eq!(out["tracestate"], "vendor=x");
    }

    #[test]
    fn the_headers_are_the_sdk_propagators_without_an_empty_tracestate() {
        for (flags, state) in [
            (TraceFlags::SAMPLED, TraceState::NONE),
            (
                TraceFlags::new(0xff),
                TraceState::from_key_value([("a", "1"), ("b", "2")]).unwrap(),
            ),
            (TraceFlags::default(), TraceState::NONE),
        ] {
            let span = SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
                SpanId::from_hex("b7ad6b7169203331").unwrap(),
                flags,
                false,
                state,
            );
            let mut ours = HeaderMap::new();
            inject(&span, &mut ours);
            let mut sdks = HeaderMap::new();
            let none = *span.trace_state() == TraceState::NONE;
            let cx = Context::new().with_remote_span_context(span);
            TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut sdks));
            // The one difference: no empty `tracestate`.
            if none {
                assert_eq!(
                    sdks.remove("tracestate").as_ref().map(|v| v.as_bytes()),
                    Some(&b""[..])
                );
                assert!(!ours.contains_key("tracestate"));
            }
            assert_eq!(ours, sdks);
        }
    }

    /// Every header, well formed or not, reads as the SDK's propagator
    /// reads it.
    #[test]
    fn extraction_is_the_sdk_propagators() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let span = "00f067aa0ba902b7";
        let parents = [
            format!("00-{id}-{span}-01"),
            format!("00-{id}-{span}-00"),
            format!("00-{id}-{span}-ff"),
            format!("00-{id}-{span}-09"),
            format!("  00-{id}-{span}-01  "),
            format!("00-{id}-{span}-01-"),
            format!("00-{id}-{span}-01-extra"),
            format!("01-{id}-{span}-01-extra"),
            format!("cc-{id}-{span}-01"),
            format!("ff-{id}-{span}-01"),
            format!("0-{id}-{span}-1"),
            format!("00-{}-{span}-01", id.to_uppercase()),
            format!("00-{id}-{}-01", span.to_uppercase()),
            format!("00-{id}-{span}-0A"),
            format!("00-00000000000000000000000000000000-{span}-01"),
            format!("00-{id}-0000000000000000-01"),
            format!("00-{id}-{span}"),
            format!("00-abc-{span}-01"),
            format!("00-{id}0-{span}-01"),
            format!("00-{id}-{span}-zz"),
            format!("zz-{id}-{span}-01"),
            format!("00--{id}-{span}-01"),
            String::new(),
            "-".to_owned(),
        ];
        let states = [None, Some("a=1,b=2"), Some("not a state"), Some("")];
        for parent in &parents {
            for state in states {
                let mut headers = HeaderMap::new();
                headers.insert("traceparent", parent.parse().unwrap());
                if let Some(state) = state {
                    headers.insert("tracestate", state.parse().unwrap());
                }
                let sdk = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
                let sdk = sdk
                    .has_active_span()
                    .then(|| sdk.span().span_context().clone());
                assert_eq!(extract(&headers), sdk, "{parent:?} {state:?}");
            }
        }
        assert_eq!(extract(&HeaderMap::new()), None);
    }
}
