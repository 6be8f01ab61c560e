//! Browser login with an `oidc` provider: authorization code with PKCE
//! (S256), `state` and `nonce`; the ID token checked by the host
//! (`crypto_jwt_verify`); the code exchanged through the `http` capability.
//!
//! A login in progress is a `state` entry keyed by its `state` value (ten
//! minutes, deleted when used: a replayed callback finds nothing) and a
//! cookie holding the same value, so only the browser that started a login
//! can finish it (no login CSRF).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use buntime_pdk::plugin::state;
use buntime_pdk::{Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::host::{fetch_json, jwt_verify, random, sha256};
use super::{error, redirect_to, session};
use crate::config::Config;
use crate::oidc::OidcProvider;
use crate::redirect::{FLOW_COOKIE, cookie, encode_component, set_cookie, with_query};

/// How long a login may take at the provider.
const FLOW_SECONDS: u64 = 600;
/// Where the flow cookie is sent: only to the callback.
const CALLBACK_PATH: &str = "/_/auth/api/callback";

/// A login in progress.
#[derive(Serialize, Deserialize)]
struct Flow {
    provider: String,
    nonce: String,
    verifier: String,
    redirect_uri: String,
    return_to: String,
}

/// The provider's discovery document, read through `http` and kept per
/// instance for the provider's `cacheSeconds`; its `issuer` must be the
/// configured one.
pub(super) fn discovery(p: &OidcProvider) -> Result<Value, String> {
    static CACHE: Mutex<BTreeMap<String, (SystemTime, Value)>> = Mutex::new(BTreeMap::new());
    let ttl = Duration::from_secs(
        p.id_token
            .verify
            .get("cacheSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(300),
    );
    let now = SystemTime::now();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, doc)) = cache.get(&p.issuer)
        && now.duration_since(*at).is_ok_and(|age| age < ttl)
    {
        return Ok(doc.clone());
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        p.issuer.trim_end_matches('/')
    );
    let (status, doc) = fetch_json(&url, None)?;
    if status != 200 {
        return Err(format!("`{url}` answered {status}"));
    }
    if doc["issuer"].as_str() != Some(p.issuer.as_str()) {
        return Err(format!(
            "the discovery document at `{url}` names issuer {}, not `{}`; configure the issuer exactly as the provider states it",
            doc["issuer"], p.issuer
        ));
    }
    for key in ["authorization_endpoint", "token_endpoint"] {
        if !doc[key].as_str().is_some_and(|u| u.starts_with("http")) {
            return Err(format!("the discovery document at `{url}` has no `{key}`"));
        }
    }
    cache.insert(p.issuer.clone(), (now, doc.clone()));
    Ok(doc)
}

/// The provider a login names (`?provider=`), or the only `oidc` one.
fn provider<'a>(cfg: &'a Config, name: Option<&str>) -> Option<&'a OidcProvider> {
    match name {
        Some(n) => cfg.oidc.iter().find(|p| p.name == n),
        None if cfg.oidc.len() == 1 => cfg.oidc.first(),
        None => None,
    }
}

/// `GET /_/auth/api/login?provider=&redirect=`: sends the browser to the
/// provider's authorization endpoint.
pub(super) fn start(cfg: &Config, req: &Request, return_to: String) -> Response {
    let id = &req.head().request_id;
    let name = req.head().query_param("provider");
    let Some(p) = provider(cfg, name.as_deref()) else {
        return error(
            404,
            "UNKNOWN_PROVIDER",
            "name an `oidc` provider with `?provider=` (see /_/auth/api/providers)",
            id,
        );
    };
    // Each start keeps a login in `state` for ten minutes: one address
    // cannot fill the namespace with them.
    let address = buntime_pdk::client().map_or_else(|| "unknown".to_owned(), |c| c.address);
    match state::take(
        &format!("start:addr:{address}"),
        cfg.login_starts_per_minute,
        Duration::from_secs(60),
        1,
    ) {
        Ok(t) if !t.allowed => {
            return error(
                429,
                "RATE_LIMITED",
                "too many logins started from this address; retry in a minute",
                id,
            )
            .header(
                "retry-after",
                t.retry_after_ms.div_ceil(1000).max(1).to_string(),
            );
        }
        Ok(_) => {}
        Err(e) => return error(500, "INTERNAL", &format!("rate limit: {e}"), id),
    }
    let doc = match discovery(p) {
        Ok(d) => d,
        Err(e) => {
            extism_pdk::warn!("authn: provider `{}` unavailable: {e}", p.name);
            return error(
                502,
                "PROVIDER_UNAVAILABLE",
                &format!("provider `{}` cannot be reached: {e}", p.name),
                id,
            );
        }
    };
    let redirect_uri = match &p.redirect_uri {
        Some(u) => u.clone(),
        None => match buntime_pdk::client().and_then(|c| c.host.map(|h| (c.scheme, h))) {
            Some((scheme, host)) => format!("{scheme}://{host}{CALLBACK_PATH}"),
            None => {
                return error(
                    500,
                    "NO_REDIRECT_URI",
                    "the request named no host: set the provider's `redirectUri`",
                    id,
                );
            }
        },
    };
    let made = (|| {
        let flow_state = random(32)?;
        let nonce = random(32)?;
        let verifier = random(32)?;
        let challenge = sha256(&verifier)?["base64url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let flow = Flow {
            provider: p.name.clone(),
            nonce: nonce.clone(),
            verifier,
            redirect_uri: redirect_uri.clone(),
            return_to,
        };
        state::set(
            &format!("flow:{flow_state}"),
            &flow,
            Some(Duration::from_secs(FLOW_SECONDS)),
        )?;
        Ok::<_, buntime_pdk::abi::HostErrorBody>((flow_state, nonce, challenge))
    })();
    let (flow_state, nonce, challenge) = match made {
        Ok(v) => v,
        Err(e) => return error(500, "INTERNAL", &format!("starting the login: {e}"), id),
    };
    let endpoint = doc["authorization_endpoint"].as_str().unwrap_or_default();
    let location = with_query(
        endpoint,
        &[
            ("response_type", "code"),
            ("client_id", &p.client_id),
            ("redirect_uri", &redirect_uri),
            ("scope", &p.scopes),
            ("state", &flow_state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    Response::new(302)
        .header("location", location)
        .header("cache-control", "no-store")
        .header(
            "set-cookie",
            set_cookie(
                FLOW_COOKIE,
                &flow_state,
                CALLBACK_PATH,
                FLOW_SECONDS,
                session::https(),
            ),
        )
}

/// `GET /_/auth/api/callback?code=&state=`: checks the state against the
/// browser's flow cookie, takes the flow (once), exchanges the code, checks
/// the ID token and its nonce, and starts a session.
pub(super) fn callback(cfg: &Config, req: &Request) -> Response {
    let head = req.head();
    let id = &head.request_id;
    let clear = set_cookie(FLOW_COOKIE, "", CALLBACK_PATH, 0, session::https());
    let refuse = |status: u16, code: &str, why: String| {
        extism_pdk::warn!("authn: login callback refused ({code}): {why}");
        error(status, code, &why, id).header("set-cookie", clear.clone())
    };
    if let Some(e) = head.query_param("error") {
        let detail = head.query_param("error_description").unwrap_or_default();
        return refuse(
            401,
            "LOGIN_FAILED",
            format!("the provider answered `{e}`: {detail}"),
        );
    }
    let (Some(code), Some(flow_state)) = (head.query_param("code"), head.query_param("state"))
    else {
        return refuse(
            400,
            "STATE_INVALID",
            "the callback needs `code` and `state`".into(),
        );
    };
    // The state must be the one this browser's login started with.
    if cookie(&head.headers, FLOW_COOKIE) != Some(flow_state.as_str()) {
        return refuse(
            400,
            "STATE_INVALID",
            "the `state` is not the one this browser's login started with".into(),
        );
    }
    let key = format!("flow:{flow_state}");
    let flow =
        match state::get::<Flow>(&key) {
            Ok(Some((flow, _))) => flow,
            Ok(None) => return refuse(
                400,
                "STATE_INVALID",
                "no login in progress for this `state` (used already, or older than ten minutes)"
                    .into(),
            ),
            Err(e) => return refuse(500, "INTERNAL", e.to_string()),
        };
    // Deleting is the claim: of two concurrent callbacks, one wins.
    match state::delete(&key) {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                400,
                "STATE_INVALID",
                "this login was finished already".into(),
            );
        }
        Err(e) => return refuse(500, "INTERNAL", e.to_string()),
    }
    let Some(p) = cfg.oidc.iter().find(|p| p.name == flow.provider) else {
        return refuse(
            400,
            "STATE_INVALID",
            format!("provider `{}` is no longer configured", flow.provider),
        );
    };
    // RFC 9207: a provider that names itself must name the right issuer,
    // and one that says it always does must have (a mix-up otherwise).
    let promised = discovery(p)
        .is_ok_and(|d| d["authorization_response_iss_parameter_supported"] == json!(true));
    match head.query_param("iss") {
        Some(iss) if iss != p.issuer => {
            return refuse(
                400,
                "STATE_INVALID",
                format!("the callback names issuer `{iss}`, not `{}`", p.issuer),
            );
        }
        None if promised => {
            return refuse(
                400,
                "STATE_INVALID",
                "the callback names no issuer (`iss`), though the provider sends it".into(),
            );
        }
        _ => {}
    }
    let identity = match exchange(p, &flow, &code) {
        Ok(v) => v,
        Err((status, code, why)) => return refuse(status, code, why),
    };
    let (identity, id_token) = identity;
    session::end_previous(&head.headers);
    match session::create(&p.name, &identity, Some(&id_token), cfg.session_seconds) {
        Ok(sid) => redirect_to(302, &flow.return_to)
            .header(
                "set-cookie",
                session::cookie(Some(&sid), cfg.session_seconds),
            )
            .header("set-cookie", clear.clone()),
        Err(e) => refuse(500, "INTERNAL", format!("storing the session: {e}")),
    }
}

type Failure = (u16, &'static str, String);

/// The code for tokens at the token endpoint; the identity of the verified
/// ID token, and the token itself.
fn exchange(p: &OidcProvider, flow: &Flow, code: &str) -> Result<(Value, String), Failure> {
    let unavailable = |e: String| (502, "PROVIDER_UNAVAILABLE", e);
    let doc = discovery(p).map_err(unavailable)?;
    let endpoint = doc["token_endpoint"].as_str().unwrap_or_default();
    let mut body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
        encode_component(code),
        encode_component(&flow.redirect_uri),
        encode_component(&flow.verifier),
    );
    // RFC 6749 §2.3.1: client_secret_basic, each part form-encoded.
    let auth = match &p.client_secret {
        Some(secret) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                encode_component(&p.client_id),
                encode_component(secret)
            ))
        )),
        None => {
            body.push_str(&format!("&client_id={}", encode_component(&p.client_id)));
            None
        }
    };
    let (status, tokens) = fetch_json(endpoint, Some((&body, auth))).map_err(unavailable)?;
    if status != 200 {
        return Err((
            401,
            "LOGIN_FAILED",
            format!(
                "the token endpoint answered {status}: {} {}",
                tokens["error"], tokens["error_description"]
            ),
        ));
    }
    let Some(id_token) = tokens["id_token"].as_str() else {
        return Err((
            401,
            "LOGIN_FAILED",
            "the token endpoint sent no `id_token` (is `openid` among the scopes?)".into(),
        ));
    };
    let mut verify = p.id_token.verify.clone();
    verify.insert("token".into(), json!(id_token));
    let answer = jwt_verify(&Value::Object(verify))
        .map_err(|e| unavailable(format!("provider `{}`: {e}", p.name)))?;
    if answer["valid"] != json!(true) {
        return Err((
            401,
            "TOKEN_INVALID",
            format!(
                "the ID token was refused ({}): {}",
                answer["reason"].as_str().unwrap_or("invalid"),
                answer["message"].as_str().unwrap_or_default()
            ),
        ));
    }
    let claims = &answer["claims"];
    if claims["nonce"].as_str() != Some(flow.nonce.as_str()) {
        return Err((
            401,
            "TOKEN_INVALID",
            "the ID token's `nonce` is not this login's".into(),
        ));
    }
    // OpenID Connect Core §3.1.3.7: with several audiences, `azp` must be us.
    if claims["aud"].as_array().is_some_and(|a| a.len() > 1)
        && claims["azp"].as_str() != Some(p.client_id.as_str())
    {
        return Err((
            401,
            "TOKEN_INVALID",
            "the ID token has several audiences and `azp` is not this client".into(),
        ));
    }
    Ok((p.id_token.identity(claims), id_token.to_owned()))
}

/// Where a logout of a session made by `p` goes: the provider's
/// `end_session_endpoint` (RP-initiated logout) when it has one.
pub(super) fn end_session(p: &OidcProvider, id_token: Option<&str>) -> Option<String> {
    let doc = discovery(p)
        .inspect_err(|e| extism_pdk::warn!("authn: provider `{}`: {e}", p.name))
        .ok()?;
    let endpoint = doc["end_session_endpoint"].as_str()?;
    let mut params = vec![("client_id", p.client_id.as_str())];
    if let Some(t) = id_token {
        params.push(("id_token_hint", t));
    }
    if let Some(u) = &p.post_logout_redirect_uri {
        params.push(("post_logout_redirect_uri", u));
    }
    Some(with_query(endpoint, &params))
}
