//! The wasm side: `on_init` checks the config, `on_request` routes.

use std::sync::OnceLock;

use buntime_pdk::hooks::{RequestChanges, RequestDecision};
use buntime_pdk::plugin::config;
use buntime_pdk::{Error, RequestHead, ResponseHead};
use serde_json::{Value, json};

use crate::hosts::{Hosts, Route, normalize};

/// The header carrying the tenant; whatever a client sent under it is
/// removed (the host strips it too, see docs/plugins.md §9).
const TENANT_HEADER: &str = "x-vhost-tenant";

/// This instance's host table, parsed from the config on first use (each
/// instance reads the config itself: `on_init` ran on one instance only).
fn table() -> Result<&'static Hosts, Error> {
    static TABLE: OnceLock<Result<Hosts, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let hosts = config("hosts").map(|t| parse_value(&t));
            let default = config("default").map(|t| parse_value(&t));
            Hosts::parse(hosts.as_ref(), default.as_ref()).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::msg(e.clone()))
}

/// A config value: JSON text, or a string passed as it is.
fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn init(cfg: Value) -> Result<(), Error> {
    Hosts::parse(cfg.get("hosts"), cfg.get("default")).map_err(|e| Error::msg(e.to_string()))?;
    Ok(())
}
buntime_pdk::on_init!(init);

fn route(req: RequestHead) -> Result<RequestDecision, Error> {
    let hosts = table()?;
    // The host as seen through trusted proxies when the host resolved one,
    // else the request's own `Host`.
    let raw = req
        .client
        .as_ref()
        .and_then(|c| c.host.as_deref())
        .or_else(|| req.header("host"));
    let host = raw.and_then(normalize);
    let changes = RequestChanges::default().remove_header(TENANT_HEADER);

    // Core and plugin routes keep their path; a wildcard host still names
    // the tenant for them (keyval and database read it).
    if req.path == "/_" || req.path.starts_with("/_/") {
        let tenant = host.as_deref().and_then(|h| hosts.tenant(h));
        return Ok(RequestDecision::Continue(match tenant {
            Some(t) => changes.set_header(TENANT_HEADER, t),
            None => changes,
        }));
    }
    match hosts.route(host.as_deref(), &req.path) {
        Route::App { target, tenant } => {
            let mut changes = changes.path(format!("/{}{}", target.app, req.path));
            if let Some(t) = tenant {
                changes = changes.set_header(TENANT_HEADER, t);
            }
            Ok(RequestDecision::Continue(changes))
        }
        Route::OutsidePrefix => Ok(not_found(
            &req,
            "HOST_PATH_NOT_SERVED",
            format!("this host serves no app at `{}`", req.path),
        )),
        Route::Unknown => Ok(not_found(
            &req,
            "HOST_NOT_FOUND",
            match raw {
                Some(h) => format!(
                    "no app is configured for host `{}`",
                    h.chars().take(100).collect::<String>()
                ),
                None => "the request names no host and no default app is configured".to_owned(),
            },
        )),
    }
}
buntime_pdk::on_request!(route);

/// A 404 in the shape of the server's own errors.
fn not_found(req: &RequestHead, code: &str, message: String) -> RequestDecision {
    let mut head = ResponseHead::new(404);
    head.headers
        .push(("content-type".into(), "application/json".into()));
    head.body = Some(json!({ "code": code, "message": message, "requestId": req.request_id }).to_string());
    RequestDecision::respond(head)
}
