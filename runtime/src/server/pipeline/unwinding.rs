//! The way back through the chain: `on_response` in reverse order over the
//! plugins whose `on_request` stage the request reached, each seeing the
//! response's head ([`ResponseHeadView`]) and free to change its status and
//! headers; the response headers a plugin asked for on the way in are set
//! just before its own `on_response`.

use axum::response::Response;
use buntime_pdk::hooks::ResponseChanges;
use bytes::Bytes;

use super::{Unwind, apply_response_changes, failure_response, set_response_headers};
use crate::plugins::Chain;
use crate::server::client::RequestClientSource;
use crate::server::guest_http::{DroppedHeaders, HeaderPairs};
use crate::telemetry::SpanParent;
use crate::wasm::CostMeter;

/// Runs `on_response` in reverse order over the first `entered` plugins.
#[allow(
    clippy::too_many_arguments,
    reason = "the chain's state, passed down without a struct built per request"
)]
pub(super) async fn on_response(
    chain: &Chain,
    entered: usize,
    mut res: Response,
    path: &str,
    dropped: &DroppedHeaders,
    client: &RequestClientSource<'_>,
    mut unwind: Unwind,
    trace: Option<&SpanParent>,
    meter: Option<&CostMeter>,
    log_tag: Option<&crate::log_feed::LogTag>,
) -> Response {
    let mut input: Option<Bytes> = None;
    for (i, plugin) in chain.plugins[..entered].iter().enumerate().rev() {
        if unwind.pending.last().is_some_and(|(at, _)| *at == i)
            && let Some((_, headers)) = unwind.pending.pop()
        {
            set_response_headers(&mut res, headers);
            input = None;
        }
        if !plugin.hooks.on_response || unwind.skips(i) {
            continue;
        }
        let view = input
            .get_or_insert_with(|| {
                ResponseHeadView {
                    status: res.status().as_u16(),
                    headers: HeaderPairs(res.headers(), None, None),
                    path,
                }
                .to_json()
            })
            .clone();
        let mut ext = http::Extensions::new();
        client.attach_resolved(plugin.instances.module(), &mut ext);
        if let Some(meter) = meter {
            ext.insert(meter.clone());
        }
        if let Some(tag) = log_tag
            && plugin.instances.module().logs()
        {
            ext.insert(tag.clone());
        }
        let span = trace.map(|t| t.hook(&plugin.spans.on_response));
        let result = super::super::hook_call::call_hook(plugin, "on_response", view, ext, span)
            .await
            .0
            .and_then(|out| {
                if out.is_empty() {
                    return Ok(ResponseChanges::default());
                }
                serde_json::from_slice::<ResponseChanges>(&out)
                    .map_err(|e| plugin.malformed("on_response", e))
            })
            .and_then(|changes| {
                if changes == ResponseChanges::default() {
                    return Ok(());
                }
                input = None;
                apply_response_changes(&mut res, changes, plugin.name(), dropped)
                    .map_err(|d| plugin.malformed("on_response", d))
            });
        if let Err(e) = result
            && let Some(failed) = failure_response(plugin, &e)
        {
            res = failed;
            input = None;
        }
    }
    res
}

/// [`ResponseView`] as `on_response` receives it, written without copies
/// by `to_json`. The serde impl is the tests' reference for that JSON.
#[derive(serde::Serialize)]
pub(super) struct ResponseHeadView<'a> {
    pub(super) status: u16,
    pub(super) headers: HeaderPairs<'a>,
    pub(super) path: &'a str,
}

impl ResponseHeadView<'_> {
    /// What `serde_json` writes for the view, by hand
    /// ([`crate::server::head_json`]).
    pub(super) fn to_json(&self) -> Bytes {
        let mut out = super::super::head_json::JsonObject::new(Vec::with_capacity(256));
        out.u64_field("status", u64::from(self.status));
        out.headers_field("headers", &self.headers);
        out.str_field("path", self.path);
        Bytes::from(out.finish())
    }
}
