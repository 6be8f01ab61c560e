//! The request head in the binary layout the host sends `on_request` and
//! `handle` of a module that declares it reads it there (the
//! `buntime_head` custom section, `docs/abi.md` §14): a table of lengths,
//! then the text, no keys, no escapes.
//!
//! Every plugin in the chain and every app reads a head on every request, and read as
//! JSON in wasm that was most of a small hook's cost: a cursor step, a key
//! match and a scan for quotes per string. Here a string is a length, and
//! the text of all of them is checked for UTF-8 once.
//!
//! ```text
//! 0x00                  tag (JSON text never starts with it)
//! flags: u8             1 = there is a query, 2 = body_length follows, 4 = core_route
//! body_length: u64      if flags & 2
//! count: u32            header pairs
//! lengths: u32 × (5 + 2 × count)
//!                       method, path, query, base, request_id (the last three
//!                       "" when there is none), then each header's name and value
//! text                  the strings, one after another, in that order
//! ```
//!
//! Integers are little-endian, lengths in bytes; the text is UTF-8, and
//! nothing follows it. [`encode`] writes the layout (the host's writer is
//! this function; the tests compare what it writes with the JSON reading).

use std::borrow::Cow;

use crate::http_ref::{RequestHeadRef, Text};

/// The first byte of a binary head.
pub const TAG: u8 = 0;
/// The custom section a module declares the binary heads it reads in:
/// records of two bytes, the export ([`ON_REQUEST`] or [`HANDLE`]) and the
/// layout's version ([`LAYOUT`]). A linker concatenates the records of
/// every object that has some.
pub const SECTION: &str = "buntime_head";
/// The version of the layout above.
pub const LAYOUT: u8 = 1;
/// The record's export byte for `on_request`.
pub const ON_REQUEST: u8 = 1;
/// The record's export byte for `handle` (an app's, or a plugin's routes).
pub const HANDLE: u8 = 2;

const QUERY: u8 = 1;
const BODY_LENGTH: u8 = 2;
const CORE_ROUTE: u8 = 4;
/// The strings before the headers': method, path, query, base, request_id.
const FIXED: usize = 5;

/// Whether `input` is a binary head (else it is JSON text).
pub fn is_binary(input: &[u8]) -> bool {
    input.first() == Some(&TAG)
}

/// `n` bytes at `at`, if there are.
fn bytes_at(input: &[u8], at: usize, n: usize) -> Option<&[u8]> {
    input.get(at..at.checked_add(n)?)
}

fn u32_at(input: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes_at(input, at, 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

/// The head in `bytes` (a binary head, tag included), or `None` when it is
/// not one (truncated, a length past the end, text that is not UTF-8 or cut
/// inside a character, bytes left over).
pub(crate) fn decode(bytes: &[u8]) -> Option<RequestHeadRef<'_>> {
    if *bytes.first()? != TAG {
        return None;
    }
    let flags = *bytes.get(1)?;
    let mut at = 2;
    let body_length = if flags & BODY_LENGTH != 0 {
        let b: [u8; 8] = bytes_at(bytes, at, 8)?.try_into().ok()?;
        at += 8;
        Some(u64::from_le_bytes(b))
    } else {
        None
    };
    let count = u32_at(bytes, at)?;
    at += 4;
    // A count the input cannot hold lengths for must not size anything.
    let strings = count.checked_mul(2)?.checked_add(FIXED)?;
    let table = bytes_at(bytes, at, strings.checked_mul(4)?)?;
    // One UTF-8 check for all the text; each string is then a slice of it
    // that must start and end on a character boundary (`str::get`).
    let text = std::str::from_utf8(&bytes[at + table.len()..]).ok()?;
    let mut lengths = table
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let mut start = 0usize;
    let mut next = || -> Option<Text<'_>> {
        let end = start.checked_add(lengths.next()?)?;
        let s = text.get(start..end)?;
        start = end;
        Some(Text(Cow::Borrowed(s)))
    };
    let method = next()?;
    let path = next()?;
    let query = next()?;
    let base = next()?;
    let request_id = next()?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        headers.push((next()?, next()?));
    }
    if start != text.len() {
        return None;
    }
    fn present(t: Text<'_>) -> Option<Text<'_>> {
        (!t.0.is_empty()).then_some(t)
    }
    Some(RequestHeadRef {
        method,
        path,
        query: (flags & QUERY != 0).then_some(query),
        headers,
        base: present(base),
        request_id: present(request_id),
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

/// The head written in the binary layout. The host writes heads with this
/// function, so the layout has one definition, beside its reader.
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
    // One pass over the headers: the lengths go into `out`, the text into
    // `text`, appended at the end (the count is known only then).
    let mut out = Vec::with_capacity(512);
    let mut text = Vec::with_capacity(512);
    let flags = if query.is_some() { QUERY } else { 0 }
        | if body_length.is_some() {
            BODY_LENGTH
        } else {
            0
        }
        | if core_route { CORE_ROUTE } else { 0 };
    out.extend_from_slice(&[TAG, flags]);
    if let Some(n) = body_length {
        out.extend_from_slice(&n.to_le_bytes());
    }
    let count_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        text.extend_from_slice(s.as_bytes());
    };
    for s in [method, path, query.unwrap_or(""), base, request_id] {
        string(&mut out, s);
    }
    let mut count: u32 = 0;
    for (name, value) in headers {
        string(&mut out, name);
        string(&mut out, value);
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&text);
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
