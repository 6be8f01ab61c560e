//! The wasm side: `on_init` checks the config, `on_request` authenticates
//! (API key, bearer JWT, session cookie), `handle` serves `/_/auth/*`.
//!
//! - `host`: the host calls;
//! - `session`: login sessions in `sql`;
//! - `oidc`: browser login with an OpenID provider;
//! - `password`: the `email-password` provider.

mod host;
mod oidc;
mod password;
mod session;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use buntime_pdk::hooks::{RequestChanges, RequestDecision};
use buntime_pdk::plugin::config as config_value;
use buntime_pdk::{Error, Request, RequestHead, Response, ResponseHead};
use serde_json::{Value, json};

use crate::config::{ApiKeyProvider, Config, JwtProvider, Routes};
use crate::redirect::{
    FLOW_COOKIE, SESSION_COOKIE, cookie, cross_site, safe_target, strip_cookies,
};
use crate::web::{encode, unauthorized_body, wants_html};

/// The header carrying the identity (whatever a client sent is stripped by
/// the host, and removed here too).
const IDENTITY: &str = "x-identity";

/// This instance's config, parsed on first use (`on_init` ran on one
/// instance only).
fn settings() -> Result<&'static Config, Error> {
    static CONFIG: OnceLock<Result<Config, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut cfg = serde_json::Map::new();
            for key in [
                "providers",
                "publicRoutes",
                "loginPath",
                "database",
                "sessionSeconds",
                "loginStartsPerMinute",
                "allowedRedirectOrigins",
            ] {
                if let Some(text) = config_value(key) {
                    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    cfg.insert(key.to_owned(), v);
                }
            }
            Config::parse(&Value::Object(cfg))
        })
        .as_ref()
        .map_err(|e| Error::msg(e.clone()))
}

fn init(cfg: Value) -> Result<(), Error> {
    Config::parse(&cfg).map_err(Error::msg)?;
    Ok(())
}
buntime_pdk::on_init!(init);

/// Why a token was refused: a stable reason and a sentence.
struct Refused {
    reason: String,
    message: String,
}

/// The identity (`X-Identity` JSON) of the first provider that accepts
/// `token`.
fn authenticate(cfg: &Config, token: &str) -> Result<String, Refused> {
    let mut last = Refused {
        reason: "no_provider".into(),
        message: "no identity provider is configured".into(),
    };
    for provider in &cfg.providers {
        match check(provider, token) {
            Ok(identity) => return Ok(identity),
            Err(r) => last = r,
        }
    }
    Err(last)
}

fn check(provider: &JwtProvider, token: &str) -> Result<String, Refused> {
    match host::jwt_verdict(&provider.verify_members, token) {
        Ok(v) if v.valid => Ok(provider.identity_json(v.claims)),
        Ok(v) => Err(Refused {
            reason: v.reason.unwrap_or_else(|| "invalid".to_owned()),
            message: v.message.unwrap_or_default(),
        }),
        Err(e) => Err(Refused {
            reason: "provider_unavailable".into(),
            message: format!("provider `{}`: {e}", provider.name),
        }),
    }
}

/// A bearer token shaped like a JWT (the server's own API keys are removed
/// before the chain; anything else is not ours to judge).
fn bearer(req: &RequestHead) -> Option<&str> {
    let value = req.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    // Three parts: two dots (counted as bytes, not split).
    let dots = token.bytes().filter(|&b| b == b'.').count();
    (scheme.eq_ignore_ascii_case("bearer") && dots == 2).then_some(token)
}

/// How long an instance keeps the apps' own `publicRoutes` before asking
/// the host again (an edited `worker.jsonc` counts within this time).
const APP_ROUTES_TTL: Duration = Duration::from_secs(5);

/// The apps' `publicRoutes` from their `worker.jsonc` (through `pool_apps`),
/// cached per instance.
fn app_routes() -> BTreeMap<String, Routes> {
    static CACHE: Mutex<Option<(SystemTime, BTreeMap<String, Routes>)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let now = SystemTime::now();
    if let Some((at, routes)) = cache.as_ref()
        && now
            .duration_since(*at)
            .is_ok_and(|age| age < APP_ROUTES_TTL)
    {
        return routes.clone();
    }
    let mut routes = BTreeMap::new();
    match host::public_routes() {
        Ok(Value::Object(apps)) => {
            for (name, value) in apps {
                match Routes::parse(&value) {
                    Ok(r) => {
                        routes.insert(name, r);
                    }
                    Err(e) => extism_pdk::warn!(
                        "authn: app `{name}`: `publicRoutes` in worker.jsonc ignored: {e}"
                    ),
                }
            }
        }
        Ok(_) => {}
        Err(e) => extism_pdk::warn!("authn: the apps' publicRoutes cannot be read: {e}"),
    }
    *cache = Some((now, routes.clone()));
    routes
}

/// Whether the request needs no identity: a core or plugin route (they
/// have their own keys), or a route its app lists as public (in this
/// plugin's config or in the app's `worker.jsonc`).
fn open(cfg: &Config, req: &RequestHead) -> bool {
    if req.path == "/_" || req.path.starts_with("/_/") {
        return true;
    }
    let path = req.path.strip_prefix('/').unwrap_or(&req.path);
    let (first, rest) = match path.find('/') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, "/"),
    };
    let app = first.split('@').next().unwrap_or(first);
    let listed = |routes: Option<&Routes>| routes.is_some_and(|r| r.matches(&req.method, rest));
    listed(cfg.public.get(app)) || listed(app_routes().get(app))
}

/// An API key the request carries for one of the `apiKeys` providers, and
/// the header it came in: the provider's header, or `Authorization: Bearer`
/// with a token that is not a JWT.
fn presented_key<'a>(
    cfg: &'a Config,
    req: &'a RequestHead,
) -> Option<(&'a ApiKeyProvider, &'a str, &'a str)> {
    cfg.api_keys.iter().find_map(|p| {
        if let Some(k) = req.header(&p.header) {
            return Some((p, k.trim(), p.header.as_str()));
        }
        let value = req.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        (scheme.eq_ignore_ascii_case("bearer") && token.trim().split('.').count() != 3)
            .then(|| (p, token.trim(), "authorization"))
    })
}

/// The identity of an API key, or why it was refused.
fn api_key_identity(provider: &ApiKeyProvider, key: &str) -> Result<Value, Refused> {
    let digest = host::sha256(key).map_err(|e| Refused {
        reason: "provider_unavailable".into(),
        message: e.to_string(),
    })?;
    let hex = digest["hex"].as_str().unwrap_or_default();
    provider
        .find(hex)
        .map(|k| provider.identity(k))
        .ok_or_else(|| Refused {
            reason: "unknown_api_key".into(),
            message: format!("no key of provider `{}` matches", provider.name),
        })
}

fn authn(req: RequestHead) -> Result<RequestDecision, Error> {
    let cfg = settings()?;
    let mut changes = own_cookies_removed(&req, RequestChanges::default().remove_header(IDENTITY));
    if let Some((provider, key, header)) = presented_key(cfg, &req) {
        // The key is a secret of the client's: the app never sees it.
        changes = changes.remove_header(header);
        return match api_key_identity(provider, key) {
            Ok(identity) => Ok(RequestDecision::Continue(
                changes.set_header(IDENTITY, identity.to_string()),
            )),
            Err(refused) => Ok(refuse(cfg, &req, changes, &refused)),
        };
    }
    // Open routes get an identity when a valid token comes along; nothing
    // is refused there.
    let Some(token) = bearer(&req) else {
        if let Some(identity) = session_identity(&req) {
            return Ok(RequestDecision::Continue(
                changes.set_header(IDENTITY, identity),
            ));
        }
        if open(cfg, &req) {
            return Ok(RequestDecision::Continue(changes));
        }
        return Ok(unauthenticated(cfg, &req));
    };
    match authenticate(cfg, token) {
        Ok(identity) => Ok(RequestDecision::Continue(
            changes.set_header(IDENTITY, identity),
        )),
        Err(refused) => Ok(refuse(cfg, &req, changes, &refused)),
    }
}
buntime_pdk::on_request!(authn);

/// Takes this plugin's cookies out of requests to anything but its own
/// routes: an app (another tenant, perhaps) never sees a session id it
/// could replay as the user.
fn own_cookies_removed(req: &RequestHead, changes: RequestChanges) -> RequestChanges {
    if req.path.starts_with("/_/auth/") {
        return changes;
    }
    match strip_cookies(&req.headers, &[SESSION_COOKIE, FLOW_COOKIE]) {
        None => changes,
        Some(rest) if rest.is_empty() => changes.remove_header("cookie"),
        Some(rest) => changes.set_header("cookie", rest),
    }
}

/// The identity of the request's session cookie, on app routes and this
/// plugin's own. Never on other `/_/` routes: cookies do not authenticate
/// the core API or other plugins' APIs, which a page on another site could
/// otherwise drive with the user's cookie.
fn session_identity(req: &RequestHead) -> Option<String> {
    let core = req.path == "/_" || req.path.starts_with("/_/");
    if core && !req.path.starts_with("/_/auth/") {
        return None;
    }
    let id = cookie(&req.headers, SESSION_COOKIE)?;
    match session::find(id) {
        Ok(Some(s)) => Some(s.identity),
        Ok(None) => {
            extism_pdk::warn!(
                "authn: session refused on {} {} (unknown_session): no live session has this id (logged out, expired or never made)",
                req.method,
                req.path
            );
            None
        }
        Err(e) => {
            extism_pdk::warn!(
                "authn: session refused on {} {} (store_unavailable): {e}",
                req.method,
                req.path
            );
            None
        }
    }
}

/// Credentials that were not accepted: logged with the reason; the request
/// goes on without an identity where none is needed, else a 401.
fn refuse(
    cfg: &Config,
    req: &RequestHead,
    changes: RequestChanges,
    refused: &Refused,
) -> RequestDecision {
    extism_pdk::warn!(
        "authn: credentials refused on {} {} ({}): {}",
        req.method,
        req.path,
        refused.reason,
        refused.message
    );
    if open(cfg, req) {
        return RequestDecision::Continue(changes);
    }
    let mut head = json_head(
        401,
        unauthorized_body(
            "TOKEN_INVALID",
            "the credentials sent were not accepted",
            &req.request_id,
        ),
    );
    head.headers.push((
        "www-authenticate".into(),
        "Bearer error=\"invalid_token\"".into(),
    ));
    RequestDecision::respond(head)
}

/// No credentials: browsers go to the login page, other clients get a 401.
fn unauthenticated(cfg: &Config, req: &RequestHead) -> RequestDecision {
    if wants_html(req.header("accept")) && matches!(req.method.as_str(), "GET" | "HEAD") {
        let target = match &req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.clone(),
        };
        let mut head = ResponseHead::new(302);
        head.headers.push((
            "location".into(),
            format!("{}?redirect={}", cfg.login_path, encode(&target)),
        ));
        head.headers
            .push(("cache-control".into(), "no-store".into()));
        return RequestDecision::respond(head);
    }
    let mut head = json_head(
        401,
        unauthorized_body(
            "AUTHENTICATION_REQUIRED",
            "this route needs an identity: send `Authorization: Bearer <token>` from a configured provider",
            &req.request_id,
        ),
    );
    head.headers
        .push(("www-authenticate".into(), "Bearer".into()));
    RequestDecision::respond(head)
}

fn json_head(status: u16, body: String) -> ResponseHead {
    let mut head = ResponseHead::new(status);
    head.headers
        .push(("content-type".into(), "application/json".into()));
    head.headers
        .push(("cache-control".into(), "no-store".into()));
    head.body = Some(body);
    head
}

/// A JSON error answer in the server's shape.
fn error(status: u16, code: &str, message: &str, request_id: &str) -> Response {
    Response::new(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(json!({"code": code, "message": message, "requestId": request_id}).to_string())
}

/// A redirect to a target already checked by [`safe_target`].
fn redirect_to(status: u16, target: &str) -> Response {
    Response::new(status)
        .header("location", target)
        .header("cache-control", "no-store")
}

/// The redirect target a request names (`redirect` or `returnTo`), checked
/// against the allow-list; `/` when it names none.
fn target(cfg: &Config, req: &Request) -> Result<String, Response> {
    let head = req.head();
    match head
        .query_param("redirect")
        .or_else(|| head.query_param("returnTo"))
    {
        None => Ok("/".to_owned()),
        Some(t) => safe_target(&t, &cfg.redirect_origins).ok_or_else(|| {
            extism_pdk::warn!("authn: redirect target refused: {t:?}");
            error(
                400,
                "REDIRECT_REFUSED",
                "a redirect goes to a path on this server or to an origin in `allowedRedirectOrigins`",
                &head.request_id,
            )
        }),
    }
}

/// `/_/auth/api/logout`: ends the session, clears its cookie, and sends the
/// browser to the provider's logout (RP-initiated) or to the target.
fn logout(cfg: &Config, req: &Request) -> Response {
    let to = match target(cfg, req) {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let status = if req.method() == "POST" { 303 } else { 302 };
    let ended = match cookie(&req.head().headers, SESSION_COOKIE).map(session::delete) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            return error(
                500,
                "INTERNAL",
                &format!("ending the session: {e}"),
                &req.head().request_id,
            );
        }
        None => None,
    };
    let upstream = ended.and_then(|s| {
        let p = cfg.oidc.iter().find(|p| p.name == s.provider)?;
        oidc::end_session(p, s.id_token.as_deref())
    });
    redirect_to(status, upstream.as_deref().unwrap_or(&to))
        .header("set-cookie", session::cookie(None, 0))
}

/// `/_/auth/api/*`: the API. Anything else answers 404, and the host then
/// serves the plugin's `ui/` (the login page at `/_/auth/login`).
fn routes(req: Request) -> Result<Response, Error> {
    let cfg = settings()?;
    let id = req.head().request_id.clone();
    let mut providers: Vec<Value> = cfg
        .providers
        .iter()
        .map(|p| json!({"name": p.name, "type": "jwt", "issuer": p.verify.get("issuer")}))
        .collect();
    providers.extend(
        cfg.oidc
            .iter()
            .map(|p| json!({"name": p.name, "type": "oidc", "issuer": p.issuer})),
    );
    providers.extend(
        cfg.passwords
            .iter()
            .map(|p| json!({"name": p.name, "type": "email-password", "signUp": p.sign_up})),
    );
    providers.extend(
        cfg.api_keys
            .iter()
            .map(|p| json!({"name": p.name, "type": "apiKeys"})),
    );
    if req.method() == "POST"
        && cross_site(
            req.header("sec-fetch-site"),
            req.header("origin"),
            buntime_pdk::client().and_then(|c| c.host).as_deref(),
        )
    {
        return Ok(error(
            403,
            "CROSS_SITE",
            "a login, sign-up or logout posted from another site is refused",
            &id,
        ));
    }
    Ok(match (req.method(), req.path()) {
        ("GET", "/api/providers") => Response::json(&json!({ "providers": providers }))?,
        ("GET", "/api/session") => match req.header(IDENTITY) {
            Some(identity) => Response::new(200)
                .header("content-type", "application/json")
                .header("cache-control", "no-store")
                .body(identity.to_owned()),
            None => Response::new(401)
                .header("content-type", "application/json")
                .body(unauthorized_body(
                    "AUTHENTICATION_REQUIRED",
                    "no identity: log in, or send `Authorization: Bearer <token>`",
                    &id,
                )),
        },
        ("GET", "/api/login") => match target(cfg, &req) {
            Ok(to) => oidc::start(cfg, &req, to),
            Err(refused) => refused,
        },
        ("POST", "/api/login") => password::login(cfg, &req),
        ("POST", "/api/signup") => password::signup(cfg, &req),
        ("GET", "/api/callback") => oidc::callback(cfg, &req),
        ("GET" | "POST", "/api/logout") => logout(cfg, &req),
        _ => error(
            404,
            "NOT_FOUND",
            &format!("no route {} {}", req.method(), req.path()),
            &id,
        ),
    })
}
buntime_pdk::app!(routes);
