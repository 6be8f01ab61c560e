//! What a plugin's request and response hooks answer.
//!
//! `on_request` receives a [`crate::RequestHead`] and answers a
//! [`RequestDecision`]; `on_response` receives a [`ResponseView`] and answers
//! [`ResponseChanges`]; `on_event` receives an [`Event`]. All JSON.

use serde::{Deserialize, Serialize};

use crate::http::ResponseHead;

/// The answer of `on_request`.
///
/// ```
/// use buntime_pdk::hooks::RequestDecision;
/// let d: RequestDecision = serde_json::from_str(r#"{"action":"continue"}"#).unwrap();
/// assert_eq!(d, RequestDecision::Continue(Default::default()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RequestDecision {
    /// Go on to the next plugin and then the app, optionally with changes.
    Continue(RequestChanges),
    /// Answer now; later plugins and the app are skipped.
    Respond {
        /// The response to send.
        response: ResponseHead,
    },
    /// Answer with what an upstream answers: the host forwards the request
    /// (its body streamed) and streams the response back; later plugins and
    /// the app are skipped. Needs the `upstream` capability.
    Proxy {
        /// Where and how to forward it.
        upstream: Upstream,
    },
}

/// A request delegated to an upstream (`RequestDecision::Proxy`).
///
/// ```
/// use buntime_pdk::hooks::{RequestDecision, Upstream};
/// let d = RequestDecision::proxy(Upstream::new("http://10.0.0.5:8080/v1/items?page=2").timeout_ms(5000));
/// let json = serde_json::to_string(&d).unwrap();
/// assert_eq!(json, r#"{"action":"proxy","upstream":{"url":"http://10.0.0.5:8080/v1/items?page=2","timeout_ms":5000}}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The absolute `http` or `https` URL the request goes to: path and
    /// query included (they replace the request's).
    pub url: String,
    /// Headers to set on the forwarded request (replacing any of the same
    /// name), e.g. `host` to send the client's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<(String, String)>,
    /// Headers to remove from the forwarded request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<String>,
    /// The longest silence, in milliseconds (default 30 000): from the
    /// request body's last piece to the response head, and between two
    /// pieces of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// How long connecting may take, in milliseconds (default 5 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Relay a WebSocket upgrade: when the request asks for one and the
    /// upstream switches protocols, the host relays the connection both
    /// ways. Without it, the upgrade headers are dropped like any
    /// hop-by-hop header and the request is forwarded as a plain one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub websocket: bool,
    /// A relayed WebSocket is closed after this long without a byte either
    /// way, in milliseconds (default 300 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// A relayed WebSocket is closed after this long in all, in
    /// milliseconds (default 3 600 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_ms: Option<u64>,
}

impl Upstream {
    /// Forward to `url` as the request is.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets a header on the forwarded request.
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_headers.push((name.into(), value.into()));
        self
    }

    /// Removes a header from the forwarded request.
    pub fn remove_header(mut self, name: impl Into<String>) -> Self {
        self.remove_headers.push(name.into());
        self
    }

    /// The answer and read timeout.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// The connect timeout.
    pub fn connect_timeout_ms(mut self, ms: u64) -> Self {
        self.connect_timeout_ms = Some(ms);
        self
    }

    /// Relays a WebSocket upgrade.
    pub fn websocket(mut self) -> Self {
        self.websocket = true;
        self
    }
}

/// Changes a plugin makes to a request it lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestChanges {
    /// Headers to set (replacing any of the same name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<(String, String)>,
    /// Headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<String>,
    /// A new path (routes the request elsewhere, e.g. to another app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A new query string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Headers to set on the response to this request, whatever produces
    /// it (the app, a plugin route, a later plugin's answer, a host error),
    /// before this plugin's own `on_response` would run. A `vary` is merged
    /// into the response's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<(String, String)>,
    /// This plugin's `on_response` need not run for this request: a plugin
    /// that only sometimes looks at the response (a request log that samples)
    /// saves the hook call on the others.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_on_response: bool,
}

/// What `on_response` sees: the response head (the body stays in the host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseView {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The request's path.
    pub path: String,
}

/// The answer of `on_response`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseChanges {
    /// A new status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Headers to set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<(String, String)>,
    /// Headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<String>,
}

/// A published event, as `on_event` receives it and event streams carry it.
///
/// ```
/// use buntime_pdk::hooks::Event;
/// let e: Event = serde_json::from_str(r#"{"topic":"worker_spawn","data":{"app":"hello@1.0.0"},"source":"buntime"}"#).unwrap();
/// assert_eq!(e.data["app"], "hello@1.0.0");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its topic, e.g. `keyval.changed` or `worker_spawn`.
    pub topic: String,
    /// Its payload.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Who published it: a plugin's name, or `buntime` for lifecycle events.
    #[serde(default)]
    pub source: String,
    /// `data`'s JSON text exactly as the publisher sent it (member order and
    /// number spelling kept), when the host has it: event streams forward
    /// this text rather than `data` printed again. Not part of the wire form.
    #[serde(skip)]
    pub text: Option<std::sync::Arc<str>>,
}

impl RequestDecision {
    /// Continue unchanged.
    pub fn pass() -> Self {
        Self::Continue(RequestChanges::default())
    }

    /// Answer now with `response`.
    pub fn respond(response: ResponseHead) -> Self {
        Self::Respond { response }
    }

    /// Answer with what `upstream` answers.
    pub fn proxy(upstream: Upstream) -> Self {
        Self::Proxy { upstream }
    }

    /// Whether this continues unchanged (the empty answer on the wire).
    ///
    /// ```
    /// use buntime_pdk::hooks::{RequestChanges, RequestDecision};
    /// assert!(RequestDecision::pass().is_pass());
    /// assert!(!RequestDecision::Continue(RequestChanges::default().set_header("a", "b")).is_pass());
    /// ```
    pub fn is_pass(&self) -> bool {
        matches!(self, Self::Continue(c) if *c == RequestChanges::default())
    }
}

impl RequestChanges {
    /// Sets a header on the request.
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_headers.push((name.into(), value.into()));
        self
    }

    /// Removes a header from the request.
    pub fn remove_header(mut self, name: impl Into<String>) -> Self {
        self.remove_headers.push(name.into());
        self
    }

    /// Sets a header on the response this request will get, whatever
    /// produces it.
    pub fn response_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.response_headers.push((name.into(), value.into()));
        self
    }

    /// Routes the request to another path (for example another app).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Skips this plugin's `on_response` for this request.
    ///
    /// ```
    /// use buntime_pdk::hooks::RequestChanges;
    /// let json = serde_json::to_string(&RequestChanges::default().skip_on_response()).unwrap();
    /// assert_eq!(json, r#"{"skip_on_response":true}"#);
    /// ```
    pub fn skip_on_response(mut self) -> Self {
        self.skip_on_response = true;
        self
    }
}

impl ResponseChanges {
    /// Whether this changes nothing (the empty answer on the wire).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Sets a header on the response.
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
}
