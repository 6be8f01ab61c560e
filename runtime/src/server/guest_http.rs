//! Converting between axum's HTTP types and the heads guests exchange, and
//! the rules every guest response obeys.
//!
//! Framing belongs to the host: headers that frame the message or manage the
//! connection ([`is_framing`]) are dropped from whatever a guest answers or
//! asks the host to send on ([`GuestHeaders`], logged once per module in
//! [`DroppedHeaders`]), so a guest cannot split a response, hijack a
//! keep-alive connection or misframe a request to an app or an upstream. A guest's status must be a
//! final one, 200 to 599 ([`guest_status`]), and its body fit its
//! `maxResponseBodySize` ([`Guest`]).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use buntime_pdk::ResponseHead;
use buntime_pdk::http_ref::{ResponseHeadRef, Text};
use bytes::Bytes;

use super::head_json::JsonObject;
use crate::telemetry::TraceHeaders;
use crate::wasm::abi::{ResponseBody, ResponseBodyLimit};

/// Whether a (lowercase) header name frames the message or manages the
/// connection: `content-length`, `transfer-encoding`, `connection`,
/// `keep-alive`, `upgrade`, `te`, `trailer` and every `proxy-*`. Only the
/// host sets these.
pub(crate) fn is_framing(name: &str) -> bool {
    matches!(
        name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
    ) || name.starts_with("proxy-")
}

/// The status a guest answered with, if it may be a final response: 200 to
/// 599. A 1xx is an interim response, and 101 would switch protocols, which
/// the host does not do for guests.
pub(crate) fn guest_status(status: u16) -> Result<StatusCode, String> {
    match StatusCode::from_u16(status) {
        Ok(s) if (200..=599).contains(&status) => Ok(s),
        _ => Err(format!(
            "status {status} is not allowed: a response status must be from 200 to 599 (1xx statuses are interim, and 101 needs a protocol switch the host does not perform)"
        )),
    }
}

/// Why a guest's response cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadResponse {
    /// The head is malformed or breaks a rule (status, header syntax).
    #[error("{0}")]
    Invalid(String),
    /// The body is over the guest's `maxResponseBodySize`.
    #[error("{0}")]
    TooLarge(String),
}

impl BadResponse {
    /// The error code a client sees when an app answered it (a plugin's is
    /// a failure of the plugin, `PLUGIN_FAILED`).
    pub(crate) fn app_kind(&self) -> super::error::ErrorKind {
        match self {
            Self::TooLarge(_) => super::error::ErrorKind::ResponseTooLarge,
            Self::Invalid(_) => super::error::ErrorKind::AppBadResponse,
        }
    }
}

impl From<String> for BadResponse {
    fn from(message: String) -> Self {
        Self::Invalid(message)
    }
}

/// Most modules remembered by [`DroppedHeaders`]; beyond it drops go unlogged.
const MAX_REMEMBERED: usize = 10_000;

/// The modules already logged for one kind of drop, so each is logged once
/// rather than on every response.
#[derive(Debug, Default)]
struct OncePerModule(Mutex<HashSet<String>>);

impl OncePerModule {
    /// Whether this is `module`'s first time (and remembers it).
    fn first(&self, module: &str) -> bool {
        match self.0.lock() {
            Ok(mut seen) => {
                !seen.contains(module)
                    && seen.len() < MAX_REMEMBERED
                    && seen.insert(module.to_owned())
            }
            Err(_) => false,
        }
    }
}

/// Headers dropped from guests' answers, each kind logged once per module.
#[derive(Debug, Default)]
pub(crate) struct DroppedHeaders {
    framing: OncePerModule,
    core_route: OncePerModule,
}

impl DroppedHeaders {
    /// Records that `header` from `module` was dropped; logs the first time.
    pub(crate) fn note(&self, module: &str, header: &str) {
        if self.framing.first(module) {
            tracing::debug!(
                module,
                header,
                "dropped a header that controls framing or the connection from a guest's response: the host frames every response (logged once per module)"
            );
        }
    }

    /// Records that plugin `module` wanted `header`, not a CORS header, on
    /// a core route's response (`core_headers.rs`); logs the first time.
    pub(crate) fn note_core_route(&self, module: &str, header: &str) {
        if self.core_route.first(module) {
            tracing::debug!(
                plugin = module,
                header,
                "dropped a header a plugin wanted on a core route's response: only `access-control-*` and `vary` are set there (logged once per plugin)"
            );
        }
    }
}

/// Where the headers a guest names come from: one check for every header a
/// guest sets or removes (app and plugin responses, `continue` and
/// `on_response` changes, an upstream delegation's changes).
///
/// A name or value that is not valid HTTP is an error naming the field; a
/// framing header ([`is_framing`]) is dropped and noted, never an error, so
/// a guest written for a host that let it set `content-length` still works.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuestHeaders<'a> {
    /// How logs name the guest, e.g. ``plugin `authn` ``.
    pub(crate) module: &'a str,
    /// The field of its answer the headers are in, e.g. "`set_headers`".
    pub(crate) field: &'a str,
    /// Where dropped framing headers are noted.
    pub(crate) dropped: &'a DroppedHeaders,
}

impl GuestHeaders<'_> {
    /// The header `name` names; `None` for a framing header (dropped).
    pub(crate) fn name(&self, name: &str) -> Result<Option<HeaderName>, String> {
        let parsed = HeaderName::try_from(name)
            .map_err(|_| format!("`{name}` in {} is not a valid header name", self.field))?;
        if is_framing(parsed.as_str()) {
            self.dropped.note(self.module, parsed.as_str());
            return Ok(None);
        }
        Ok(Some(parsed))
    }

    /// The header `name: value`; `None` for a framing header (dropped).
    /// A `Bytes` value is taken without a copy.
    pub(crate) fn header<V: AsRef<[u8]> + 'static>(
        &self,
        name: &str,
        value: V,
    ) -> Result<Option<(HeaderName, HeaderValue)>, String> {
        let Some(parsed) = self.name(name)? else {
            return Ok(None);
        };
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| {
            format!(
                "the value of `{name}` in {} is not a valid header value",
                self.field
            )
        })?;
        Ok(Some((parsed, value)))
    }
}

/// The guest a response comes from, and the rules it answers under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guest<'a> {
    /// How logs name it, e.g. ``app `hello@1.0.0` `` or ``plugin `authn` ``.
    pub(crate) module: &'a str,
    /// Largest body it may answer with, in bytes.
    pub(crate) max_body: u64,
    /// Where that limit is set, for the error, e.g. "`maxResponseBodySize`
    /// in the app's worker.jsonc".
    pub(crate) setting: &'static str,
    /// Where dropped framing headers are noted.
    pub(crate) dropped: &'a DroppedHeaders,
}

impl<'a> Guest<'a> {
    /// The rules `plugin`'s responses are checked against.
    pub(crate) fn for_plugin(
        plugin: &'a crate::plugins::Plugin,
        dropped: &'a DroppedHeaders,
    ) -> Self {
        Guest {
            module: plugin.name(),
            max_body: plugin.manifest.max_response_body_size,
            setting: "`maxResponseBodySize` in the plugin's manifest.jsonc",
            dropped,
        }
    }
}

impl Guest<'_> {
    /// Sets the limit of `buntime_response_body_write` for this guest's
    /// call; the default needs no extension (and so no allocation).
    pub(crate) fn limit_writes(&self, ext: &mut http::Extensions) {
        if self.max_body != crate::config::DEFAULT_MAX_RESPONSE_BODY {
            ext.insert(ResponseBodyLimit::new(self.max_body));
        }
    }

    /// The size of a body write the host refused during the call, if any.
    pub(crate) fn refused(ext: &mut http::Extensions) -> Option<u64> {
        ext.remove::<ResponseBodyLimit>().and_then(|l| l.refused)
    }

    /// Fails when a body of `size` bytes is over the limit.
    pub(crate) fn check_body(&self, size: u64) -> Result<(), BadResponse> {
        if size > self.max_body {
            return Err(self.over_limit(size));
        }
        Ok(())
    }

    /// The error for a body of `size` bytes (or more: a refused write),
    /// naming the limit and where to raise it.
    pub(crate) fn over_limit(&self, size: u64) -> BadResponse {
        BadResponse::TooLarge(format!(
            "the response body of {size} bytes (or more) exceeds the limit of {} bytes; raise {} to allow it",
            self.max_body, self.setting
        ))
    }
}

/// Serializes headers as `[[name, value], ...]` straight from the map (plus
/// one extra pair, such as `x-base`, and a traced call's `traceparent`),
/// without building owned pairs first: the request path's hot spot.
pub(crate) struct HeaderPairs<'a>(
    pub(crate) &'a HeaderMap,
    pub(crate) Option<(&'a str, &'a str)>,
    /// A traced call's span, in place of the map's `traceparent` and
    /// `tracestate`.
    pub(crate) Option<&'a TraceHeaders>,
);

impl<'a> HeaderPairs<'a> {
    /// The pairs, in order: the map's (values that are not visible ASCII
    /// left out, as [`HeaderValue::to_str`] refuses them), then the extra,
    /// then the trace headers.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        let trace = self.2;
        self.0
            .iter()
            .filter(move |(k, _)| trace.is_none() || !TraceHeaders::replaces(k))
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .chain(self.1)
            .chain(trace.into_iter().flat_map(TraceHeaders::pairs))
    }
}

impl serde::Serialize for HeaderPairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// `buntime_pdk::RequestHead` as a guest receives it, written from
/// borrowed parts by [`HeadView::to_json`] (no copies). The serde impl is
/// the tests' reference for that JSON.
#[derive(serde::Serialize)]
pub(crate) struct HeadView<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: HeaderPairs<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) base: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body_length: Option<u64>,
    /// Set only for a core route's request (`coreRoutes`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) core_route: bool,
}

impl<'a> HeadView<'a> {
    /// The head the plugin chain's `on_request` receives: the request as the
    /// client sent it, with no mount.
    pub(crate) fn for_chain(req: &'a axum::extract::Request, body_length: Option<u64>) -> Self {
        HeadView {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: HeaderPairs(req.headers(), None, None),
            base: "",
            request_id: request_id(req.extensions()),
            body_length,
            core_route: false,
        }
    }

    /// The head a guest mounted at `base` receives (an app at `/<app>`, a
    /// plugin's `handle` at `/_/<base>`): `path` is the part below the mount,
    /// `headers` gain `x-base`, and the body has been read whole.
    pub(crate) fn mounted(
        parts: &'a http::request::Parts,
        method: &'a str,
        path: &'a str,
        headers: &'a http::HeaderMap,
        base: &'a str,
        body_length: u64,
    ) -> Self {
        HeadView {
            method,
            path,
            query: parts.uri.query(),
            headers: HeaderPairs(headers, Some(("x-base", base)), None),
            base,
            request_id: request_id(&parts.extensions),
            body_length: Some(body_length),
            core_route: false,
        }
    }

    /// The head of a traced call: `trace`'s `traceparent` (and
    /// `tracestate`) in place of the request's.
    pub(crate) fn traced(mut self, trace: Option<&'a TraceHeaders>) -> Self {
        self.headers.2 = trace;
        self
    }

    /// The head in the binary layout (`buntime_pdk::head_binary`) when
    /// `binary`, else as JSON.
    pub(crate) fn encode(&self, binary: bool) -> Bytes {
        if binary {
            self.to_binary()
        } else {
            self.to_json()
        }
    }

    /// The head in the binary layout a guest that declares it reads it is
    /// sent (`docs/abi.md` §14): lengths and bytes, nothing to escape. The
    /// layout is the PDK's, written by its own encoder.
    pub(crate) fn to_binary(&self) -> Bytes {
        Bytes::from(buntime_pdk::head_binary::encode(
            self.method,
            self.path,
            self.query,
            self.headers.iter(),
            self.base,
            self.request_id,
            self.body_length,
            self.core_route,
        ))
    }

    /// The head as JSON, written into one buffer sized for a typical head:
    /// what `serde_json` writes for it, by hand ([`super::head_json`]).
    pub(crate) fn to_json(&self) -> Bytes {
        let mut out = JsonObject::new(Vec::with_capacity(512));
        out.str_field("method", self.method);
        out.str_field("path", self.path);
        if let Some(query) = self.query {
            out.str_field("query", query);
        }
        out.headers_field("headers", &self.headers);
        if !self.base.is_empty() {
            out.str_field("base", self.base);
        }
        if !self.request_id.is_empty() {
            out.str_field("request_id", self.request_id);
        }
        if let Some(length) = self.body_length {
            out.u64_field("body_length", length);
        }
        if self.core_route {
            out.bool_field("core_route", true);
        }
        Bytes::from(out.finish())
    }
}

/// A request head written for the plugin chain, at most once per form
/// (JSON, the binary layout) until a plugin changes the request.
#[derive(Default)]
pub(crate) struct HeadForms([Option<Bytes>; 2]);

impl HeadForms {
    /// The slot of the form a guest reads (`binary` or JSON).
    pub(crate) fn get(&mut self, binary: bool) -> &mut Option<Bytes> {
        &mut self.0[usize::from(binary)]
    }
}

/// The request's id, or "" before the request-id layer has set one.
pub(crate) fn request_id(extensions: &http::Extensions) -> &str {
    extensions
        .get::<super::RequestId>()
        .map_or("", super::RequestId::as_str)
}

/// Builds the response to an app request from the output of its `handle`
/// (a [`ResponseHead`] as JSON) and the binary body it wrote, if any.
/// Header values and an inline body share the output's buffer.
pub(crate) fn response_from_output(
    output: &Bytes,
    body: Option<ResponseBody>,
    guest: &Guest<'_>,
) -> Result<Response, BadResponse> {
    // The part of a `ResponseHead` the answer is built from, its strings
    // borrowed from the output (read without serde where it can be).
    let head = ResponseHeadRef::from_json(output).map_err(|e| e.to_string())?;
    // A borrowed string is a slice of `output`; an unescaped copy is not.
    let share = |text: Cow<'_, str>| match text {
        Cow::Borrowed(s) => output.slice_ref(s.as_bytes()),
        Cow::Owned(s) => Bytes::from(s),
    };
    let headers = head
        .headers
        .into_iter()
        .map(|(Text(k), Text(v))| (k, share(v)));
    build(
        head.status,
        headers,
        head.body.map(|text| share(text.0)),
        body,
        guest,
    )
}

/// Builds a response from a guest's head and (binary) body; the error says
/// what is wrong with the head.
pub(crate) fn response_from_head(
    head: ResponseHead,
    body: Option<ResponseBody>,
    guest: &Guest<'_>,
) -> Result<Response, BadResponse> {
    let headers = head.headers.into_iter().map(|(k, v)| (k, Bytes::from(v)));
    build(
        head.status,
        headers,
        head.body.map(Bytes::from),
        body,
        guest,
    )
}

/// The response a guest described: an inline body wins over a binary one.
/// Framing headers are dropped; the status and the body size are checked.
fn build<K: AsRef<str>>(
    status: u16,
    headers: impl Iterator<Item = (K, Bytes)>,
    inline: Option<Bytes>,
    body: Option<ResponseBody>,
    guest: &Guest<'_>,
) -> Result<Response, BadResponse> {
    let status = guest_status(status)?;
    let bytes = match (inline, body) {
        (Some(text), _) => text,
        (None, Some(b)) => b.0.freeze(),
        (None, None) => Bytes::new(),
    };
    guest.check_body(bytes.len() as u64)?;
    let mut res = Response::new(Body::from(bytes));
    *res.status_mut() = status;
    let checked = GuestHeaders {
        module: guest.module,
        field: "the response's `headers`",
        dropped: guest.dropped,
    };
    for (k, v) in headers {
        if let Some((name, value)) = checked.header(k.as_ref(), v)? {
            res.headers_mut().append(name, value);
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(dropped: &DroppedHeaders) -> Guest<'_> {
        Guest {
            module: "app `t`",
            max_body: 16,
            setting: "`maxResponseBodySize`",
            dropped,
        }
    }

    #[test]
    fn an_app_response_is_read_with_or_without_escapes() {
        let out = Bytes::from_static(
            br#"{"status":201,"headers":[["x-plain","a b"],["x-quoted","say \"hi\""]],"body":"line\none"}"#,
        );
        let log = DroppedHeaders::default();
        let res = response_from_output(&out, None, &guest(&log)).expect("valid head");
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["x-plain"], "a b");
        assert_eq!(res.headers()["x-quoted"], "say \"hi\"");
        let plain = Bytes::from_static(br#"{"status":200,"body":"no escapes"}"#);
        let res = response_from_output(&plain, None, &guest(&log)).expect("valid head");
        assert_eq!(res.status(), 200);
    }

    #[test]
    fn a_bad_app_response_says_what_is_wrong() {
        let log = DroppedHeaders::default();
        let cases: [(&[u8], &str); 7] = [
            (br#"{"status":99}"#, "status 99 is not allowed"),
            (br#"{"status":101}"#, "status 101 is not allowed"),
            (br#"{"status":600}"#, "status 600 is not allowed"),
            (
                br#"{"status":200,"body":"seventeen bytes!!"}"#,
                "exceeds the limit of 16 bytes; raise `maxResponseBodySize`",
            ),
            (
                br#"{"status":200,"headers":[["bad name","x"]]}"#,
                "`bad name` in the response's `headers` is not a valid header name",
            ),
            (
                br#"{"status":200,"headers":[["x-a","\u0001"]]}"#,
                "the value of `x-a` in the response's `headers` is not a valid header value",
            ),
            (br#"{"headers":[]}"#, "missing field `status`"),
        ];
        for (json, want) in cases {
            let err = response_from_output(&Bytes::copy_from_slice(json), None, &guest(&log))
                .expect_err("must be refused")
                .to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn framing_headers_are_dropped_and_the_rest_kept() {
        let log = DroppedHeaders::default();
        let out = Bytes::from_static(
            br#"{"status":200,"headers":[["Content-Length","0"],["transfer-encoding","chunked"],["Connection","close"],["keep-alive","x"],["upgrade","h2c"],["te","trailers"],["trailer","x"],["proxy-authenticate","x"],["x-kept","yes"]]}"#,
        );
        let res = response_from_output(&out, None, &guest(&log)).expect("valid head");
        let names: Vec<&str> = res.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
        assert!(is_framing("proxy-connection") && !is_framing("x-proxy"));
    }
}
