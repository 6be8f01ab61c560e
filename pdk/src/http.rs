//! The HTTP heads exchanged with `handle`.
//!
//! Headers are a list of `[name, value]` pairs so repeated headers (such as
//! `set-cookie`) survive. Bodies are not part of the heads: see [`crate::abi`].

use serde::{Deserialize, Serialize};

/// What a guest's `handle` export receives as its input (JSON).
///
/// ```
/// use buntime_pdk::RequestHead;
/// let head: RequestHead = serde_json::from_str(
///     r#"{"method":"GET","path":"/a","query":"x=1","headers":[["accept","*/*"]]}"#,
/// ).unwrap();
/// assert_eq!(head.header("Accept"), Some("*/*"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHead {
    /// Upper-case method, e.g. `GET`.
    pub method: String,
    /// The path the app sees (its `/name@version` prefix removed), starting with `/`.
    pub path: String,
    /// The raw query string without `?`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Request headers, names in lower case.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The prefix the app is mounted at (also sent as `x-base`), e.g. `/hello@1.0.0`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base: String,
    /// The request id (also sent as `x-request-id`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// Length of the body waiting in the host, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_length: Option<u64>,
    /// `true` when a plugin's `on_request` is called for a core route
    /// (`/_/api/*` and the like; the manifest's `coreRoutes`): the host then
    /// keeps only the CORS headers it asks for and its answer to a CORS
    /// preflight, so a plugin should do nothing else (count, limit, log).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub core_route: bool,
}

/// The client of a request: not part of the head, read on demand with
/// `buntime_pdk::client()` (apps: `Request::client`), so guests that never
/// look at it never pay for it.
///
/// `address` is the connection's peer unless the peer is a proxy the
/// operator trusts (`RUNTIME_TRUSTED_PROXIES`); then it is the address that
/// proxy reported. `scheme` and `host` are the ones the client used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// The connection's peer, `ip:port`.
    pub peer: String,
    /// The client's IP address.
    pub address: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The host (and port) the client asked for, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// For a request to `/_/…` that presented one of the server's API keys
    /// (which the server removes before any plugin runs): the first 16
    /// bytes of the key's SHA-256, in hex. The key itself never reaches a
    /// guest; this lets a plugin tell callers apart by key.
    #[serde(
        default,
        rename = "apiKeyHash",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key_hash: Option<String>,
}

impl RequestHead {
    /// The query's `name=value` pairs, percent-decoded (`+` is a space).
    ///
    /// ```
    /// use buntime_pdk::RequestHead;
    /// let head: RequestHead = serde_json::from_str(
    ///     r#"{"method":"GET","path":"/","query":"a=1&b=x%2Fy+z&flag"}"#,
    /// ).unwrap();
    /// assert_eq!(head.query_param("b").as_deref(), Some("x/y z"));
    /// assert_eq!(head.query_param("flag").as_deref(), Some(""));
    /// assert_eq!(head.query_param("c"), None);
    /// ```
    pub fn query_params(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    /// The first query parameter called `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a guest's `handle` export returns as its output (JSON).
///
/// A UTF-8 body may travel inline in `body`; any other body is written with
/// `buntime_response_body_write`. When `body` is present it is the whole body.
///
/// ```
/// use buntime_pdk::ResponseHead;
/// let head: ResponseHead = serde_json::from_str(r#"{"status":201}"#).unwrap();
/// assert_eq!(head.status, 201);
/// assert!(head.headers.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// An inline UTF-8 body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Plugin routes only: turn this response into a `text/event-stream` of
    /// every published event whose topic matches one of these patterns
    /// (within the plugin's `events.subscribe` grant), until the client leaves.
    ///
    /// With `events`, a `body` is sent first as one event (the stream's
    /// initial state), named like the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// With `events`: the SSE event name for every event sent, whose data is
    /// then the published payload alone. Without it, each event is named by
    /// its topic and its data is `{"topic", "data", "source"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// With `events`: an export of the plugin the host calls to produce
    /// events — when the stream opens, whenever a matching event is
    /// published, and every `intervalMs`. It returns a JSON list of
    /// `{"event", "data"}` to send (empty: nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<StreamPoll>,
    /// With `events`: send only the events whose payload passes every one
    /// of these conditions (the host checks them, so a narrow tail costs
    /// the plugin nothing per event).
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matching: Vec<FieldMatch>,
}

/// One condition on a field of an event's payload ([`ResponseHead::matching`]):
/// the field must be a string, and pass each test given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldMatch {
    /// The payload's field (top level).
    pub field: String,
    /// The field equals one of these (empty: no such test).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<String>,
    /// The field starts with one of these (empty: no such test); with
    /// `oneOf`, passing either test is enough.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix: Vec<String>,
    /// The field contains this text, ignoring case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

impl FieldMatch {
    /// Whether `payload` passes.
    pub fn passes(&self, payload: &serde_json::Value) -> bool {
        let Some(value) = payload.get(&self.field).and_then(|v| v.as_str()) else {
            return false;
        };
        let listed = (self.one_of.is_empty() && self.prefix.is_empty())
            || self.one_of.iter().any(|v| v == value)
            || self.prefix.iter().any(|p| value.starts_with(p.as_str()));
        listed
            && self
                .contains
                .as_ref()
                .is_none_or(|c| value.to_lowercase().contains(&c.to_lowercase()))
    }
}

/// How the host asks a plugin for the next events of a stream
/// ([`ResponseHead::poll`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamPoll {
    /// The export to call.
    pub function: String,
    /// Its input, each time.
    #[serde(default)]
    pub input: serde_json::Value,
    /// The longest wait between calls, in ms (at least 50).
    pub interval_ms: u64,
}

impl ResponseHead {
    /// A head with `status` and nothing else.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
            events: Vec::new(),
            event: None,
            poll: None,
            matching: Vec::new(),
        }
    }
}

/// Decodes `%XX` escapes and `+` (a space, as in form encoding). Invalid
/// escapes are kept as written; invalid UTF-8 becomes U+FFFD.
///
/// ```
/// assert_eq!(buntime_pdk::http::percent_decode("a%20b+c%zz"), "a b c%zz");
/// ```
pub fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
