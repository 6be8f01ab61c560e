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

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use super::error::ApiError;
use crate::config::WorkerConfig;

/// Serves `rest` (the path below the app's base) from `dir`.
pub(crate) async fn serve(
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
    let Some(relative) = safe_relative(rest) else {
        return ApiError::not_found("NOT_FOUND", format!("`{rest}` is not a valid path"))
            .into_response();
    };
    let Ok(root) = dir.canonicalize() else {
        return ApiError::not_found("NOT_FOUND", "the app directory is gone").into_response();
    };
    let mut target = root.join(&relative);
    if target.is_dir() {
        target = target.join("index.html");
    }
    let exists = match target.canonicalize() {
        Ok(real) if real.starts_with(&root) => real.is_file(),
        Ok(_) => {
            tracing::warn!(path = %target.display(), "refused a path that leaves the app directory");
            return ApiError::not_found("NOT_FOUND", format!("`{rest}` was not found"))
                .into_response();
        }
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
        return ApiError::not_found("NOT_FOUND", format!("`{rest}` was not found")).into_response();
    };

    let Ok(meta) = std::fs::metadata(&file) else {
        return ApiError::not_found("NOT_FOUND", format!("`{rest}` was not found")).into_response();
    };
    let is_html = file.extension().is_some_and(|e| e == "html");
    if is_html && (config.inject_base || has_public_env(config)) {
        return html_with_injections(&file, base, config, if_none_match.as_deref()).await;
    }
    let etag = etag_of(&meta);
    if matches_etag(if_none_match.as_deref(), &etag) {
        return not_modified(&etag);
    }
    // Small files without a Range request are answered from one buffer: one
    // write, no streamed body (a streamed body cost a delayed-ACK round trip,
    // ~40 ms, per keep-alive request on small files).
    let precompressed = req.headers().contains_key(header::ACCEPT_ENCODING)
        && ["br", "gz"].iter().any(|ext| {
            let mut p = file.clone().into_os_string();
            p.push(format!(".{ext}"));
            Path::new(&p).is_file()
        });
    if meta.len() <= SMALL_FILE && !precompressed && !req.headers().contains_key(header::RANGE) {
        return small_file(&file, &etag).await;
    }
    let rel = file
        .strip_prefix(&root)
        .unwrap_or(&file)
        .to_string_lossy()
        .replace('\\', "/");
    let (mut parts, body) = req.into_parts();
    parts.uri = match format!("/{rel}").parse() {
        Ok(u) => u,
        Err(_) => return ApiError::not_found("NOT_FOUND", "unservable path").into_response(),
    };
    let service = ServeDir::new(&root).precompressed_br().precompressed_gzip();
    match service.oneshot(Request::from_parts(parts, body)).await {
        Ok(res) => {
            let mut res = res.map(Body::new);
            if res.status().is_success()
                && let Ok(v) = HeaderValue::from_str(&etag)
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

async fn small_file(file: &Path, etag: &str) -> Response {
    let Ok(bytes) = tokio::fs::read(file).await else {
        return ApiError::not_found("NOT_FOUND", "the file is unreadable").into_response();
    };
    let mime = mime_guess::from_path(file).first_or_octet_stream();
    let mut res = Response::new(Body::from(bytes));
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    res
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
