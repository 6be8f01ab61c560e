//! The wasm side: `on_init` checks the config and seeds the store,
//! `on_request` is the PEP, `handle` serves the PAP (`routes`).

mod routes;
mod store;

use std::sync::OnceLock;

use buntime_pdk::hooks::RequestDecision;
use buntime_pdk::plugin::config;
use buntime_pdk::{Error, RequestHead, ResponseHead};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::ip::parse_client;
use crate::pdp::{
    ActionCtx, Context, EnvironmentCtx, ResourceCtx, SubjectCtx, app_and_path, normalize_path,
};
use crate::policy::Effect;
use crate::settings::Settings;

/// The config keys this plugin reads.
const KEYS: &[&str] = &[
    "combiningAlgorithm",
    "defaultEffect",
    "excludePaths",
    "database",
    "policySeed",
];

/// The header carrying the authenticated identity (set by the authn
/// plugin; the host strips any a client sends).
const IDENTITY: &str = "x-identity";

/// This instance's settings, read from the config on first use (each
/// instance reads the config itself: `on_init` ran on one instance only).
/// `on_init` has already refused a config that does not parse, so a
/// failure here cannot happen in a loaded plugin.
fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let mut cfg = Map::new();
        for key in KEYS {
            if let Some(text) = config(key) {
                let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
                cfg.insert((*key).to_owned(), v);
            }
        }
        Settings::parse(&Value::Object(cfg)).unwrap_or_else(|e| {
            extism_pdk::error!("authz config: {}", e);
            Settings::parse(&json!({ "policySeed": { "enabled": false } }))
                .unwrap_or_else(|_| unreachable!("the defaults parse"))
        })
    })
}

fn init(cfg: Value) -> Result<(), Error> {
    let cfg = if cfg.is_null() { json!({}) } else { cfg };
    let parsed = Settings::parse(&cfg).map_err(Error::msg)?;
    let seeded = store::seed(&parsed.seed, parsed.seed_only_if_empty)
        .map_err(|e| Error::msg(store::describe(&e)))?;
    if seeded > 0 {
        extism_pdk::info!("authz: seeded {} policies from the config", seeded);
    }
    Ok(())
}
buntime_pdk::on_init!(init);

/// The PEP: decides every request the config does not exclude.
fn enforce(req: RequestHead) -> Result<RequestDecision, Error> {
    let s = settings();
    let path = normalize_path(&req.path);
    // The app is the one the host routes to: the raw path's first segment.
    // A path whose dot segments or encoded separators lead out of it is
    // refused rather than judged as another path.
    if first_segment(&req.path) != first_segment(&path) {
        return Ok(refuse(
            &req,
            400,
            json!({ "code": "PATH_INVALID",
                    "message": "the path leaves its first segment through `..` or an encoded separator" }),
        ));
    }
    if s.excluded(&path) {
        return Ok(RequestDecision::pass());
    }
    let (app, path) = app_and_path(&path);
    let ctx = Context {
        subject: identity(&req)?,
        resource: ResourceCtx {
            app,
            path,
            kind: None,
        },
        action: ActionCtx {
            method: req.method.clone(),
            operation: None,
        },
        environment: EnvironmentCtx {
            ip: buntime_pdk::client().and_then(|c| parse_client(&c.address)),
            time: None,
        },
    };
    let set = store::current().map_err(Error::msg)?;
    let decision = set.decide(&ctx, Timestamp::now());
    if decision.effect == Effect::Permit {
        return Ok(RequestDecision::pass());
    }
    let message = match &decision.matched_policy {
        Some(id) => format!("denied by policy `{id}`"),
        None => "no policy permits this request".to_owned(),
    };
    Ok(refuse(
        &req,
        403,
        json!({ "code": "FORBIDDEN", "message": message,
                "policy": decision.matched_policy, "reason": decision.reason }),
    ))
}
buntime_pdk::on_request!(enforce);

/// The subject of `X-Identity`, or the anonymous subject without one.
fn identity(req: &RequestHead) -> Result<SubjectCtx, Error> {
    match req.header(IDENTITY) {
        None => Ok(SubjectCtx::default()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::msg(format!("the `X-Identity` header is not an identity: {e}"))),
    }
}

/// The decoded first segment of a path.
fn first_segment(path: &str) -> String {
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    buntime_pdk::http::percent_decode(&first.replace('+', "%2B"))
}

/// An answer in the shape of the server's own errors, plus `extra`.
fn refuse(req: &RequestHead, status: u16, mut body: Value) -> RequestDecision {
    body["requestId"] = json!(req.request_id);
    let mut head = ResponseHead::new(status);
    head.headers
        .push(("content-type".into(), "application/json".into()));
    head.body = Some(body.to_string());
    RequestDecision::respond(head)
}
