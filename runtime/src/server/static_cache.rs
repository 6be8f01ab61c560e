//! Recently served small static files, kept in memory.
//!
//! A busy static app asks for the same few files over and over; resolving
//! each request on disk (two `canonicalize`s, `stat`, `read`, each a blocking
//! syscall handed to the blocking pool) costs far more than the answer. A
//! file served in the last [`CACHE_TTL`] is answered from here with no
//! syscall; after that it is resolved again, so a new deploy shows within the
//! same second the app catalog notices it. Bounded by entry count and bytes.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lru::LruCache;

use crate::routing::CACHE_TTL;

/// Most files remembered.
const MAX_ENTRIES: usize = 4096;
/// Most bytes remembered (files are at most 256 KiB each).
const MAX_BYTES: usize = 64 << 20;

/// One remembered file, ready to send.
#[derive(Debug)]
pub(crate) struct CachedFile {
    bytes: Bytes,
    etag: HeaderValue,
    mime: HeaderValue,
    at: Instant,
}

impl CachedFile {
    pub(crate) fn new(path: &Path, bytes: Bytes, etag: &str) -> Self {
        let mime = mime_guess::from_path(path).first_or_octet_stream();
        Self {
            bytes,
            etag: HeaderValue::from_str(etag).unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
            mime: HeaderValue::from_str(mime.as_ref())
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
            at: Instant::now(),
        }
    }

    /// `304` when `if_none_match` matches, else `200` with the bytes.
    pub(crate) fn respond(&self, if_none_match: Option<&str>) -> Response {
        let etag = self.etag.to_str().unwrap_or_default();
        let matches = if_none_match
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut res = if matches {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut res = Response::new(Body::from(self.bytes.clone()));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, self.mime.clone());
            res.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            res
        };
        res.headers_mut().insert(header::ETAG, self.etag.clone());
        res
    }
}

/// The cache: an LRU over `app dir + path`.
#[derive(Debug)]
pub struct StaticCache {
    entries: Mutex<(LruCache<String, Arc<CachedFile>>, usize)>,
}

impl Default for StaticCache {
    fn default() -> Self {
        let cap = NonZeroUsize::new(MAX_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new((LruCache::new(cap), 0)),
        }
    }
}

impl StaticCache {
    /// The fresh entry for `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<CachedFile>> {
        let mut guard = self.entries.lock().ok()?;
        let (lru, bytes) = &mut *guard;
        match lru.get(key) {
            Some(f) if f.at.elapsed() < CACHE_TTL => Some(f.clone()),
            Some(_) => {
                if let Some(old) = lru.pop(key) {
                    *bytes -= old.bytes.len();
                }
                None
            }
            None => None,
        }
    }

    /// Remembers `file` under `key`.
    pub(crate) fn put(&self, key: String, file: Arc<CachedFile>) {
        let Ok(mut guard) = self.entries.lock() else {
            return;
        };
        let (lru, bytes) = &mut *guard;
        *bytes += file.bytes.len();
        if let Some((_, old)) = lru.push(key, file) {
            *bytes -= old.bytes.len();
        }
        while *bytes > MAX_BYTES {
            match lru.pop_lru() {
                Some((_, old)) => *bytes -= old.bytes.len(),
                None => break,
            }
        }
    }
}
