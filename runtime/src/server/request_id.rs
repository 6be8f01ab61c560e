//! `x-request-id`: propagated when the client sends a sane one, generated
//! otherwise; set on every response and added to JSON error bodies.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::{ApiError, ErrorDetail, RequestId, render};

/// The header name.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

static COUNTER: AtomicU64 = AtomicU64::new(0);
static PREFIX: OnceLock<String> = OnceLock::new();

/// `<process start, ns>-<pid>-<counter>`: unique per process (the prefix) and
/// within it (the counter), with no clock read per request.
fn generate() -> HeaderValue {
    let prefix = PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        format!("{nanos:016x}-{:08x}", std::process::id())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // By hand, on the stack, rather than `format!` into a `String` that
    // the header value would copy again: this runs on every request.
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(8) as usize;
    let mut id = [0u8; 64];
    let len = prefix.len() + 1 + digits;
    id[..prefix.len()].copy_from_slice(prefix.as_bytes());
    id[prefix.len()] = b'-';
    for (i, slot) in id[prefix.len() + 1..len].iter_mut().enumerate() {
        let shift = (digits - 1 - i) * 4;
        *slot = b"0123456789abcdef"[((n >> shift) & 0xf) as usize];
    }
    // Hex digits and `-` only: always a valid value.
    HeaderValue::from_bytes(&id[..len]).unwrap_or(HeaderValue::from_static("unknown"))
}

fn acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The middleware (for the core routes' `Router`).
pub(crate) async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    with_request_id(req, state.error_detail, |req| next.run(req)).await
}

/// The id of `req`: the client's `x-request-id` if acceptable (its value
/// shared, not copied), else a new one.
fn chosen(req: &Request) -> HeaderValue {
    req.headers()
        .get(X_REQUEST_ID)
        .filter(|v| acceptable(v.as_bytes()))
        .cloned()
        .unwrap_or_else(generate)
}

/// Gives `req` its id now, ahead of the request-id layer, which keeps it
/// (it is in the header, and acceptable); returns the header's value.
/// For a core request the plugins see before the core router runs
/// (`core_headers.rs`).
pub(crate) fn assign(req: &mut Request) -> HeaderValue {
    let id = chosen(req);
    req.headers_mut().insert(X_REQUEST_ID, id.clone());
    req.extensions_mut().insert(RequestId::new(id.clone()));
    id
}

/// Gives `req` its id, runs `inner`, and puts the id on the response. An
/// error `inner` left as an [`ApiError`] extension gets its body here
/// ([`render`]), with the id, under `detail`, and with the response's status
/// as it now is: a plugin's `on_response` may have changed it.
pub(crate) async fn with_request_id<F, Fut>(
    mut req: Request,
    detail: ErrorDetail,
    inner: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    // The request, its extension and the response share one value.
    let value = assign(&mut req);
    let mut res = inner(req).await;
    if let Some(err) = res.extensions_mut().remove::<ApiError>() {
        let id = value.to_str().unwrap_or("");
        let mut rebuilt = render(&err, res.status(), id, detail);
        for (k, v) in res.headers() {
            if k != axum::http::header::CONTENT_LENGTH && k != axum::http::header::CONTENT_TYPE {
                rebuilt.headers_mut().append(k.clone(), v.clone());
            }
        }
        res = rebuilt;
    }
    res.headers_mut().insert(X_REQUEST_ID, value);
    res
}

/// Tags a guest call made for the request whose extensions are `req` with
/// its request id, so the guest's log lines carry it into the log feed.
/// Only while the feed is on and for a `module` that can log: otherwise
/// nothing is copied or inserted.
pub(crate) fn tag_logs(
    module: &crate::wasm::GuestModule,
    req: &http::Extensions,
    call: &mut http::Extensions,
) {
    if module.logs()
        && let Some(tag) = log_tag(module, req)
    {
        call.insert(tag);
    }
}

/// The tag of the request whose extensions are `req` (`None` while the
/// feed is off or the request has no id), taken before the request is
/// handed on, for the calls made once it is gone (`on_response`).
pub(crate) fn log_tag(
    module: &crate::wasm::GuestModule,
    req: &http::Extensions,
) -> Option<crate::log_feed::LogTag> {
    if !module.log_feed().is_on() {
        return None;
    }
    let id = req.get::<RequestId>()?;
    Some(crate::log_feed::LogTag {
        request_id: id.as_str().to_owned(),
        // Set only for a sampled request (its span is current).
        trace_id: crate::telemetry::log_ids::current_trace_id(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_ids_are_unique_and_well_formed() {
        let a = super::generate();
        let b = super::generate();
        assert_ne!(a, b);
        // The counter: at least eight hex digits after the last `-`.
        let [a, b] = [a, b].map(|id| id.to_str().unwrap_or_default().to_owned());
        let [na, nb] = [&a, &b].map(|id| {
            assert!(super::acceptable(id.as_bytes()), "{id}");
            let counter = id.rsplit('-').next().unwrap_or_default();
            assert!(counter.len() >= 8, "{id}");
            u64::from_str_radix(counter, 16).unwrap_or_else(|e| panic!("{id}: {e}"))
        });
        assert!(nb > na, "{a} then {b}");
    }
}
