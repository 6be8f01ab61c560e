//! Static and single-page apps.
//!
//! Every file is opened below the app's version dir ([`AppDir`]): the
//! requested file, its precompressed `.br` / `.gz` sibling and the
//! entrypoint a navigation path falls back to. A path that leaves the dir —
//! `..` in any encoding, backslashes, NUL, a symlink pointing out — is a 404
//! that does not say why (the log says, at debug). The open handle is what
//! gets sent ([`super::static_send`]), so a symlink swapped after the check
//! changes nothing. In front of that, this module answers `ETag` /
//! `If-None-Match`, falls back to the entrypoint for navigation paths (no file
//! extension) so client-side routers work, and optionally injects
//! `<base href>` and `window.__env__` into HTML.
//!
//! Cost: one `openat2` for the version dir and one per file tried (the
//! file, then a sibling or the fallback), each resolving its path in the
//! kernel, plus one `fstat` — fewer syscalls than resolving a path with
//! `canonicalize` (an `lstat` per component). Small files served in the last
//! second are answered from [`StaticCache`] with none.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorKind};
use super::static_cache::{CachedFile, StaticCache};
use super::static_send::{self, Part, Sendable};
use crate::config::AppConfig;
use crate::routing::{AppDir, AppVersion, OpenError, OpenedFile};
use bytes::Bytes;

/// Serves `rest` (the path below the app's base) from `app`'s directory.
///
/// A small file that was served in the last [`crate::routing::CACHE_TTL`] is
/// answered from `cache` without touching the disk; everything else resolves
/// on the blocking pool (opens, metadata, reading), never on an async
/// worker.
pub(crate) async fn serve(
    cache: &StaticCache,
    app: &Arc<AppVersion>,
    entrypoint: &str,
    rest: &str,
    base: &str,
    config: &AppConfig,
    req: Request,
) -> Response {
    let headers = req.headers();
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let range = header_text(header::RANGE);
    let if_range = header_text(header::IF_RANGE);
    let ranged = range.is_some();
    let key = format!("{}\n{rest}", app.dir.display());
    if !ranged && let Some(hit) = cache.get(&key) {
        return hit.respond(if_none_match.as_deref());
    }
    let Some(relative) = safe_relative(rest) else {
        return ApiError::new(ErrorKind::NotFound, format!("`{rest}` is not a valid path"))
            .into_response();
    };
    let injects = config.inject_base || has_public_env(config);
    let encodings = static_send::accepted_encodings(headers);
    let (app_owned, entry) = (app.clone(), entrypoint.to_owned());
    let resolved = tokio::task::spawn_blocking(move || {
        let request = Want {
            injects,
            encodings,
            range,
            if_range,
        };
        resolve(&app_owned, &entry, &relative, &request)
    })
    .await;
    let resolved = match resolved {
        Ok(Ok(r)) => r,
        Ok(Err(Refusal::Escapes(target))) => {
            tracing::debug!(app = app.key(), path = %target.display(), "refused a path that leaves the app directory");
            return ApiError::new(ErrorKind::NotFound, format!("`{rest}` was not found"))
                .into_response();
        }
        Ok(Err(Refusal::Gone)) => {
            return ApiError::new(ErrorKind::NotFound, "the app directory is gone").into_response();
        }
        Ok(Err(Refusal::NotFound)) | Err(_) => {
            return ApiError::new(ErrorKind::NotFound, format!("`{rest}` was not found"))
                .into_response();
        }
    };
    let body = match resolved.body {
        Body::Html(html) => {
            return html_with_injections(html, base, config, if_none_match.as_deref());
        }
        Body::Small(bytes) => {
            let file = Arc::new(CachedFile::new(&resolved.path, bytes, &resolved.etag));
            // A precompressed sibling depends on the client's encodings, so
            // only a plain file is remembered.
            if resolved.encoding.is_none() {
                cache.put(key, file.clone());
            }
            return file.respond(if_none_match.as_deref());
        }
        Body::Stream(sendable) => sendable,
    };
    if matches_etag(if_none_match.as_deref(), &resolved.etag)
        || static_send::not_modified_since(req.headers(), body.modified)
    {
        return not_modified(&resolved.etag);
    }
    static_send::send(body)
}

/// Files up to this size are served from one in-memory buffer.
const SMALL_FILE: u64 = 256 << 10;

/// Why a path is not served.
enum Refusal {
    /// It resolves outside the app dir (a symlink).
    Escapes(PathBuf),
    /// The app dir itself is gone.
    Gone,
    /// Nothing there, and not a navigation path.
    NotFound,
}

impl From<OpenError> for Refusal {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Escapes(p) => Refusal::Escapes(p),
            OpenError::NotFound(_) | OpenError::Io(..) => Refusal::NotFound,
        }
    }
}

/// What the request asks of the file.
struct Want {
    injects: bool,
    encodings: Vec<&'static str>,
    range: Option<String>,
    if_range: Option<String>,
}

/// How the answer is sent.
enum Body {
    /// HTML to inject into.
    Html(String),
    /// The whole (small) file.
    Small(Bytes),
    /// Streamed from the open file.
    Stream(Sendable),
}

/// Where a request path landed on disk.
struct Resolved {
    /// The file as named (its content type comes from this name).
    path: PathBuf,
    etag: String,
    encoding: Option<&'static str>,
    body: Body,
}

/// Blocking: opens the file below the app dir, falling back to the
/// entrypoint for navigation paths; reads metadata and small files.
fn resolve(
    app: &AppVersion,
    entrypoint: &str,
    relative: &Path,
    want: &Want,
) -> Result<Resolved, Refusal> {
    let root = app.open_dir().map_err(|e| match e {
        OpenError::Escapes(p) => Refusal::Escapes(p),
        _ => Refusal::Gone,
    })?;
    let (path, found) = find(&root, relative)?;
    let (path, opened) = match found {
        Some(opened) => (path, opened),
        None if is_navigation(relative) => {
            let entry = PathBuf::from(entrypoint);
            let opened = root.open_file(&entry)?;
            (entry, opened)
        }
        None => return Err(Refusal::NotFound),
    };
    let etag = etag_of(&opened.meta);
    let is_html = path.extension().is_some_and(|e| e == "html");
    if is_html && want.injects {
        let mut html = String::new();
        let mut file = opened.file;
        file.read_to_string(&mut html)
            .map_err(|_| Refusal::NotFound)?;
        return Ok(Resolved {
            path,
            etag,
            encoding: None,
            body: Body::Html(html),
        });
    }
    // The first sibling the client accepts that is a file inside the dir; one
    // that leads out is passed over (the file itself is fine to send).
    let sibling = want.encodings.iter().find_map(|ext| {
        let mut name = path.clone().into_os_string();
        name.push(format!(".{ext}"));
        let name = PathBuf::from(name);
        match root.open_file(&name) {
            Ok(f) => Some((*ext, f)),
            Err(e @ OpenError::Escapes(_)) => {
                tracing::debug!(app = app.key(), error = %e, "passed over a precompressed sibling");
                None
            }
            Err(_) => None,
        }
    });
    let (encoding, mut opened) = match sibling {
        Some((ext, f)) => (Some(static_send::encoding_of(ext)), f),
        None => (None, opened),
    };
    let len = opened.meta.len();
    // Small files without a Range request are answered from one buffer: one
    // write, no streamed body (a streamed body cost a delayed-ACK round trip,
    // ~40 ms, per keep-alive request on small files).
    if len <= SMALL_FILE && encoding.is_none() && want.range.is_none() {
        let mut bytes = Vec::with_capacity(len as usize);
        opened
            .file
            .read_to_end(&mut bytes)
            .map_err(|_| Refusal::NotFound)?;
        return Ok(Resolved {
            path,
            etag,
            encoding,
            body: Body::Small(Bytes::from(bytes)),
        });
    }
    let part = match encoding {
        Some(_) => Part::Whole,
        None => static_send::part_of(want.range.as_deref(), want.if_range.as_deref(), &etag, len),
    };
    static_send::seek_to(&mut opened.file, &part).map_err(|_| Refusal::NotFound)?;
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let body = Body::Stream(Sendable {
        file: opened.file,
        len,
        mime: HeaderValue::from_str(mime.as_ref())
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
        etag: etag.clone(),
        modified: opened.meta.modified().ok(),
        encoding,
        part,
    });
    Ok(Resolved {
        path,
        etag,
        encoding,
        body,
    })
}

/// The file for `relative` (a directory means its `index.html`), or `None`
/// when there is nothing there. An escape is an error, not a miss, so a
/// symlink pointing out never falls back to the entrypoint silently.
fn find(root: &AppDir, relative: &Path) -> Result<(PathBuf, Option<OpenedFile>), Refusal> {
    let opened = if relative.as_os_str().is_empty() {
        None
    } else {
        match root.open(relative) {
            Ok(o) => Some(o),
            Err(OpenError::NotFound(_) | OpenError::Io(..)) => {
                return Ok((relative.to_owned(), None));
            }
            Err(e) => return Err(e.into()),
        }
    };
    match opened {
        Some(o) if o.meta.is_file() => Ok((relative.to_owned(), Some(o))),
        Some(o) if !o.meta.is_dir() => Ok((relative.to_owned(), None)),
        _ => {
            let index = relative.join("index.html");
            match root.open_file(&index) {
                Ok(o) => Ok((index, Some(o))),
                Err(e @ OpenError::Escapes(_)) => Err(e.into()),
                Err(_) => Ok((index, None)),
            }
        }
    }
}

/// A path whose last segment has no `.`: a client-side route.
fn is_navigation(relative: &Path) -> bool {
    !relative
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains('.'))
}

/// The decoded path below the app dir, or `None` if it tries to leave it.
pub(crate) fn safe_relative(rest: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn has_public_env(config: &AppConfig) -> bool {
    config
        .env
        .keys()
        .any(|k| config.env_prefix.iter().any(|p| k.starts_with(p)))
}

fn etag_of(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("W/\"{:x}-{:x}\"", meta.len(), mtime)
}

fn matches_etag(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn not_modified(etag: &str) -> Response {
    let mut res = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

fn html_with_injections(
    mut html: String,
    base: &str,
    config: &AppConfig,
    if_none_match: Option<&str>,
) -> Response {
    if config.inject_base
        && let Some(i) = after_head_tag(&html)
    {
        let tag = format!("<base href=\"{}/\">", escape_attr(base));
        html.insert_str(i, &tag);
    }
    let public: serde_json::Map<String, serde_json::Value> = config
        .env
        .iter()
        .filter(|(k, _)| config.env_prefix.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    if !public.is_empty()
        && let Some(i) = find_ci(&html, "</head>")
    {
        // `<` is escaped so no value can close the script element.
        let json = serde_json::Value::Object(public)
            .to_string()
            .replace('<', "\\u003c");
        html.insert_str(i, &format!("<script>window.__env__={json};</script>"));
    }
    let etag = format!("W/\"{:x}\"", fnv1a(html.as_bytes()));
    if matches_etag(if_none_match, &etag) {
        return not_modified(&etag);
    }
    let mut res = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack.to_ascii_lowercase().find(needle)
}

/// Where the content of the `<head>` element starts: just after its opening
/// tag, which may carry attributes (`<head lang="en">`) — but not inside a
/// `<header>`.
fn after_head_tag(html: &str) -> Option<usize> {
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("<head") {
        let start = from + at;
        let next = lower.as_bytes().get(start + "<head".len()).copied();
        if matches!(
            next,
            Some(b'>' | b'/') | Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
        ) {
            return lower[start..].find('>').map(|end| start + end + 1);
        }
        from = start + "<head".len();
    }
    None
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A small non-cryptographic hash for ETags of generated HTML.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::{after_head_tag, safe_relative};

    #[test]
    fn the_base_goes_into_head_whatever_its_attributes() {
        let cases = [
            ("<html><head><title>", Some(12)),
            ("<HTML><HEAD lang=\"en\">x", Some(22)),
            ("<head\n  data-x=1>", Some(17)),
            ("<body><header>no head</header>", None),
            ("<header></header><head>", Some(23)),
        ];
        for (html, want) in cases {
            assert_eq!(after_head_tag(html), want, "{html:?}");
        }
    }

    #[test]
    fn traversal_attempts_are_refused() {
        for bad in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/a/../../b",
            "/..%5c..%5cwindows",
            "/a%00.html",
            "/%252e%252e/x/../../..",
            "/./../x",
            "/a/%2e%2e/%2e%2e/x",
        ] {
            assert!(safe_relative(bad).is_none(), "{bad} should be refused");
        }
        assert_eq!(safe_relative("/a/./b.js").unwrap().to_str(), Some("a/b.js"));
    }
}
