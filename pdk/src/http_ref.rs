//! A request head borrowed from the JSON it was read from.
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
    method: Text<'a>,
    #[serde(borrow)]
    path: Text<'a>,
    #[serde(borrow, default)]
    query: Option<Text<'a>>,
    #[serde(borrow, default)]
    headers: Vec<(Text<'a>, Text<'a>)>,
    #[serde(borrow, default)]
    request_id: Option<Text<'a>>,
    #[serde(default)]
    body_length: Option<u64>,
    #[serde(default)]
    core_route: bool,
}

impl<'a> RequestHeadRef<'a> {
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

    #[test]
    fn absent_fields_take_their_defaults() {
        let head: RequestHeadRef<'_> =
            serde_json::from_str(r#"{"method":"GET","path":"/"}"#).unwrap();
        assert_eq!(head.header("host"), None);
        assert_eq!(head.request_id(), "");
        assert!(!head.core_route());
    }
}
