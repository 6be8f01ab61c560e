//! What guests answer on every request — the hooks' answers
//! ([`RequestDecision`], [`ResponseChanges`]) and apps' response heads
//! ([`ResponseHead`]) — written as JSON by hand: the bytes
//! `serde_json::to_vec` writes, without its per-field and per-byte calls,
//! which in a guest cost as much as a small hook's own work (a gateway
//! answering three CORS headers decides them in less time than serde takes
//! to write them). Runs of text that need no escape are copied whole, the
//! rest escaped as serde_json escapes it; the tests compare every answer
//! with serde_json's bytes. The host reads `continue` answers back with
//! [`RequestChanges::read_continue`] and `proxy` answers with
//! [`Upstream::read_proxy`] (the cursor of `json_scan.rs`).

use serde::Serialize;

use crate::ResponseHead;
use crate::hooks::{RequestChanges, RequestDecision, ResponseChanges, Upstream};
use std::borrow::Cow;

use crate::json_scan::{Cursor, once};

impl RequestDecision {
    /// The answer's wire form: exactly `serde_json::to_vec(self)`.
    ///
    /// ```
    /// use buntime_pdk::hooks::{RequestChanges, RequestDecision};
    /// let d = RequestDecision::Continue(RequestChanges::default().response_header("vary", "Origin"));
    /// assert_eq!(d.to_json(), serde_json::to_vec(&d).unwrap());
    /// ```
    pub fn to_json(&self) -> Vec<u8> {
        match self {
            Self::Continue(changes) => {
                let mut out = Json::with_capacity(256);
                out.raw(br#"{"action":"continue""#);
                changes.write(&mut out);
                out.raw(b"}");
                out.0
            }
            // A proxy's answer on every proxied request.
            Self::Proxy { upstream } => {
                let mut out = Json::with_capacity(64 + upstream.url.len());
                out.raw(br#"{"action":"proxy","upstream":"#);
                upstream.write(&mut out);
                out.raw(b"}");
                out.0
            }
            // Early answers, with nested heads and bodies: serde's.
            other => serde_bytes(other),
        }
    }
}

impl Upstream {
    /// The object, its members in declaration order as serde writes them
    /// (empty lists, `None` and `false` left out).
    fn write(&self, out: &mut Json) {
        out.raw(br#"{"url":"#);
        out.string(&self.url);
        out.header_changes(&self.set_headers, &self.remove_headers);
        let number = |out: &mut Json, name: &[u8], value: Option<u64>| {
            if let Some(ms) = value {
                out.raw(name);
                out.number(ms);
            }
        };
        number(out, br#","timeout_ms":"#, self.timeout_ms);
        number(out, br#","connect_timeout_ms":"#, self.connect_timeout_ms);
        if self.websocket {
            out.raw(br#","websocket":true"#);
        }
        number(out, br#","idle_timeout_ms":"#, self.idle_timeout_ms);
        number(out, br#","max_duration_ms":"#, self.max_duration_ms);
        out.raw(b"}");
    }

    /// The upstream of a `proxy` answer (`{"action":"proxy","upstream":
    /// {...}}`), read without serde; `None` for any other answer and
    /// wherever serde must read it (as [`RequestChanges::read_continue`]).
    ///
    /// ```
    /// use buntime_pdk::hooks::Upstream;
    /// let up = Upstream::read_proxy(br#"{"action":"proxy","upstream":{"url":"http://svc/x","timeout_ms":500}}"#).unwrap();
    /// assert_eq!(up, Upstream::new("http://svc/x").timeout_ms(500));
    /// assert!(Upstream::read_proxy(br#"{"action":"continue"}"#).is_none());
    /// ```
    pub fn read_proxy(json: &[u8]) -> Option<Self> {
        let mut c = Cursor::new(json)?;
        let mut action = false;
        let mut upstream = None;
        c.document(|c, key| match &*key {
            "action" if !action => {
                action = c.string()? == "proxy";
                action.then_some(())
            }
            "upstream" => once(&mut upstream, read_upstream(c)),
            "action" => None,
            _ => c.skip_value(),
        })?;
        if !action {
            return None;
        }
        upstream
    }
}

/// An `Upstream` object: its members in any order, unknown ones skipped
/// (as the derived reading skips them), `url` required.
fn read_upstream(c: &mut Cursor<'_>) -> Option<Upstream> {
    let (mut url, mut set_headers, mut remove_headers, mut websocket) = (None, None, None, None);
    let mut ms: [Option<Option<u64>>; 4] = [None; 4];
    c.object(|c, key| match &*key {
        "url" => once(&mut url, c.string().map(Cow::into_owned)),
        "set_headers" => once(&mut set_headers, c.pairs(Cow::into_owned)),
        "remove_headers" => once(&mut remove_headers, owned_names(c)),
        "websocket" => once(&mut websocket, c.boolean()),
        "timeout_ms" => once(&mut ms[0], c.optional(Cursor::u64)),
        "connect_timeout_ms" => once(&mut ms[1], c.optional(Cursor::u64)),
        "idle_timeout_ms" => once(&mut ms[2], c.optional(Cursor::u64)),
        "max_duration_ms" => once(&mut ms[3], c.optional(Cursor::u64)),
        _ => c.skip_value(),
    })?;
    let [
        timeout_ms,
        connect_timeout_ms,
        idle_timeout_ms,
        max_duration_ms,
    ] = ms.map(Option::flatten);
    Some(Upstream {
        url: url?,
        set_headers: set_headers.unwrap_or_default(),
        remove_headers: remove_headers.unwrap_or_default(),
        timeout_ms,
        connect_timeout_ms,
        websocket: websocket.unwrap_or(false),
        idle_timeout_ms,
        max_duration_ms,
    })
}

impl RequestChanges {
    /// The members after `"action"`, each preceded by a comma.
    fn write(&self, out: &mut Json) {
        out.header_changes(&self.set_headers, &self.remove_headers);
        if let Some(path) = &self.path {
            out.raw(br#","path":"#);
            out.string(path);
        }
        if let Some(query) = &self.query {
            out.raw(br#","query":"#);
            out.string(query);
        }
        if !self.response_headers.is_empty() {
            out.raw(br#","response_headers":"#);
            out.pairs(&self.response_headers);
        }
        if self.skip_on_response {
            out.raw(br#","skip_on_response":true"#);
        }
    }
}

impl ResponseChanges {
    /// The answer's wire form: exactly `serde_json::to_vec(self)`.
    ///
    /// ```
    /// use buntime_pdk::hooks::ResponseChanges;
    /// let c = ResponseChanges::default().status(418).set_header("x-a", "1");
    /// assert_eq!(c.to_json(), br#"{"status":418,"set_headers":[["x-a","1"]]}"#);
    /// ```
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Json::with_capacity(128);
        out.raw(b"{");
        let mut first = true;
        let mut member = |out: &mut Json, name: &[u8]| {
            if !std::mem::take(&mut first) {
                out.raw(b",");
            }
            out.raw(name);
        };
        if let Some(status) = self.status {
            member(&mut out, br#""status":"#);
            out.number(u64::from(status));
        }
        if !self.set_headers.is_empty() {
            member(&mut out, br#""set_headers":"#);
            out.pairs(&self.set_headers);
        }
        if !self.remove_headers.is_empty() {
            member(&mut out, br#""remove_headers":"#);
            out.names(&self.remove_headers);
        }
        out.raw(b"}");
        out.0
    }
}

impl RequestChanges {
    /// The changes of a `continue` answer (`{"action":"continue", ...}`),
    /// read without serde; `None` for any other answer and wherever serde
    /// must read it (an escape the reader does not decode, a member twice,
    /// malformed text). Where this answers, `serde_json::from_slice` reads
    /// the same answer the same way (the host reads every plugin's answer
    /// with this first).
    ///
    /// ```
    /// use buntime_pdk::hooks::RequestChanges;
    /// let c = RequestChanges::read_continue(br#"{"action":"continue","response_headers":[["vary","Origin"]]}"#).unwrap();
    /// assert_eq!(c.response_headers, [("vary".to_string(), "Origin".to_string())]);
    /// assert!(RequestChanges::read_continue(br#"{"action":"respond","response":{"status":204}}"#).is_none());
    /// ```
    pub fn read_continue(json: &[u8]) -> Option<Self> {
        let mut c = Cursor::new(json)?;
        let mut action = false;
        let (mut set_headers, mut remove_headers, mut path, mut query) = (None, None, None, None);
        let (mut response_headers, mut skip_on_response) = (None, None);
        c.document(|c, key| match &*key {
            "action" if !action => {
                action = c.string()? == "continue";
                // Another action is the host's other reading's to read.
                action.then_some(())
            }
            "set_headers" => once(&mut set_headers, c.pairs(Cow::into_owned)),
            "remove_headers" => once(&mut remove_headers, owned_names(c)),
            "path" => once(&mut path, c.optional_owned()),
            "query" => once(&mut query, c.optional_owned()),
            "response_headers" => once(&mut response_headers, c.pairs(Cow::into_owned)),
            "skip_on_response" => once(&mut skip_on_response, c.boolean()),
            // `action` twice included.
            "action" => None,
            _ => c.skip_value(),
        })?;
        if !action {
            return None;
        }
        Some(Self {
            set_headers: set_headers.unwrap_or_default(),
            remove_headers: remove_headers.unwrap_or_default(),
            path: path.flatten(),
            query: query.flatten(),
            response_headers: response_headers.unwrap_or_default(),
            skip_on_response: skip_on_response.unwrap_or(false),
        })
    }
}

/// `["name",...]`, owned.
fn owned_names(c: &mut Cursor<'_>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    c.array(|c| {
        out.push(c.string()?.into_owned());
        Some(())
    })?;
    Some(out)
}

impl ResponseHead {
    /// The head's wire form: exactly `serde_json::to_vec(self)`.
    ///
    /// ```
    /// use buntime_pdk::ResponseHead;
    /// let mut head = ResponseHead::new(200);
    /// head.headers.push(("content-type".into(), "text/plain".into()));
    /// head.body = Some("hi".into());
    /// assert_eq!(head.to_json(), serde_json::to_vec(&head).unwrap());
    /// ```
    pub fn to_json(&self) -> Vec<u8> {
        // Event streams (plugin routes) are rare: serde's.
        if !self.events.is_empty()
            || self.event.is_some()
            || self.poll.is_some()
            || !self.matching.is_empty()
        {
            return serde_bytes(self);
        }
        let body = self.body.as_deref().unwrap_or("");
        let mut out = Json::with_capacity(64 + body.len());
        out.raw(br#"{"status":"#);
        out.number(u64::from(self.status));
        out.raw(br#","headers":"#);
        out.pairs(&self.headers);
        if let Some(body) = &self.body {
            out.raw(br#","body":"#);
            out.string(body);
        }
        out.raw(b"}");
        out.0
    }
}

fn serde_bytes(value: &impl Serialize) -> Vec<u8> {
    // Serializing these types to a Vec cannot fail: no maps with non-string
    // keys, no failing Serialize impls.
    serde_json::to_vec(value).unwrap_or_default()
}

/// JSON text being written.
struct Json(Vec<u8>);

impl Json {
    fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// A string literal: runs that need no escape copied whole (found
    /// eight bytes at a time), and each quote, backslash or control
    /// character escaped as serde_json escapes it (`\"`, `\\`, `\n`,
    /// `\r`, `\t`, `\b`, `\f`, else `\u00xx` in lowercase hex). Response
    /// bodies with line breaks are common, so this is not left to serde.
    fn string(&mut self, s: &str) {
        let mut rest = s.as_bytes();
        self.0.reserve(rest.len() + 2);
        self.0.push(b'"');
        loop {
            let plain = crate::json_scan::plain_prefix(rest);
            self.0.extend_from_slice(&rest[..plain]);
            let Some((&special, tail)) = rest[plain..].split_first() else {
                break;
            };
            match special {
                b'"' => self.raw(br#"\""#),
                b'\\' => self.raw(br"\\"),
                b'\n' => self.raw(br"\n"),
                b'\r' => self.raw(br"\r"),
                b'\t' => self.raw(br"\t"),
                0x08 => self.raw(br"\b"),
                0x0c => self.raw(br"\f"),
                c => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    self.raw(br"\u00");
                    self.0.push(HEX[usize::from(c >> 4)]);
                    self.0.push(HEX[usize::from(c & 0xf)]);
                }
            }
            rest = tail;
        }
        self.0.push(b'"');
    }

    /// `[["name","value"],...]`.
    fn pairs(&mut self, pairs: &[(String, String)]) {
        self.raw(b"[");
        for (i, (name, value)) in pairs.iter().enumerate() {
            self.raw(if i == 0 { b"[" } else { b",[" });
            self.string(name);
            self.raw(b",");
            self.string(value);
            self.raw(b"]");
        }
        self.raw(b"]");
    }

    /// A number in decimal (not through the formatting machinery).
    fn number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.raw(&digits[at..]);
    }

    /// `,"set_headers":[...]` and `,"remove_headers":[...]`, each when
    /// it is not empty (as serde skips them).
    fn header_changes(&mut self, set: &[(String, String)], remove: &[String]) {
        if !set.is_empty() {
            self.raw(br#","set_headers":"#);
            self.pairs(set);
        }
        if !remove.is_empty() {
            self.raw(br#","remove_headers":"#);
            self.names(remove);
        }
    }

    /// `["name",...]`.
    fn names(&mut self, names: &[String]) {
        self.raw(b"[");
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                self.raw(b",");
            }
            self.string(name);
        }
        self.raw(b"]");
    }
}

#[cfg(test)]
#[path = "hooks_json_tests.rs"]
mod tests;
