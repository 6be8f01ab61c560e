//! Sending a static file that is already open: content type and encoding,
//! `Last-Modified` / `If-Modified-Since`, one `Range`, and a streamed body.
//!
//! The static server opens every file below the app's version dir
//! ([`crate::routing::AppDir`]) and sends *that* handle, never a path opened a
//! second time, so what was checked is what is sent. Multi-range requests
//! are answered with the whole file (a server may ignore `Range`); a range
//! of a precompressed file likewise.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::ops::RangeInclusive;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;

/// Which precompressed siblings a client accepts, best first.
pub(crate) fn accepted_encodings(headers: &HeaderMap) -> Vec<&'static str> {
    let Some(value) = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return Vec::new();
    };
    let accepts = |name: &str| {
        value.split(',').any(|item| {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            token.eq_ignore_ascii_case(name) && q > 0.0
        })
    };
    [("br", "br"), ("gzip", "gz")]
        .into_iter()
        .filter(|(name, _)| accepts(name))
        .map(|(_, ext)| ext)
        .collect()
}

/// The `Content-Encoding` of a sibling with extension `ext`.
pub(crate) fn encoding_of(ext: &str) -> &'static str {
    if ext == "br" { "br" } else { "gzip" }
}

/// The part of a file a request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// The whole file.
    Whole,
    /// One satisfiable range.
    Range(RangeInclusive<u64>),
    /// A range outside the file: 416.
    Unsatisfiable,
}

/// Decides the part of a `len`-byte file to send for `range` (the header),
/// given `if_range` and the file's `etag`.
pub(crate) fn part_of(range: Option<&str>, if_range: Option<&str>, etag: &str, len: u64) -> Part {
    let Some(range) = range else {
        return Part::Whole;
    };
    // A stale `If-Range` means "send it all".
    if if_range.is_some_and(|v| v.trim() != etag) {
        return Part::Whole;
    }
    let Ok(parsed) = http_range_header::parse_range_header(range) else {
        return Part::Whole;
    };
    match parsed.validate(len) {
        Ok(ranges) => match <[_; 1]>::try_from(ranges) {
            Ok([one]) => Part::Range(one),
            Err(_) => Part::Whole,
        },
        Err(_) => Part::Unsatisfiable,
    }
}

/// Blocking: positions `file` at the start of `part`.
pub(crate) fn seek_to(file: &mut File, part: &Part) -> std::io::Result<()> {
    if let Part::Range(r) = part {
        file.seek(SeekFrom::Start(*r.start()))?;
    }
    Ok(())
}

/// What [`send`] needs to know about the file.
#[derive(Debug)]
pub(crate) struct Sendable {
    pub file: File,
    pub len: u64,
    pub mime: HeaderValue,
    pub etag: String,
    pub modified: Option<SystemTime>,
    pub encoding: Option<&'static str>,
    pub part: Part,
}

/// `304` when `If-Modified-Since` says the client has it (only without
/// `If-None-Match`, which wins).
pub(crate) fn not_modified_since(headers: &HeaderMap, modified: Option<SystemTime>) -> bool {
    if headers.contains_key(header::IF_NONE_MATCH) {
        return false;
    }
    let (Some(since), Some(modified)) = (
        headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok()),
        modified,
    ) else {
        return false;
    };
    // HTTP dates have whole seconds.
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    secs(modified) <= secs(since)
}

/// Streams the (already positioned) file.
pub(crate) fn send(s: Sendable) -> Response {
    let (status, count, range) = match &s.part {
        Part::Whole => (StatusCode::OK, s.len, None),
        Part::Range(r) => (
            StatusCode::PARTIAL_CONTENT,
            r.end() - r.start() + 1,
            Some(format!("bytes {}-{}/{}", r.start(), r.end(), s.len)),
        ),
        Part::Unsatisfiable => {
            let mut res = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", s.len)) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return res;
        }
    };
    let reader = tokio::fs::File::from_std(s.file).take(count);
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        reader,
        64 << 10,
    ));
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, s.mime);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&s.etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(t) = s.modified
        && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(t))
    {
        h.insert(header::LAST_MODIFIED, v);
    }
    if let Some(enc) = s.encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(r) = range
        && let Ok(v) = HeaderValue::from_str(&r)
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(part_of(None, None, "e", 10), Part::Whole);
        assert_eq!(
            part_of(Some("bytes=0-6"), None, "e", 10),
            Part::Range(0..=6)
        );
        assert_eq!(part_of(Some("bytes=-3"), None, "e", 10), Part::Range(7..=9));
        assert_eq!(part_of(Some("bytes=5-"), None, "e", 10), Part::Range(5..=9));
        assert_eq!(
            part_of(Some("bytes=20-"), None, "e", 10),
            Part::Unsatisfiable
        );
        assert_eq!(part_of(Some("bytes=0-1,4-5"), None, "e", 10), Part::Whole);
        assert_eq!(part_of(Some("lines=1-2"), None, "e", 10), Part::Whole);
        assert_eq!(
            part_of(Some("bytes=0-1"), Some("old"), "e", 10),
            Part::Whole
        );
        assert_eq!(
            part_of(Some("bytes=0-1"), Some("e"), "e", 10),
            Part::Range(0..=1)
        );
    }

    #[test]
    fn encodings() {
        let mut h = HeaderMap::new();
        assert!(accepted_encodings(&h).is_empty());
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, br;q=0.5"),
        );
        assert_eq!(accepted_encodings(&h), ["br", "gz"]);
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br;q=0, identity"),
        );
        assert!(accepted_encodings(&h).is_empty());
    }
}
