//! A plugin's changes to the request (`continue`) and to the response
//! (`on_response`), applied under the rules of every guest response: the
//! framing headers stay the host's, names and values are checked, and a
//! status must be one a guest may set.

use axum::extract::Request;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use buntime_pdk::hooks::{RequestChanges, ResponseChanges};
use bytes::Bytes;

use super::super::guest_http::{DroppedHeaders, GuestHeaders, guest_status};

/// Applies a `continue`'s changes to the request. Framing headers are the
/// host's on the way in too (the app or upstream gets the body the client
/// sent, framed by the host): setting or removing one is ignored (and noted
/// in `dropped` under `module`).
pub(crate) fn apply_request_changes(
    req: &mut Request,
    changes: RequestChanges,
    module: &str,
    dropped: &DroppedHeaders,
) -> Result<(), String> {
    apply_header_changes(
        req.headers_mut(),
        changes.remove_headers,
        changes.set_headers,
        module,
        dropped,
    )?;
    if changes.path.is_some() || changes.query.is_some() {
        let path = changes.path.unwrap_or_else(|| req.uri().path().to_owned());
        if !path.starts_with('/') {
            return Err(format!("the new path `{path}` must start with `/`"));
        }
        let query = changes
            .query
            .or_else(|| req.uri().query().map(str::to_owned));
        let pq = match query.filter(|q| !q.is_empty()) {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let uri: Uri = pq
            .parse()
            .map_err(|e| format!("`{pq}` is not a valid path and query: {e}"))?;
        *req.uri_mut() = uri;
    }
    Ok(())
}

/// Applies an `on_response` answer. Framing headers are the host's: setting
/// or removing one is ignored (and noted in `dropped` under `module`).
pub(crate) fn apply_response_changes(
    res: &mut Response,
    changes: ResponseChanges,
    module: &str,
    dropped: &DroppedHeaders,
) -> Result<(), String> {
    if let Some(status) = changes.status {
        *res.status_mut() = guest_status(status)?;
    }
    apply_header_changes(
        res.headers_mut(),
        changes.remove_headers,
        changes.set_headers,
        module,
        dropped,
    )
}

/// Removes then sets the headers a plugin's changes name, each checked by
/// [`GuestHeaders`].
fn apply_header_changes(
    headers: &mut HeaderMap,
    remove: Vec<String>,
    set: Vec<(String, String)>,
    module: &str,
    dropped: &DroppedHeaders,
) -> Result<(), String> {
    let removed = GuestHeaders {
        module,
        field: "`remove_headers`",
        dropped,
    };
    for name in &remove {
        if let Some(name) = removed.name(name)? {
            headers.remove(name);
        }
    }
    let checked = GuestHeaders {
        field: "`set_headers`",
        ..removed
    };
    for (k, v) in set {
        if let Some((name, value)) = checked.header(&k, Bytes::from(v))? {
            headers.insert(name, value);
        }
    }
    Ok(())
}
