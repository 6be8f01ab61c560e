//! The spans of a request and their attributes (OpenTelemetry semantic
//! conventions for HTTP and databases, `buntime.*` for the rest).
//!
//! A sampled request gets a [`RequestSpan`] (the server span); its context
//! rides along as a [`SpanParent`] in the request's extensions. Each guest
//! call under it is a [`CallSpan`] whose own [`SpanParent`] goes into the
//! call's extensions, so the `http` and `sql` host functions start their
//! client spans under the hook or app that called them, and the guest's log
//! lines name that span. The server span also opens a `tracing` span with
//! the trace and span ids, so the runtime's log lines for the request name
//! them. (A `tracing` span per call would name the call's span in the
//! runtime's few lines written during a call too, but costs more than the
//! call span itself on every sampled request.)

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method};
use opentelemetry::trace::{Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::Span;

use super::{Telemetry, Tracing, propagation};

/// The response header naming the app version that answered (set by the
/// app handler), read back for the server span's `buntime.app`.
const X_BUNTIME_APP: &str = "x-buntime-app";

/// Where the spans of a call start: a sampled span's context and the
/// tracer. Cloning is one reference count and a small copy.
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

/// The server span of one sampled request.
pub(crate) struct RequestSpan {
    span: Span,
    log: tracing::Span,
}

/// The span of one guest call or of one call a guest makes.
pub(crate) struct CallSpan {
    span: Span,
    parent: SpanParent,
}

impl Telemetry {
    /// Starts the server span of `req` from `peer`, continuing the caller's
    /// `traceparent`. `None` when tracing is off or the sampler drops the
    /// request: then nothing else is made and the request is left as it
    /// came. Otherwise the request's `traceparent` becomes the server span's
    /// and its [`SpanParent`] is attached. Boxed: the request's future
    /// holds the `Option`, and stays as small as without tracing.
    pub(crate) fn request<B>(
        &self,
        req: &mut http::Request<B>,
        peer: Option<SocketAddr>,
    ) -> Option<Box<RequestSpan>> {
        let tracing = self.0.as_ref()?;
        let caller = propagation::extract(req.headers());
        let method = method_name(req.method());
        // No attributes until the sampler has decided: a dropped request
        // allocates nothing more.
        let mut span = tracing
            .tracer
            .span_builder(if method == "_OTHER" { "HTTP" } else { method })
            .with_kind(SpanKind::Server)
            .start_with_context(&tracing.tracer, &caller);
        let context = span.span_context().clone();
        if !context.is_sampled() {
            return None;
        }
        let mut attributes = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", req.uri().path().to_owned()),
            // The listener speaks plain HTTP (TLS ends in front of it).
            KeyValue::new("url.scheme", "http"),
        ];
        if method == "_OTHER" {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                req.method().as_str().to_owned(),
            ));
        }
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<http::uri::Authority>().ok());
        if let Some(host) = host {
            attributes.push(KeyValue::new("server.address", host.host().to_owned()));
            if let Some(port) = host.port_u16() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        if let Some(ua) = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            attributes.push(KeyValue::new("user_agent.original", ua.to_owned()));
        }
        if let Some(peer) = peer {
            attributes.push(KeyValue::new("network.peer.address", ip_text(peer.ip())));
        }
        span.set_attributes(attributes);
        propagation::inject(&context, req.headers_mut());
        // The ids as text from a hex encode: the log layer formats every
        // field when the span opens, and the ids' own `Display` (`{:032x}`
        // of a `u128`) made this span about 4 % of a traced server's CPU.
        let (trace_id, span_id) = propagation::ids_hex(&context);
        let log = tracing::error_span!(
            "trace",
            trace_id = %ascii(&trace_id),
            span_id = %ascii(&span_id)
        );
        req.extensions_mut().insert(SpanParent {
            tracing: tracing.clone(),
            context,
        });
        Some(Box::new(RequestSpan { span, log }))
    }
}

impl Telemetry {
    /// The [`SpanParent`] in `extensions` (a request's or a call's) when
    /// tracing is on: a branch on an `Option` when it is off.
    pub(crate) fn parent<'a>(&self, extensions: &'a http::Extensions) -> Option<&'a SpanParent> {
        self.0.as_ref()?;
        SpanParent::of(extensions)
    }
}

impl RequestSpan {
    /// The `tracing` span the request's log lines are written in.
    pub(crate) fn log_span(&self) -> tracing::Span {
        self.log.clone()
    }

    /// Ends the span with the response's status (and the app that
    /// answered, when one did).
    pub(crate) fn finish(mut self, status: http::StatusCode, headers: &HeaderMap) {
        self.span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if let Some((app, version)) = headers
            .get(X_BUNTIME_APP)
            .and_then(|v| v.to_str().ok())
            .and_then(|key| key.rsplit_once('@'))
        {
            self.span
                .set_attribute(KeyValue::new("buntime.app", app.to_owned()));
            self.span
                .set_attribute(KeyValue::new("buntime.app.version", version.to_owned()));
        }
        if status.is_server_error() {
            self.span
                .set_attribute(KeyValue::new("error.type", status.as_u16().to_string()));
            self.span.set_status(Status::error(""));
        }
        self.span.end();
    }
}

impl SpanParent {
    /// The parent attached to a sampled request or guest call.
    pub(crate) fn of(extensions: &http::Extensions) -> Option<&SpanParent> {
        extensions.get::<SpanParent>()
    }

    /// The trace id, 32 lowercase hex digits, as the log feed records it.
    pub(crate) fn trace_id(&self) -> String {
        self.context.trace_id().to_string()
    }

    /// The span id (16 lowercase hex digits when displayed).
    pub(crate) fn span_id(&self) -> opentelemetry::trace::SpanId {
        self.context.span_id()
    }

    /// A child span of this one.
    fn child(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> CallSpan {
        let tracer = &self.tracing.tracer;
        let parent = Context::new().with_remote_span_context(self.context.clone());
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        let context = span.span_context().clone();
        CallSpan {
            span,
            parent: SpanParent {
                tracing: self.tracing.clone(),
                context,
            },
        }
    }

    /// The span of `plugin`'s `hook`.
    pub(crate) fn hook(&self, plugin: &str, hook: &'static str) -> CallSpan {
        self.child(
            joined(plugin, hook),
            SpanKind::Internal,
            vec![
                KeyValue::new("buntime.plugin", plugin.to_owned()),
                KeyValue::new("buntime.hook", hook),
            ],
        )
    }

    /// The span of the call of app version `key` (`name@version`).
    pub(crate) fn app(&self, key: &str) -> CallSpan {
        let (app, version) = key.rsplit_once('@').unwrap_or((key, ""));
        self.child(
            joined(key, "handle"),
            SpanKind::Internal,
            vec![
                KeyValue::new("buntime.app", app.to_owned()),
                KeyValue::new("buntime.app.version", version.to_owned()),
            ],
        )
    }

    /// The client span of an outbound HTTP request by `guest`.
    pub(crate) fn http_client(&self, guest: &str, method: &Method, url: &url::Url) -> CallSpan {
        let mut attributes = vec![
            KeyValue::new("http.request.method", method_name(method)),
            KeyValue::new("url.full", redacted(url)),
            KeyValue::new("buntime.guest", guest.to_owned()),
        ];
        if let Some(host) = url.host_str() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = url.port_or_known_default() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let name = match method_name(method) {
            "_OTHER" => "HTTP",
            known => known,
        };
        self.child(name, SpanKind::Client, attributes)
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
        let mut attributes = vec![
            KeyValue::new("db.system.name", "sqlite"),
            KeyValue::new("db.namespace", db.to_owned()),
            KeyValue::new("db.operation.name", function),
            KeyValue::new("buntime.guest", guest.to_owned()),
        ];
        if let Some(text) = statement {
            attributes.push(KeyValue::new("db.query.text", text));
        }
        self.child(joined(function, db), SpanKind::Client, attributes)
    }
}

impl CallSpan {
    /// The parent of the spans this call starts (for its extensions).
    pub(crate) fn parent(&self) -> SpanParent {
        self.parent.clone()
    }

    /// Sets `traceparent` (and `tracestate`) in `headers` to this span.
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        propagation::inject(&self.parent.context, headers);
    }

    /// Adds an attribute.
    pub(crate) fn set_attribute(&mut self, attribute: KeyValue) {
        self.span.set_attribute(attribute);
    }

    /// Ends the span: failed with `error` (its `error.type` and message), or
    /// fine.
    pub(crate) fn end(mut self, error: Option<(&'static str, String)>) {
        if let Some((kind, message)) = error {
            self.span.set_attribute(KeyValue::new("error.type", kind));
            self.span.set_status(Status::error(message));
        }
        self.span.end();
    }
}

/// `"{a} {b}"`, without the formatting machinery (a span name per call).
fn joined(a: &str, b: &str) -> String {
    let mut name = String::with_capacity(a.len() + 1 + b.len());
    name.push_str(a);
    name.push(' ');
    name.push_str(b);
    name
}

/// `ip` as text; an IPv4 address (the usual peer) without the formatting
/// machinery, which showed at about 1 % of a traced server's CPU.
fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// Hex digits as text.
fn ascii(hex: &[u8]) -> &str {
    std::str::from_utf8(hex).unwrap_or_default()
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
    fn ip_text_is_the_display_of_the_address() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "9.99.199.200",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
        assert_eq!(super::joined("a@1.0.0", "handle"), "a@1.0.0 handle");
    }
}
