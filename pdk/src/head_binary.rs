//! The request head in the binary layout the host sends `on_request` of a
//! module that declares it reads it (the `buntime_head` custom section,
//! `docs/abi.md` §14): length-prefixed strings, no keys, no escapes.
//!
//! Every plugin in the chain reads a head on every request, and read as
//! JSON in wasm that was most of a small hook's cost: a cursor step, a key
//! match and a scan for quotes per string. Here a string is a length and a
//! slice (and the UTF-8 check every `&str` needs).
//!
//! ```text
//! 0x00                      tag (JSON text never starts with it)
//! flags: u8                 1 = query follows, 2 = body_length follows, 4 = core_route
//! method, path: str
//! query: str                if flags & 1
//! base, request_id: str     "" when there is none
//! body_length: u64          if flags & 2
//! count: u32, then count × (name: str, value: str)
//! ```
//!
//! Integers are little-endian; a `str` is a `u32` byte length and that many
//! bytes of UTF-8. [`encode`] writes the layout (the host's writer follows
//! it; the tests of both compare them with the JSON reading).

use std::borrow::Cow;

use crate::http_ref::{RequestHeadRef, Text};

/// The first byte of a binary head.
pub const TAG: u8 = 0;
/// The custom section a module declares the layouts it reads in: one byte
/// per record, the layout's version (this module's is 1).
pub const SECTION: &str = "buntime_head";
/// The version of the layout above.
pub const LAYOUT: u8 = 1;

const QUERY: u8 = 1;
const BODY_LENGTH: u8 = 2;
const CORE_ROUTE: u8 = 4;

/// Whether `input` is a binary head (else it is JSON text).
pub fn is_binary(input: &[u8]) -> bool {
    input.first() == Some(&TAG)
}

/// A reader of the layout's fields, in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.u32()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// The head in `bytes` (a binary head, tag included), or `None` when it is
/// not one (truncated, a length past the end, text that is not UTF-8,
/// bytes left over).
pub(crate) fn decode(bytes: &[u8]) -> Option<RequestHeadRef<'_>> {
    let mut r = Reader { rest: bytes };
    if r.u8()? != TAG {
        return None;
    }
    let flags = r.u8()?;
    fn text(s: &str) -> Text<'_> {
        Text(Cow::Borrowed(s))
    }
    let method = text(r.str()?);
    let path = text(r.str()?);
    let query = if flags & QUERY != 0 {
        Some(text(r.str()?))
    } else {
        None
    };
    let optional = |s| (!str::is_empty(s)).then(|| text(s));
    let base = optional(r.str()?);
    let request_id = optional(r.str()?);
    let body_length = if flags & BODY_LENGTH != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    let count = usize::try_from(r.u32()?).ok()?;
    // Each pair takes at least 8 bytes: a count past that is a lie, and
    // must not size the allocation.
    if count > r.rest.len() / 8 {
        return None;
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        headers.push((text(r.str()?), text(r.str()?)));
    }
    if !r.rest.is_empty() {
        return None;
    }
    Some(RequestHeadRef {
        method,
        path,
        query,
        headers,
        base,
        request_id,
        body_length,
        core_route: flags & CORE_ROUTE != 0,
    })
}

/// The error a malformed binary head reads as (a host that writes one is
/// broken: the guest cannot do better than say so).
pub(crate) fn malformed() -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(
        "the host sent a malformed binary request head (docs/abi.md §14)",
    )
}

/// The head written in the binary layout (the host's side, here for tests
/// and for guests that forward a head).
///
/// ```
/// use buntime_pdk::head_binary::encode;
/// use buntime_pdk::RequestHeadRef;
/// let bytes = encode("GET", "/a", Some("x=1"), [("host", "example.com")], "", "r1", None, false);
/// let head = RequestHeadRef::from_input(&bytes).unwrap();
/// assert_eq!((head.path(), head.query(), head.header("Host")), ("/a", Some("x=1"), Some("example.com")));
/// ```
#[allow(clippy::too_many_arguments)] // the layout's fields, in its order
pub fn encode<'h>(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    base: &str,
    request_id: &str,
    body_length: Option<u64>,
    core_route: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let flags = if query.is_some() { QUERY } else { 0 }
        | if body_length.is_some() {
            BODY_LENGTH
        } else {
            0
        }
        | if core_route { CORE_ROUTE } else { 0 };
    out.extend_from_slice(&[TAG, flags]);
    let str = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    str(&mut out, method);
    str(&mut out, path);
    if let Some(q) = query {
        str(&mut out, q);
    }
    str(&mut out, base);
    str(&mut out, request_id);
    if let Some(n) = body_length {
        out.extend_from_slice(&n.to_le_bytes());
    }
    let count_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut count: u32 = 0;
    for (name, value) in headers {
        str(&mut out, name);
        str(&mut out, value);
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    out
}

/// The head in `bytes` as the JSON the host would have sent in its place
/// (for a hook that reads its input as JSON text).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the hook inputs are wasm-only
pub(crate) fn to_json(bytes: &[u8]) -> serde_json::Result<Vec<u8>> {
    let head = decode(bytes).ok_or_else(malformed)?;
    serde_json::to_vec(&head.to_owned_head())
}

#[cfg(test)]
#[path = "head_binary_tests.rs"]
mod tests;
