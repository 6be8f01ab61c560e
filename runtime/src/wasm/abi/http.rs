//! `http_request`, `http_status_code` and `http_headers`: outbound HTTP.
//!
//! The guest sends `{"url", "method"?, "headers"?}` as JSON plus an optional
//! body block; the host checks the URL's host against the guest's granted
//! host patterns, performs the request on tokio (the guest's fiber is parked,
//! no thread is blocked), bounds it by the call's remaining time, caps the
//! response body, and returns it as a block. Status and headers are kept for
//! `http_status_code` / `http_headers`. Refusals and failures trap, as in the
//! Extism runtime, with a message naming what to grant.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmtime::{Caller, Linker};

use super::super::state::HostState;
use super::{ENV_NAMESPACE, guest_fault};
use crate::grants::{Capability, HttpGrant};

type Cx<'a> = Caller<'a, HostState>;

/// The request description a guest passes to `http_request`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpRequest {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    method: Option<String>,
}

pub(super) fn link(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap_async(
        ENV_NAMESPACE,
        "http_request",
        |mut c: Cx<'_>, (req, body): (i64, i64)| {
            Box::new(async move { http_request(&mut c, req, body).await })
        },
    )?;
    l.func_wrap(ENV_NAMESPACE, "http_status_code", |c: Cx<'_>| -> i32 {
        i32::from(c.data().http_status)
    })?;
    l.func_wrap(ENV_NAMESPACE, "http_headers", |mut c: Cx<'_>| -> i64 {
        let json = serde_json::to_vec(&c.data().http_headers).unwrap_or_default();
        super::blocks::alloc_bytes(&mut c, &json).unwrap_or(0) as i64
    })?;
    Ok(())
}

async fn http_request(c: &mut Cx<'_>, req_handle: i64, body_handle: i64) -> wasmtime::Result<i64> {
    let fault = |d: String| guest_fault("http_request", d);
    let state = c.data_mut();
    state.http_status = 0;
    state.http_headers.clear();

    let req: HttpRequest = {
        let bytes = state
            .arena
            .block(req_handle as u64)
            .map_err(|e| fault(e.to_string()))?;
        serde_json::from_slice(bytes).map_err(|e| fault(format!("invalid request JSON: {e}")))?
    };
    state.arena.free(req_handle as u64);
    let url = url::Url::parse(&req.url)
        .map_err(|e| wasmtime::Error::msg(format!("Invalid URL: {e:?}")))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let grant = state.grants.get::<HttpGrant>(Capability::HTTP);
    let Some(grant) = grant.filter(|g| g.matching(&url).is_some()) else {
        state.shared.stats.record_denial(Capability::HTTP.name());
        let origin = url.origin().ascii_serialization();
        tracing::warn!(
            guest = %state.guest_name(),
            url = %req.url,
            "capability `http` denied for `extism:host/env::http_request`: grant the URL in the guest's manifest (`capabilities`: {{\"http\": [\"{origin}\"]}})"
        );
        return Err(wasmtime::Error::msg(format!(
            "HTTP request to {} is not allowed",
            req.url
        )));
    };
    let allow_private = grant.allows_private(&url);
    let port = url.port_or_known_default().unwrap_or(80);
    let private = grant.refused_private(&url).await;
    let state = c.data_mut();
    if let Some(ip) = private {
        state.shared.stats.record_denial(Capability::HTTP.name());
        let message = format!(
            "HTTP request to {} is not allowed: `{host}` is the private address {ip}; grant it by address (\"http\": [\"{}://{ip}:{port}\"]) or with \"privateNetworks\": true",
            req.url,
            url.scheme()
        );
        tracing::warn!(guest = %state.guest_name(), "capability `http` denied: {message}");
        return Err(wasmtime::Error::msg(message));
    }
    let method = reqwest::Method::from_bytes(
        req.method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase()
            .as_bytes(),
    )
    .map_err(|_| fault(format!("invalid method {:?}", req.method)))?;
    // Names resolve through a client that never connects to a private
    // address unless the grant allows one (no DNS rebinding past the check).
    let client = if allow_private {
        &state.shared.http
    } else {
        &state.shared.http_public
    };
    // Under a traced request the call is a client span, and the request
    // carries that span's `traceparent` (replacing any the guest set).
    let span = crate::telemetry::SpanParent::with_current(|parent| {
        parent.map(|parent| parent.http_client(state.guest_name(), &method, &url))
    });
    let mut builder = client.request(method, url);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    if let Some(span) = &span {
        let mut headers = http::HeaderMap::new();
        span.inject(&mut headers);
        builder = builder.headers(headers);
    }
    if body_handle != 0 {
        let body = state
            .arena
            .block(body_handle as u64)
            .map_err(|e| fault(e.to_string()))?
            .to_vec();
        state.arena.free(body_handle as u64);
        builder = builder.body(body);
    }
    if let Some(left) = state.time_remaining() {
        builder = builder.timeout(left);
    }
    let max = state.max_http_response_bytes;

    // The store is not touched while the request is in flight.
    let sent = builder.send().await;
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => {
            let (kind, message) = if e.is_timeout() {
                ("timeout", "timeout".to_owned())
            } else {
                ("request_failed", format!("{e:#}"))
            };
            if let Some(span) = span {
                span.end(Some((kind, message.clone())));
            }
            return Err(wasmtime::Error::msg(message));
        }
    };
    let status = response.status().as_u16();
    if let Some(mut span) = span {
        span.response_status(status);
        // A client span fails on 4xx too (the HTTP conventions).
        let failed = status >= 400;
        span.end(failed.then(|| ("http_status", status.to_string())));
    }
    let headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| wasmtime::Error::msg(format!("{e:#}")))?
    {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(wasmtime::Error::msg(format!(
                "HTTP response exceeds the configured maximum number of bytes: {max}"
            )));
        }
        body.extend_from_slice(&chunk);
    }

    let state = c.data_mut();
    state.http_status = status;
    state.http_headers = headers;
    Ok(super::blocks::alloc_bytes(c, &body).unwrap_or(0) as i64)
}
