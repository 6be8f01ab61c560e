//! The spans of a request and their attributes (OpenTelemetry semantic
//! conventions for HTTP and databases, `buntime.*` for the rest).
//!
//! A sampled request gets a [`RequestSpan`] (the server span), current
//! while the request's future is polled (`current.rs`). Each guest call
//! under it is a [`CallSpan`], current while the call runs, so the `http`
//! and `sql` host functions start their client spans under the hook or app
//! that called them, and the log lines written meanwhile name that span
//! (`log_ids.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, Method};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceState};

use super::encode;
use super::log_ids::TraceIds;
use super::propagation::{RequestHeaders, TraceHeaders};
use super::record::{Named, SpanRecord};
use super::{Telemetry, Tracing, ids, propagation};

/// Where the spans of a call start: a sampled span's context and the
/// pipeline. Cloning is one reference count and a small copy.
#[derive(Clone)]
pub(crate) struct SpanParent {
    tracing: Arc<Tracing>,
    context: SpanContext,
}

impl std::fmt::Debug for SpanParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanParent")
            .field("trace_id", &self.context.trace_id())
            .field("span_id", &self.context.span_id())
            .finish()
    }
}

/// The server span of one sampled request. Dropped without
/// [`RequestSpan::finish`] (the response abandoned), it ends as it is.
pub(crate) struct RequestSpan {
    record: SpanRecord,
    parent: SpanParent,
}

/// The span of one guest call or of one call a guest makes. Dropped without
/// [`CallSpan::end`] (the call abandoned), it ends as it is.
pub(crate) struct CallSpan {
    record: SpanRecord,
    parent: SpanParent,
}

impl Telemetry {
    /// Starts the server span of `req` from `peer`, continuing the caller's
    /// `traceparent`. `None` when tracing is off or the sampler drops the
    /// request: then nothing else is made. The request is left as it came
    /// either way; the span's [`RequestSpan::parent`] is to be made current
    /// while the request is served. Boxed: the request's future holds the
    /// `Option`, and stays as small as without tracing.
    pub(crate) fn request<B>(
        &self,
        req: &http::Request<B>,
        peer: Option<SocketAddr>,
    ) -> Option<Box<RequestSpan>> {
        let tracing = self.0.as_ref()?;
        let found = RequestHeaders::of(req.headers());
        let caller = propagation::extract_from(found.traceparent, found.tracestate);
        let trace_id = caller
            .as_ref()
            .map_or_else(ids::trace_id, SpanContext::trace_id);
        if !tracing.sampler.samples(caller.as_ref(), trace_id) {
            return None;
        }
        // A span continuing a caller keeps its trace state (the SDK's
        // samplers hand the parent's on).
        let (parent, parent_remote, state) = match caller {
            Some(caller) => (caller.span_id(), true, caller.trace_state().clone()),
            None => (SpanId::INVALID, false, TraceState::NONE),
        };
        let context = SpanContext::new(trace_id, ids::span_id(), TraceFlags::SAMPLED, false, state);
        let mut record = match known_method_fields(req.method()) {
            Some(fields) => SpanRecord::start(
                &context,
                (parent, parent_remote),
                Named::Encoded(fields),
                SpanKind::Server,
            ),
            None => {
                let mut record = SpanRecord::start(
                    &context,
                    (parent, parent_remote),
                    Named::Name("HTTP", None),
                    SpanKind::Server,
                );
                method_fields(&mut record.fields, "_OTHER");
                record.text("http.request.method_original", req.method().as_str());
                record
            }
        };
        record.text("url.path", req.uri().path());
        if let Some(host) = found.host.and_then(|h| h.to_str().ok()) {
            server_address(&mut record, host);
        }
        if let Some(ua) = found.user_agent.and_then(|v| v.to_str().ok()) {
            record.text("user_agent.original", ua);
        }
        if let Some(peer) = peer {
            crate::access::with_ip_text(peer.ip(), |ip| record.text("network.peer.address", ip));
        }
        // No `traceparent` is written into the request here: every guest
        // call (hook, app, plugin route) and every proxied request writes
        // its own span's, and nothing else reads the request's headers.
        Some(Box::new(RequestSpan {
            record,
            parent: SpanParent {
                tracing: tracing.clone(),
                context,
            },
        }))
    }

    /// The span current on this thread ([`SpanParent::with_current`]) when
    /// tracing is on: a branch on an `Option` when it is off.
    pub(crate) fn current(&self) -> Option<SpanParent> {
        self.0.as_ref()?;
        SpanParent::current()
    }
}

impl RequestSpan {
    /// The span's context, to be made current while the request is served
    /// (`current.rs`).
    pub(crate) fn parent(&self) -> &SpanParent {
        &self.parent
    }

    /// Ends the span with the response's status (and the app version that
    /// answered, `name@version` as the response's `x-buntime-app` names
    /// it, when one did).
    pub(crate) fn finish(mut self, status: http::StatusCode, app: Option<&http::HeaderValue>) {
        let record = &mut self.record;
        record.int("http.response.status_code", i64::from(status.as_u16()));
        if let Some((app, version)) = app.and_then(|v| v.to_str().ok()).and_then(app_and_version) {
            record.text("buntime.app", app);
            record.text("buntime.app.version", version);
        }
        if status.is_server_error() {
            record.text("error.type", status.as_str());
            record.status = Status::error("");
        }
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        self.parent
            .tracing
            .processor
            .end(&self.record, SystemTime::now());
    }
}

impl SpanParent {
    /// The ids a guest's log lines name (`log_ids.rs`).
    pub(crate) fn log_ids(&self) -> TraceIds {
        TraceIds::of(&self.context)
    }

    /// A child span of this one (sampled, as its parent is: every sampler
    /// keeps the children of a sampled span).
    fn child(&self, name: Named<'_>, kind: SpanKind) -> CallSpan {
        let context = SpanContext::new(
            self.context.trace_id(),
            ids::span_id(),
            self.context.trace_flags() | TraceFlags::SAMPLED,
            false,
            self.context.trace_state().clone(),
        );
        let record = SpanRecord::start(
            &context,
            (self.context.span_id(), self.context.is_remote()),
            name,
            kind,
        );
        CallSpan {
            record,
            parent: SpanParent {
                tracing: self.tracing.clone(),
                context,
            },
        }
    }

    /// The span of a plugin's hook ([`CallSpanFields::hook`]). Boxed: a
    /// hook call's future holds the `Option` across the call, and inline
    /// the span doubled that future's size (1,184 bytes against the call's
    /// 584), traced or not.
    pub(crate) fn hook(&self, fields: &CallSpanFields) -> Box<CallSpan> {
        Box::new(self.child(Named::Encoded(&fields.0), SpanKind::Internal))
    }

    /// The span of the call of an app version ([`CallSpanFields::app`]).
    pub(crate) fn app(&self, fields: &CallSpanFields) -> CallSpan {
        self.child(Named::Encoded(&fields.0), SpanKind::Internal)
    }

    /// The client span of an outbound HTTP request by `guest`.
    pub(crate) fn http_client(&self, guest: &str, method: &Method, url: &url::Url) -> CallSpan {
        let name = match method_name(method) {
            "_OTHER" => "HTTP",
            known => known,
        };
        let mut span = self.child(Named::Name(name, None), SpanKind::Client);
        let record = &mut span.record;
        record.text("http.request.method", method_name(method));
        record.text("url.full", &redacted(url));
        record.text("buntime.guest", guest);
        if let Some(host) = url.host_str() {
            record.text("server.address", host);
        }
        if let Some(port) = url.port_or_known_default() {
            record.int("server.port", i64::from(port));
        }
        span
    }

    /// The client span of `function` (`sql_query`, …) on database `db` by
    /// `guest`; `statement` is its text when it is a single one.
    pub(crate) fn sql(
        &self,
        guest: &str,
        function: &'static str,
        db: &str,
        statement: Option<String>,
    ) -> CallSpan {
        let mut span = self.child(Named::Name(function, Some(db)), SpanKind::Client);
        let record = &mut span.record;
        record.text("db.system.name", "sqlite");
        record.text("db.namespace", db);
        record.text("db.operation.name", function);
        record.text("buntime.guest", guest);
        if let Some(text) = statement {
            record.text("db.query.text", &text);
        }
        span
    }
}

/// The name and attributes of a guest call's span that are the same on
/// every call: a plugin hook's (`"{plugin} {hook}"`, `buntime.plugin`,
/// `buntime.hook`) or an app version's (`"{name@version} handle"`,
/// `buntime.app`, `buntime.app.version`). Encoded once, where the plugin or
/// app pool is made, and copied into each of its spans: writing them per
/// call was about a third of a call span's cost.
#[derive(Debug, Clone)]
pub(crate) struct CallSpanFields(Box<[u8]>);

impl CallSpanFields {
    /// Those of `plugin`'s `hook`.
    pub(crate) fn hook(plugin: &str, hook: &'static str) -> Self {
        let mut fields = Vec::new();
        encode::name(&mut fields, plugin, Some(hook));
        encode::string_attribute(&mut fields, "buntime.plugin", plugin);
        encode::string_attribute(&mut fields, "buntime.hook", hook);
        Self(fields.into())
    }

    /// Those of the `handle` call of app version `key` (`name@version`).
    pub(crate) fn app(key: &str) -> Self {
        let (app, version) = app_and_version(key).unwrap_or((key, ""));
        let mut fields = Vec::new();
        encode::name(&mut fields, key, Some("handle"));
        encode::string_attribute(&mut fields, "buntime.app", app);
        encode::string_attribute(&mut fields, "buntime.app.version", version);
        Self(fields.into())
    }
}

/// The server span's name, `http.request.method` and `url.scheme` for a
/// method the semantic conventions know, encoded once per process (they
/// are constants); `None` for another method.
fn known_method_fields(method: &Method) -> Option<&'static [u8]> {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    static ENCODED: std::sync::OnceLock<[Box<[u8]>; 9]> = std::sync::OnceLock::new();
    let index = KNOWN.iter().position(|known| known == method)?;
    let encoded = ENCODED.get_or_init(|| {
        KNOWN.each_ref().map(|method| {
            let name = method_name(method);
            let mut fields = Vec::new();
            encode::name(&mut fields, name, None);
            method_fields(&mut fields, name);
            fields.into()
        })
    });
    Some(&encoded[index])
}

/// `http.request.method` (`method` as [`method_name`] gives it) and
/// `url.scheme`.
fn method_fields(fields: &mut Vec<u8>, method: &str) {
    encode::string_attribute(fields, "http.request.method", method);
    // The listener speaks plain HTTP (TLS ends in front of it).
    encode::string_attribute(fields, "url.scheme", "http");
}

impl CallSpan {
    /// The parent of the spans this call starts, to be made current while
    /// it runs (`current.rs`).
    pub(crate) fn parent(&self) -> &SpanParent {
        &self.parent
    }

    /// Sets `traceparent` (and `tracestate`) in `headers` to this span.
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        propagation::inject(&self.parent.context, headers);
    }

    /// This span's `traceparent` (and `tracestate`), for a guest's head.
    pub(crate) fn trace_headers(&self) -> Option<TraceHeaders> {
        TraceHeaders::of(&self.parent.context)
    }

    /// Sets the `http.response.status_code` of a client span.
    pub(crate) fn response_status(&mut self, status: u16) {
        self.record
            .int("http.response.status_code", i64::from(status));
    }

    /// Ends the span: failed with `error` (its `error.type` and message), or
    /// fine.
    pub(crate) fn end(mut self, error: Option<(&'static str, String)>) {
        if let Some((kind, message)) = error {
            self.record.text("error.type", kind);
            self.record.status = Status::error(message);
        }
    }
}

impl Drop for CallSpan {
    fn drop(&mut self) {
        self.parent
            .tracing
            .processor
            .end(&self.record, SystemTime::now());
    }
}

/// `server.address` and `server.port` from a `Host` header, as
/// `http::uri::Authority` reads it (nothing when it does not parse).
fn server_address(record: &mut SpanRecord, host: &str) {
    if let Some((name, port)) = plain_host(host) {
        record.text("server.address", name);
        if let Some(port) = port {
            record.int("server.port", i64::from(port));
        }
        return;
    }
    if let Ok(authority) = host.parse::<http::uri::Authority>() {
        record.text("server.address", authority.host());
        if let Some(port) = authority.port_u16() {
            record.int("server.port", i64::from(port));
        }
    }
}

/// The usual `Host` (a name or IPv4 address of letters, digits, dots and
/// dashes, and a port) split without `Authority`'s parser, which copies the
/// value and validates it byte by byte through a table; anything else is
/// left to that parser.
fn plain_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = match host.bytes().rposition(|b| b == b':') {
        Some(colon) => {
            let digits = &host[colon + 1..];
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            (&host[..colon], Some(digits.parse::<u16>().ok()?))
        }
        None => (host, None),
    };
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    plain.then_some((name, port))
}

/// `name@version` split at its last `@`. By bytes: `rsplit_once('@')`
/// searches for a `char`, several times the work for these short keys.
fn app_and_version(key: &str) -> Option<(&str, &str)> {
    let at = key.bytes().rposition(|b| b == b'@')?;
    Some((&key[..at], &key[at + 1..]))
}

/// The method as the semantic conventions name it (`_OTHER` for the rest).
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// `url` without credentials and query (which may carry secrets).
fn redacted(url: &url::Url) -> String {
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.set_query(None);
    clean.set_fragment(None);
    clean.into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_plain_host_is_split_as_authority_splits_it() {
        for host in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:3000",
            "a-b.c:65535",
            "a:65536",
            "a:0",
            "a:",
            ":80",
            "[::1]:80",
            "user@host:1",
            "exa mple",
            "é.com:1",
            "a:b:1",
            "a:00080",
        ] {
            let parsed = host
                .parse::<http::uri::Authority>()
                .ok()
                .map(|a| (a.host().to_owned(), a.port_u16()));
            if let Some((name, port)) = super::plain_host(host) {
                assert_eq!(Some((name.to_owned(), port)), parsed, "{host}");
            }
        }
        assert_eq!(super::plain_host("a.b:80"), Some(("a.b", Some(80))));
        assert_eq!(super::plain_host("a.b"), Some(("a.b", None)));
    }

    #[test]
    fn an_app_key_splits_at_its_last_at_sign() {
        assert_eq!(super::app_and_version("a@b@1.0.0"), Some(("a@b", "1.0.0")));
        assert_eq!(super::app_and_version("no-version"), None);
    }
}
