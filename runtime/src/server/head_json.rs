//! The request and response heads guests receive, written as JSON by hand.
//!
//! Every guest call on the request path gets a head ([`HeadView`],
//! [`ResponseHeadView`]): a few short keys and a list of header pairs. With
//! `serde_json`, escaping was the head's largest cost: its escaper looks at
//! every byte of every key and value through a table. Here the keys are
//! constants written as they are, and a string is first checked eight bytes
//! at a time ([`needs_escape`]); one that needs no escape (nearly every
//! header name, value and path) is copied whole, and one that does goes
//! through `serde_json`'s own escaper, so the output is byte for byte what
//! `serde_json` writes for the same structs (the tests compare the two).
//!
//! [`HeadView`]: super::guest_http::HeadView
//! [`ResponseHeadView`]: super::pipeline

use super::guest_http::HeaderPairs;
use crate::telemetry::TraceHeaders;

/// A writer of one JSON object into a buffer: `new`, a call per field in
/// the order they are to appear, then `finish` for the bytes (for example
/// `{"method":"GET","status":200}`).
pub(crate) struct JsonObject {
    out: Vec<u8>,
    first: bool,
}

impl JsonObject {
    /// An object written into `out` (usually empty, with room for a head).
    pub(crate) fn new(mut out: Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Writes `"key":`; `key` must need no escaping (the callers' keys are
    /// constants).
    fn key(&mut self, key: &str) {
        debug_assert!(!needs_escape(key.as_bytes()));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub(crate) fn str_field(&mut self, key: &str, value: &str) {
        self.key(key);
        push_str(&mut self.out, value);
    }

    pub(crate) fn u64_field(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub(crate) fn bool_field(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// Writes `headers` as `[[name, value], ...]`, the pairs in the order
    /// [`HeaderPairs::iter`] gives them. What cannot need an escape is
    /// copied without a look: a header name (a token, which has no quote,
    /// backslash or control character) and a `traceparent` (hex digits and
    /// dashes).
    pub(crate) fn headers_field(&mut self, key: &str, headers: &HeaderPairs<'_>) {
        self.key(key);
        let HeaderPairs(map, extra, trace) = *headers;
        let mut pairs = Pairs {
            out: &mut self.out,
            first: true,
        };
        pairs.out.push(b'[');
        for (name, value) in map {
            if trace.is_some() && TraceHeaders::replaces(name) {
                continue;
            }
            if let Ok(value) = value.to_str() {
                pairs.pair(Plain(name.as_str().as_bytes()), value);
            }
        }
        if let Some((name, value)) = extra {
            pairs.pair(name, value);
        }
        if let Some(trace) = trace {
            pairs.pair(Plain(b"traceparent"), Plain(trace.traceparent_bytes()));
            if let Some(state) = trace.tracestate() {
                pairs.pair(Plain(b"tracestate"), state);
            }
        }
        pairs.out.push(b']');
    }

    /// The finished object.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

/// The pairs of a `headers` field as they are written.
struct Pairs<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Pairs<'_> {
    fn pair(&mut self, name: impl JsonStr, value: impl JsonStr) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'[');
        name.push_to(self.out);
        self.out.push(b',');
        value.push_to(self.out);
        self.out.push(b']');
    }
}

/// A string written as JSON: a `&str` with [`push_str`], a [`Plain`] one
/// as it is.
trait JsonStr {
    fn push_to(self, out: &mut Vec<u8>);
}

impl JsonStr for &str {
    fn push_to(self, out: &mut Vec<u8>) {
        push_str(out, self);
    }
}

/// The bytes of a string that needs no escaping, known by where it comes
/// from (ASCII, no quote, backslash or control character).
struct Plain<'a>(&'a [u8]);

impl JsonStr for Plain<'_> {
    fn push_to(self, out: &mut Vec<u8>) {
        debug_assert!(self.0.is_ascii() && !needs_escape(self.0), "{:?}", self.0);
        out.reserve(self.0.len() + 2);
        out.push(b'"');
        out.extend_from_slice(self.0);
        out.push(b'"');
    }
}

/// Appends `s` as a JSON string.
fn push_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Rare: serde_json's escaper, so the output stays its output. A
        // `Vec` writer cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Whether any byte of `bytes` must be escaped in a JSON string: a control
/// character (below 0x20), `"` or `\`. Bytes from 0x80 up (UTF-8) are
/// written as they are, as serde_json does.
///
/// Eight bytes per step (the bit tricks of "Bit Twiddling Hacks": a byte
/// below `n` sets its high bit in `(w - n·0x01…) & !w & 0x80…`, and a byte
/// equal to `c` is a zero byte of `w ^ c·0x01…`); each test is exact for
/// "some byte in the word", which is all this asks.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let escapable = |w: u64| {
        (w.wrapping_sub(ONES * 0x20) & !w & HIGH) | zero(w ^ QUOTES) | zero(w ^ BACKSLASHES) != 0
    };
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let len = bytes.len();
    if len < 8 {
        return bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    }
    let mut at = 0;
    while at + 8 < len {
        if escapable(word(at)) {
            return true;
        }
        at += 8;
    }
    // The last eight bytes, overlapping the words already looked at.
    escapable(word(len - 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn escaped_by_serde(s: &str) -> bool {
        serde_json::to_string(s).unwrap() != format!("\"{s}\"")
    }

    #[test]
    fn needs_escape_agrees_with_serde_json_for_every_byte_at_every_position() {
        for b in 0u8..0x80 {
            for len in 1..=17 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let s = std::str::from_utf8(&bytes).unwrap();
                    assert_eq!(
                        needs_escape(s.as_bytes()),
                        escaped_by_serde(s),
                        "byte {b:#04x} at {at} of {len}"
                    );
                }
            }
        }
        // High-bit bytes (UTF-8) next to the characters the tricks test for.
        for s in [
            "é\"",
            "ü",
            "\u{7f}",
            "日本語のヘッダー値",
            "\u{ff}\u{1f}",
            "x\u{80}y",
        ] {
            assert_eq!(needs_escape(s.as_bytes()), escaped_by_serde(s), "{s:?}");
        }
    }

    fn headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.com".parse().unwrap());
        headers.append("if-none-match", "W/\"v1\", \"v2\"".parse().unwrap());
        headers.append("x-tab", "a\tb".parse().unwrap());
        headers.append("x-path", "C:\\dir".parse().unwrap());
        // Not visible ASCII: left out, as serde's `HeaderPairs` does.
        headers.append(
            "x-opaque",
            axum::http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        headers.append("x-twice", "one".parse().unwrap());
        headers.append("x-twice", "two".parse().unwrap());
        headers
    }

    #[test]
    fn a_head_is_written_as_serde_json_writes_it() {
        use super::super::guest_http::{HeadView, HeaderPairs};
        let headers = headers();
        let full = HeadView {
            method: "POST",
            path: "/a \"quoted\" path/é",
            query: Some("q=1&r=\\"),
            headers: HeaderPairs(&headers, Some(("x-base", "/app@1")), None),
            base: "/app@1",
            request_id: "0123456789abcdef",
            body_length: Some(18_446_744_073_709_551_615),
            core_route: true,
        };
        let bare = HeadView {
            method: "GET",
            path: "/",
            query: None,
            headers: HeaderPairs(&HeaderMap::new(), None, None),
            base: "",
            request_id: "",
            body_length: Some(0),
            core_route: false,
        };
        for view in [full, bare] {
            assert_eq!(
                String::from_utf8(view.to_json().to_vec()).unwrap(),
                serde_json::to_string(&view).unwrap()
            );
            same_head_in_both_forms(&view);
        }
    }

    /// The binary layout of `view` reads as its JSON reads, in the PDK.
    fn same_head_in_both_forms(view: &super::super::guest_http::HeadView<'_>) {
        use buntime_pdk::RequestHead;
        let (json, binary) = (view.to_json(), view.to_binary());
        assert_eq!(
            (view.encode(false), view.encode(true)),
            (json.clone(), binary.clone())
        );
        assert_eq!(
            RequestHead::from_input(&binary).unwrap(),
            RequestHead::from_json(&json).unwrap()
        );
    }

    /// A traced call's head has its span's `traceparent` and `tracestate`
    /// in place of the caller's, once each.
    #[test]
    fn a_traced_head_carries_the_calls_trace_headers_instead_of_the_callers() {
        use super::super::guest_http::{HeadView, HeaderPairs};
        use crate::telemetry::TraceHeaders;
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let mut headers = headers();
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        headers.insert("tracestate", "caller=1".parse().unwrap());
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            "vendor=2".parse::<TraceState>().unwrap(),
        );
        let trace = TraceHeaders::of(&span).expect("a valid span");
        let view = HeadView {
            method: "GET",
            path: "/",
            query: None,
            headers: HeaderPairs(&headers, Some(("x-base", "/app@1")), Some(&trace)),
            base: "/app@1",
            request_id: "",
            body_length: None,
            core_route: false,
        };
        let json = String::from_utf8(view.to_json().to_vec()).unwrap();
        assert_eq!(json, serde_json::to_string(&view).unwrap());
        same_head_in_both_forms(&view);
        let head = buntime_pdk::RequestHead::from_json(json.as_bytes()).expect("a head");
        let named = |name: &str| {
            head.headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            named("traceparent"),
            ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
        );
        assert_eq!(named("tracestate"), ["vendor=2"]);
        assert_eq!(named("x-twice"), ["one", "two"]);
        assert_eq!(named("x-base"), ["/app@1"]);
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "plain",
            "W/\"etag\"",
            "back\\slash",
            "tab\there",
            "new\nline\r",
            "\u{0}\u{1}\u{1f}",
            "é and 日本",
            "sixteen bytes!!!",
        ] {
            let mut out = Vec::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
