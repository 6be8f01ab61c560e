//! Static and single-page apps.
//!
//! Files are served by tower-http's `ServeDir` (content types, `Range`,
//! `If-Modified-Since`, precompressed `.br`/`.gz` siblings). In front of it,
//! this module: refuses any path that escapes the app dir (encoded `..`,
//! backslashes, NUL, symlinks pointing outside), answers `ETag` /
//! `If-None-Match`, falls back to the entrypoint for navigation paths (no file
//! extension) so client-side routers work, and optionally injects
//! `<base href>` and `window.__env__` into HTML.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use super::error::ApiError;
use super::static_cache::{CachedFile, StaticCache};
use crate::config::WorkerConfig;
use bytes::Bytes;

/// Serves `rest` (the path below the app's base) from `dir`.
///
/// A small file that was served in the last [`crate::routing::CACHE_TTL`] is
/// answered from `cache` without touching the disk; everything else resolves
/// on the blocking pool (path checks, metadata, reading), never on an async
/// worker.
pub(crate) async fn serve(
    cache: &StaticCache,
    dir: &Path,
    entrypoint: &str,
    rest: &str,
    base: &str,
    config: &WorkerConfig,
    req: Request,
) -> Response {
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ranged = req.headers().contains_key(header::RANGE);
    let key = format!("{}\n{rest}", dir.display());
    if !ranged && let Some(hit) = cache.get(&key) {
        return hit.respond(if_none_match.as_deref());
    }
    let Some(relative) = safe_relative(rest) else {
        return ApiError::not_found("NOT_FOUND", format!("`{rest}` is not a valid path"))
            .into_response();
    };
    let injects = config.inject_base || has_public_env(config);
    let wants_encoding = req.headers().contains_key(header::ACCEPT_ENCODING);
    let (dir_owned, entry) = (dir.to_owned(), entrypoint.to_owned());
    let resolved = tokio::task::spawn_blocking(move || {
        resolve(
            &dir_owned,
            &entry,
            &relative,
            injects,
            wants_encoding,
            ranged,
        )
    })
    .await;
    let resolved = match resolved {
        Ok(Ok(r)) => r,
        Ok(Err(Refusal::Escapes(target))) => {
            tracing::warn!(path = %target.display(), "refused a path that leaves the app directory");
            return ApiError::not_found("NOT_FOUND", format!("`{rest}` was not found"))
                .into_response();
        }
        Ok(Err(Refusal::Gone)) => {
            return ApiError::not_found("NOT_FOUND", "the app directory is gone").into_response();
        }
        Ok(Err(Refusal::NotFound)) | Err(_) => {
            return ApiError::not_found("NOT_FOUND", format!("`{rest}` was not found"))
                .into_response();
        }
    };
    if resolved.is_html && injects {
        return html_with_injections(&resolved.file, base, config, if_none_match.as_deref()).await;
    }
    if let Some(bytes) = resolved.small {
        let file = Arc::new(CachedFile::new(&resolved.file, bytes, &resolved.etag));
        // Precompressed siblings and ranges go through ServeDir, so only a
        // plain file is remembered.
        if !resolved.precompressed {
            cache.put(key, file.clone());
        }
        return file.respond(if_none_match.as_deref());
    }
    if matches_etag(if_none_match.as_deref(), &resolved.etag) {
        return not_modified(&resolved.etag);
    }
    let rel = resolved
        .file
        .strip_prefix(&resolved.root)
        .unwrap_or(&resolved.file)
        .to_string_lossy()
        .replace('\\', "/");
    let (mut parts, body) = req.into_parts();
    parts.uri = match format!("/{rel}").parse() {
        Ok(u) => u,
        Err(_) => return ApiError::not_found("NOT_FOUND", "unservable path").into_response(),
    };
    let service = ServeDir::new(&resolved.root)
        .precompressed_br()
        .precompressed_gzip();
    match service.oneshot(Request::from_parts(parts, body)).await {
        Ok(res) => {
            let mut res = res.map(Body::new);
            if res.status().is_success()
                && let Ok(v) = HeaderValue::from_str(&resolved.etag)
            {
                res.headers_mut().insert(header::ETAG, v);
            }
            res
        }
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "STATIC_ERROR",
            e.to_string(),
        )
        .into_response(),
    }
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

/// Where a request path landed on disk.
struct Resolved {
    root: PathBuf,
    file: PathBuf,
    etag: String,
    is_html: bool,
    precompressed: bool,
    /// The whole file, when it is small and served as one buffer.
    small: Option<Bytes>,
}

/// Blocking: checks the path stays in the app dir, falls back to the
/// entrypoint for navigation paths, reads metadata and small files.
fn resolve(
    dir: &Path,
    entrypoint: &str,
    relative: &Path,
    injects: bool,
    wants_encoding: bool,
    ranged: bool,
) -> Result<Resolved, Refusal> {
    let root = dir.canonicalize().map_err(|_| Refusal::Gone)?;
    let mut target = root.join(relative);
    if target.is_dir() {
        target = target.join("index.html");
    }
    let exists = match target.canonicalize() {
        Ok(real) if real.starts_with(&root) => real.is_file(),
        Ok(_) => return Err(Refusal::Escapes(target)),
        Err(_) => false,
    };
    let navigation = !relative
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains('.'));
    let file = if exists {
        target
    } else if navigation {
        root.join(entrypoint)
    } else {
        return Err(Refusal::NotFound);
    };
    let meta = std::fs::metadata(&file).map_err(|_| Refusal::NotFound)?;
    let is_html = file.extension().is_some_and(|e| e == "html");
    let precompressed = wants_encoding
        && ["br", "gz"].iter().any(|ext| {
            let mut p = file.clone().into_os_string();
            p.push(format!(".{ext}"));
            Path::new(&p).is_file()
        });
    // Small files without a Range request are answered from one buffer: one
    // write, no streamed body (a streamed body cost a delayed-ACK round trip,
    // ~40 ms, per keep-alive request on small files).
    let whole = meta.len() <= SMALL_FILE && !precompressed && !ranged;
    let small = (whole && !(is_html && injects))
        .then(|| std::fs::read(&file).ok().map(Bytes::from))
        .flatten();
    Ok(Resolved {
        etag: etag_of(&meta),
        root,
        file,
        is_html,
        precompressed,
        small,
    })
}

/// The decoded path below the app dir, or `None` if it tries to leave it.
fn safe_relative(rest: &str) -> Option<PathBuf> {
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

fn has_public_env(config: &WorkerConfig) -> bool {
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

async fn html_with_injections(
    file: &Path,
    base: &str,
    config: &WorkerConfig,
    if_none_match: Option<&str>,
) -> Response {
    let Ok(mut html) = tokio::fs::read_to_string(file).await else {
        return ApiError::not_found("NOT_FOUND", "the entrypoint is unreadable").into_response();
    };
    if config.inject_base
        && let Some(i) = find_ci(&html, "<head>")
    {
        let tag = format!("<base href=\"{}/\">", escape_attr(base));
        html.insert_str(i + "<head>".len(), &tag);
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
    use super::safe_relative;

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
