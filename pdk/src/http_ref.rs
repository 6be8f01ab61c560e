//! What the host writes for a guest on every request, read without serde
//! (with the cursor of `json_scan.rs`, serde where it stops): a request head
//! borrowed from the JSON it was read from, the owned head, the response
//! view `on_response` gets, and the client.
//!
//! [`RequestHead`](crate::RequestHead) owns its strings: reading one
//! allocates (and later frees) the method, the path and every header's name
//! and value. A plugin whose `on_request` runs on every request and only
//! looks at a few headers pays for that on each of them, and in a guest the
//! allocator is a large part of a small hook's time. [`RequestHeadRef`] has
//! the same fields as slices of the input where the JSON has no escapes
//! (nearly always), so reading it allocates only its header list.

use std::borrow::Cow;

use serde::Deserialize;

use crate::json_scan::{Cursor, once, or_serde};

/// A [`RequestHead`](crate::RequestHead) that borrows its text from the
/// JSON it was read from (see the module doc). Plugins get one with
/// `HookBytes::request` in `on_request`.
///
/// ```
/// use buntime_pdk::http_ref::RequestHeadRef;
/// let json = r#"{"method":"GET","path":"/a","headers":[["origin","https://x.example"]]}"#;
/// let head: RequestHeadRef<'_> = serde_json::from_str(json).unwrap();
/// assert_eq!(head.header("Origin"), Some("https://x.example"));
/// assert_eq!(head.method(), "GET");
/// ```
#[derive(Debug, Clone, Deserialize)]
pub struct RequestHeadRef<'a> {
    #[serde(borrow)]
    pub(crate) method: Text<'a>,
    #[serde(borrow)]
    pub(crate) path: Text<'a>,
    #[serde(borrow, default)]
    pub(crate) query: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(crate) headers: Vec<(Text<'a>, Text<'a>)>,
    #[serde(borrow, default)]
    pub(crate) base: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(crate) request_id: Option<Text<'a>>,
    #[serde(default)]
    pub(crate) body_length: Option<u64>,
    #[serde(default)]
    pub(crate) core_route: bool,
}

impl<'a> RequestHeadRef<'a> {
    /// Reads a head from its JSON, as `serde_json::from_slice` does (same
    /// result, same errors), faster for the heads the host writes: a cursor
    /// reads them without serde, and only what it leaves (an escape it
    /// cannot decode, a duplicate member, malformed text) is read again by
    /// serde.
    ///
    /// ```
    /// use buntime_pdk::http_ref::RequestHeadRef;
    /// let json = br#"{"method":"GET","path":"/a","headers":[["origin","https://x.example"]]}"#;
    /// let head = RequestHeadRef::from_json(json).unwrap();
    /// assert_eq!(head.header("origin"), Some("https://x.example"));
    /// assert!(RequestHeadRef::from_json(br#"{"path":"/"}"#).unwrap_err().to_string().contains("method"));
    /// ```
    pub fn from_json(json: &'a [u8]) -> serde_json::Result<Self> {
        or_serde(json, scan(json))
    }

    /// Reads a head from what `on_request` received: the binary layout
    /// ([`crate::head_binary`]) or JSON ([`RequestHeadRef::from_json`]).
    ///
    /// ```
    /// use buntime_pdk::http_ref::RequestHeadRef;
    /// let head = RequestHeadRef::from_input(br#"{"method":"GET","path":"/a"}"#).unwrap();
    /// assert_eq!(head.path(), "/a");
    /// ```
    pub fn from_input(input: &'a [u8]) -> serde_json::Result<Self> {
        if crate::head_binary::is_binary(input) {
            return crate::head_binary::decode(input).ok_or_else(crate::head_binary::malformed);
        }
        Self::from_json(input)
    }

    /// The head with its text copied out.
    pub fn to_owned_head(&self) -> crate::http::RequestHead {
        crate::http::RequestHead::owned(self.clone())
    }

    /// Upper-case method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.method.0
    }

    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path.0
    }

    /// The raw query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_ref().map(|q| &*q.0)
    }

    /// The request id ("" when the host gave none).
    pub fn request_id(&self) -> &str {
        self.request_id.as_ref().map_or("", |r| &r.0)
    }

    /// Length of the body waiting in the host, if known.
    pub fn body_length(&self) -> Option<u64> {
        self.body_length
    }

    /// Whether this is a core route's request
    /// ([`RequestHead::core_route`](crate::RequestHead::core_route)).
    pub fn core_route(&self) -> bool {
        self.core_route
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.0.eq_ignore_ascii_case(name))
            .map(|(_, v)| &*v.0)
    }

    /// Every header, names in lower case, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(k, v)| (&*k.0, &*v.0))
    }
}

/// The head in `json` read by the cursor, or `None` where serde must read
/// it (see [`RequestHeadRef::from_json`]).
fn scan(json: &[u8]) -> Option<RequestHeadRef<'_>> {
    let mut c = Cursor::new(json)?;
    let (mut method, mut path, mut query, mut headers) = (None, None, None, None);
    let (mut base, mut request_id, mut body_length, mut core_route) = (None, None, None, None);
    c.document(|c, key| match &*key {
        "method" => once(&mut method, c.string()),
        "path" => once(&mut path, c.string()),
        "query" => once(&mut query, c.optional(Cursor::string)),
        "headers" => once(&mut headers, c.pairs(Text)),
        // Strings only (no `null`): `RequestHead` has them as `String`.
        "base" => once(&mut base, c.string()),
        "request_id" => once(&mut request_id, c.string()),
        "body_length" => once(&mut body_length, c.optional(Cursor::u64)),
        "core_route" => once(&mut core_route, c.boolean()),
        _ => c.skip_value(),
    })?;
    Some(RequestHeadRef {
        method: Text(method?),
        path: Text(path?),
        query: query.flatten().map(Text),
        headers: headers.unwrap_or_default(),
        base: base.map(Text),
        request_id: request_id.map(Text),
        body_length: body_length.flatten(),
        core_route: core_route.unwrap_or(false),
    })
}

impl crate::http::RequestHead {
    /// Reads a head from its JSON, as `serde_json::from_slice` does (same
    /// result, same errors), with the cursor [`RequestHeadRef::from_json`]
    /// uses: an app reads its head on every request.
    ///
    /// ```
    /// use buntime_pdk::RequestHead;
    /// let head = RequestHead::from_json(br#"{"method":"GET","path":"/a","base":"/app@1.0.0"}"#).unwrap();
    /// assert_eq!((head.path.as_str(), head.base.as_str()), ("/a", "/app@1.0.0"));
    /// ```
    pub fn from_json(json: &[u8]) -> serde_json::Result<Self> {
        let Some(head) = scan(json) else {
            return serde_json::from_slice(json);
        };
        Ok(Self::owned(head))
    }

    /// Reads a head from what a hook received: the binary layout
    /// ([`crate::head_binary`]) or JSON ([`RequestHead::from_json`](crate::RequestHead::from_json)).
    pub fn from_input(input: &[u8]) -> serde_json::Result<Self> {
        if crate::head_binary::is_binary(input) {
            return RequestHeadRef::from_input(input).map(Self::owned);
        }
        Self::from_json(input)
    }

    /// `head` with its text moved out (copied where it was borrowed).
    fn owned(head: RequestHeadRef<'_>) -> Self {
        let text = |t: Text<'_>| t.0.into_owned();
        Self {
            method: text(head.method),
            path: text(head.path),
            query: head.query.map(text),
            headers: head
                .headers
                .into_iter()
                .map(|(k, v)| (text(k), text(v)))
                .collect(),
            base: head.base.map(text).unwrap_or_default(),
            request_id: head.request_id.map(text).unwrap_or_default(),
            body_length: head.body_length,
            core_route: head.core_route,
        }
    }
}

impl crate::hooks::ResponseView {
    /// Reads what `on_response` receives, as `serde_json::from_slice` does
    /// (same result, same errors), with the cursor [`RequestHeadRef::from_json`]
    /// uses.
    ///
    /// ```
    /// use buntime_pdk::hooks::ResponseView;
    /// let v = ResponseView::from_json(br#"{"status":404,"headers":[["x-a","1"]],"path":"/a"}"#).unwrap();
    /// assert_eq!((v.status, v.path.as_str()), (404, "/a"));
    /// ```
    pub fn from_json(json: &[u8]) -> serde_json::Result<Self> {
        or_serde(json, scan_response(json))
    }
}

fn scan_response(json: &[u8]) -> Option<crate::hooks::ResponseView> {
    let mut c = Cursor::new(json)?;
    let (mut status, mut headers, mut path) = (None, None, None);
    c.document(|c, name| match &*name {
        "status" => once(&mut status, c.u64().and_then(|s| u16::try_from(s).ok())),
        "headers" => once(&mut headers, c.pairs(Cow::into_owned)),
        "path" => once(&mut path, c.string()),
        _ => c.skip_value(),
    })?;
    Some(crate::hooks::ResponseView {
        status: status?,
        headers: headers?,
        path: path?.into_owned(),
    })
}

/// The part of a [`ResponseHead`](crate::ResponseHead) the host reads of
/// an app's (or a plugin route's) answer — status, headers and inline
/// body — borrowed from its JSON; its other fields (event streams) are
/// skipped.
///
/// ```
/// use buntime_pdk::http_ref::ResponseHeadRef;
/// let head = ResponseHeadRef::from_json(br#"{"status":200,"headers":[["content-type","text/plain"]],"body":"hi"}"#).unwrap();
/// assert_eq!((head.status, head.body.map(|b| b.0)), (200, Some("hi".into())));
/// ```
#[derive(Debug, Clone, Deserialize)]
pub struct ResponseHeadRef<'a> {
    /// Status code.
    pub status: u16,
    /// Response headers.
    #[serde(default, borrow)]
    pub headers: Vec<(Text<'a>, Text<'a>)>,
    /// An inline UTF-8 body.
    #[serde(default, borrow)]
    pub body: Option<Text<'a>>,
}

impl<'a> ResponseHeadRef<'a> {
    /// Reads a response head from its JSON, as `serde_json::from_slice`
    /// does (same result, same errors), with the cursor
    /// [`RequestHeadRef::from_json`] uses: the host reads one per app
    /// request.
    pub fn from_json(json: &'a [u8]) -> serde_json::Result<Self> {
        or_serde(json, scan_response_head(json))
    }
}

fn scan_response_head(json: &[u8]) -> Option<ResponseHeadRef<'_>> {
    let mut c = Cursor::new(json)?;
    let (mut status, mut headers, mut body) = (None, None, None);
    c.document(|c, name| match &*name {
        "status" => once(&mut status, c.u64().and_then(|s| u16::try_from(s).ok())),
        "headers" => once(&mut headers, c.pairs(Text)),
        "body" => once(&mut body, c.optional(Cursor::string)),
        _ => c.skip_value(),
    })?;
    Some(ResponseHeadRef {
        status: status?,
        headers: headers.unwrap_or_default(),
        body: body.flatten().map(Text),
    })
}

impl crate::http::Client {
    /// Reads a client from its JSON (what `buntime_request_client` answers),
    /// as `serde_json::from_slice` does (same result, same errors), with the
    /// cursor [`RequestHeadRef::from_json`] uses: a rate-limiting plugin reads
    /// the client on every request.
    ///
    /// ```
    /// use buntime_pdk::Client;
    /// let c = Client::from_json(br#"{"peer":"10.0.0.1:5000","address":"203.0.113.9","scheme":"https"}"#).unwrap();
    /// assert_eq!(c.address, "203.0.113.9");
    /// assert_eq!(c.host, None);
    /// ```
    pub fn from_json(json: &[u8]) -> serde_json::Result<Self> {
        or_serde(json, scan_client(json))
    }
}

fn scan_client(json: &[u8]) -> Option<crate::http::Client> {
    let mut c = Cursor::new(json)?;
    let (mut peer, mut address, mut scheme, mut host, mut key) = (None, None, None, None, None);
    let owned = |c: &mut Cursor<'_>| c.string().map(Cow::into_owned);
    c.document(|c, name| match &*name {
        "peer" => once(&mut peer, owned(c)),
        "address" => once(&mut address, owned(c)),
        "scheme" => once(&mut scheme, owned(c)),
        "host" => once(&mut host, c.optional_owned()),
        "apiKeyHash" => once(&mut key, c.optional_owned()),
        _ => c.skip_value(),
    })?;
    Some(crate::http::Client {
        peer: peer?,
        address: address?,
        scheme: scheme?,
        host: host.flatten(),
        api_key_hash: key.flatten(),
    })
}

/// A string borrowed from its JSON when it has no escapes. Serde borrows a
/// `Cow<str>` only as a field marked `borrow`, never inside a tuple or a
/// `Vec`; this type borrows wherever it is (the host reads guests' heads
/// with it too).
///
/// ```
/// use buntime_pdk::http_ref::Text;
/// let pairs: Vec<(Text<'_>, Text<'_>)> = serde_json::from_str(r#"[["a","b"]]"#).unwrap();
/// assert!(matches!(pairs[0].0, Text(std::borrow::Cow::Borrowed("a"))));
/// ```
#[derive(Debug, Clone)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Visit).map(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_scan::testing;

    #[test]
    fn reads_what_an_owned_head_reads() {
        let json = r#"{"method":"POST","path":"/a\/b","query":"x=1",
            "headers":[["host","h"],["x-q","say \"hi\""]],
            "base":"/app@1.0.0","request_id":"r1","body_length":3,"core_route":true}"#;
        let head: RequestHeadRef<'_> = serde_json::from_str(json).unwrap();
        let owned: crate::RequestHead = serde_json::from_str(json).unwrap();
        assert_eq!(head.method(), owned.method);
        assert_eq!(head.path(), "/a/b");
        assert_eq!(head.query(), owned.query.as_deref());
        assert_eq!(head.header("X-Q"), owned.header("x-q"));
        assert_eq!(head.request_id(), "r1");
        assert_eq!(head.body_length(), Some(3));
        assert!(head.core_route());
        assert_eq!(head.headers().count(), 2);
        // Escaped text is copied; the rest is borrowed.
        assert!(matches!(head.path, Text(Cow::Owned(_))));
        assert!(matches!(head.method, Text(Cow::Borrowed(_))));
    }

    /// What a head reads as, field by field.
    fn fields(h: &RequestHeadRef<'_>) -> String {
        format!(
            "{}|{}|{:?}|{:?}|{}|{:?}|{}",
            h.method(),
            h.path(),
            h.query(),
            h.headers().collect::<Vec<_>>(),
            h.request_id(),
            h.body_length(),
            h.core_route()
        )
    }

    /// `from_json` and serde agree on `json`, for the borrowed head (field
    /// by field) and the owned one.
    fn agree(json: &[u8]) {
        testing::agree(
            json,
            scan(json).map(|h| fields(&h)),
            RequestHeadRef::from_json(json).map(|h| fields(&h)),
            serde_json::from_slice(json).map(|h| fields(&h)),
        );
        testing::agree(
            json,
            None,
            crate::RequestHead::from_json(json),
            serde_json::from_slice(json),
        );
    }

    const HEADS: &[&str] = &[
        r#"{"method":"GET","path":"/warm/","headers":[["host","127.0.0.1:8000"],["accept-encoding","identity"],["origin","https://app.example.com"]],"base":"/warm@1.0.0","request_id":"01J9ZK","body_length":0}"#,
        r#"{"method":"POST","path":"/a\/b","query":"x=1&y=\u00e9","headers":[["x-q","say \"hi\""],["x-e","\ud83d\ude00"]],"request_id":"r1","body_length":18446744073709551615,"core_route":true}"#,
        r#" { "path" : "/" , "method" : "OPTIONS" , "headers" : [ ] , "extra" : {"a":[1,2.5,-3e2,null,true,false,{}]} , "query" : null } "#,
        r#"{"method":"GET","path":"/","request_id":null,"body_length":null,"core_route":false}"#,
        r#"{"method":"GET","path":"/","method":"PUT"}"#,
        r#"{"meth\u006fd":"GET","path":"/"}"#,
        r#"["GET","/"]"#,
        r#"{"method":"GET","path":"/","headers":null}"#,
        r#"{"method":"GET","path":"/","headers":[["a","b","c"]]}"#,
        r#"{"method":"GET","path":"/","body_length":1.0}"#,
        r#"{"method":"GET","path":"/","body_length":-1}"#,
        r#"{"method":"GET","path":"/"} x"#,
        r#"{"method":"GET","path":"/x\ud800"}"#,
        r#"{"method":"GET","path":"/","base":null}"#,
        r#"{"method":"GET","path":"/","request_id":null}"#,
        r#"{"method":"GET","path":"/","base":"/a","base":"/b"}"#,
    ];

    /// What a response head reads as.
    fn response_fields(h: &ResponseHeadRef<'_>) -> String {
        let text = |t: &Text<'_>| t.0.to_string();
        format!(
            "{}|{:?}|{:?}",
            h.status,
            h.headers
                .iter()
                .map(|(k, v)| (text(k), text(v)))
                .collect::<Vec<_>>(),
            h.body.as_ref().map(text)
        )
    }

    const RESPONSES: &[&str] = &[
        r#"{"status":200,"headers":[["content-type","text/plain; charset=utf-8"],["x-a","1"]],"body":"hello"}"#,
        r#"{"status":404}"#,
        r#" { "body" : "say \"hi\" \u00e9" , "status" : 201 , "headers" : [ ] , "events" : ["a/*"] , "poll" : {"export":"p","intervalMs":5} } "#,
        r#"{"status":200,"body":null,"headers":[["x-e","\ud83d\ude00"]]}"#,
        r#"{"status":70000}"#,
        r#"{"status":200.0}"#,
        r#"{"status":200,"status":201}"#,
        r#"{"status":200,"headers":null}"#,
        r#"{"status":200,"body":5}"#,
        r#"{"headers":[]}"#,
        r#"{"status":200} x"#,
        r#"[200]"#,
    ];

    #[test]
    fn a_response_head_reads_as_serde_reads_it() {
        for json in RESPONSES {
            let json = json.as_bytes();
            testing::agree(
                json,
                scan_response_head(json).map(|h| response_fields(&h)),
                ResponseHeadRef::from_json(json).map(|h| response_fields(&h)),
                serde_json::from_slice(json).map(|h| response_fields(&h)),
            );
        }
        for json in &RESPONSES[..4] {
            assert!(scan_response_head(json.as_bytes()).is_some(), "{json}");
        }
        for damaged in testing::damaged(RESPONSES[0].as_bytes(), b"\"\\[]{},:0 \xff") {
            testing::agree(
                &damaged,
                scan_response_head(&damaged).map(|h| response_fields(&h)),
                ResponseHeadRef::from_json(&damaged).map(|h| response_fields(&h)),
                serde_json::from_slice(&damaged).map(|h| response_fields(&h)),
            );
        }
    }

    #[test]
    fn reads_what_serde_reads() {
        for head in HEADS {
            agree(head.as_bytes());
        }
        // Typical heads are read by the cursor itself (a `null` request id
        // is left to serde: an owned head refuses it, a borrowed one not).
        for head in &HEADS[..3] {
            assert!(scan(head.as_bytes()).is_some(), "{head}");
        }
    }

    #[test]
    fn agrees_with_serde_on_every_damaged_head() {
        for head in &HEADS[..4] {
            for damaged in testing::damaged(head.as_bytes(), b"\"\\{}[],:0-.eu nt\x01\xff\xc3") {
                agree(&damaged);
            }
        }
    }

    #[test]
    fn clients_read_as_serde_reads_them() {
        let clients: &[&[u8]] = &[
            br#"{"peer":"10.0.0.1:5000","address":"203.0.113.9","scheme":"https","host":"a.example","apiKeyHash":"00ff"}"#,
            br#"{"peer":"[::1]:80","address":"::1","scheme":"http","host":null,"extra":[1]}"#,
            br#"{"peer":"p","address":"a\u0041","scheme":"http"}"#,
            br#"{"peer":"p","scheme":"http"}"#,
            br#"{"peer":"p","peer":"q","address":"a","scheme":"http"}"#,
        ];
        for json in clients {
            testing::agree(
                json,
                scan_client(json),
                crate::http::Client::from_json(json),
                serde_json::from_slice(json),
            );
        }
        assert!(scan_client(clients[0]).is_some() && scan_client(clients[1]).is_some());
    }

    #[test]
    fn response_views_read_as_serde_reads_them() {
        let views: &[&[u8]] = &[
            br#"{"status":200,"headers":[["content-type","text/plain"],["x-q","a\"b"]],"path":"/x"}"#,
            br#"{"path":"/","headers":[],"status":599,"extra":null}"#,
            br#"{"status":70000,"headers":[],"path":"/"}"#,
            br#"{"status":200,"path":"/"}"#,
            br#"{"status":200,"headers":[],"path":"/","status":201}"#,
            br#"{"status":-1,"headers":[],"path":"/"}"#,
        ];
        for json in views {
            testing::agree(
                json,
                scan_response(json),
                crate::hooks::ResponseView::from_json(json),
                serde_json::from_slice(json),
            );
        }
        assert!(scan_response(views[0]).is_some() && scan_response(views[1]).is_some());
    }

    #[test]
    fn absent_fields_take_their_defaults() {
        let head: RequestHeadRef<'_> =
            serde_json::from_str(r#"{"method":"GET","path":"/"}"#).unwrap();
        assert_eq!(head.header("host"), None);
        assert_eq!(head.request_id(), "");
        assert!(!head.core_route());
    }
}
