//! `crypto_jwt_verify`: a JWS-signed JWT checked by the host.
//!
//! Input (JSON, camelCase):
//!
//! | field | meaning |
//! |---|---|
//! | `token` | the compact JWS |
//! | `jwksUri` | where the provider's key set is (fetched within the `jwks` grant, cached) |
//! | `discovery` | `true`: find `jwks_uri` in `{issuer}/.well-known/openid-configuration`, whose `issuer` must equal `issuer` |
//! | `jwks` | a key set given inline |
//! | `secret` | a shared secret; the only way HS256/384/512 are accepted |
//! | `algorithms` | the accepted `alg`s (default: RS256/384/512, PS256/384/512, ES256/384, EdDSA, plus HS* when `secret` is set) |
//! | `issuer`, `audience` | required values of `iss` and `aud` (a string or a list: any one matches) |
//! | `leewaySeconds` | clock skew allowed on `exp` and `nbf` (default 60) |
//! | `requiredClaims` | claims that must be present (`exp` always is) |
//! | `cacheSeconds`, `refreshSeconds` | key-set lifetime (default 300) and the least time between refetches on an unknown `kid` (default 60, at least 1) |
//!
//! The answer is `{"valid": true, "header", "claims"}` or `{"valid": false,
//! "reason", "message"}` with `reason` one of `malformed`, `alg_none`,
//! `algorithm_not_allowed`, `unknown_kid`, `bad_signature`, `expired`,
//! `not_yet_valid`, `wrong_issuer`, `wrong_audience`, `missing_claim`. A
//! key set that cannot be fetched, or a URL outside the grant, is an error.
//!
//! `alg: none` is never accepted, and an HMAC `alg` is checked only against
//! the configured secret, never against a public key: a token signed with
//! HS256 using the provider's public key as the secret is refused.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::CryptoGrant;
use super::jwks::{Fetcher, Freshness, KeySet};
use super::verdicts::{KeySource, Verdict, Verdicts};
use crate::capabilities::Capability;
use crate::capabilities::GuestContext;
use crate::capabilities::args::{argument, parse, to_json};
use crate::wasm::{HostError, HostFunction, HostOutput, ResultEncoding};

#[path = "jwt_token.rs"]
mod token;
use token::Token;

/// Clock skew allowed on `exp` and `nbf` unless the request says otherwise.
const DEFAULT_LEEWAY: u64 = 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct VerifyReq {
    token: String,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    discovery: bool,
    #[serde(default)]
    jwks: Option<Value>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    audience: Option<OneOrMany>,
    #[serde(default)]
    leeway_seconds: Option<u64>,
    #[serde(default)]
    required_claims: Vec<String>,
    #[serde(default)]
    cache_seconds: Option<u64>,
    #[serde(default)]
    refresh_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A refused token: why (a stable word) and a sentence for the log.
#[derive(Debug)]
pub(super) struct Refusal {
    reason: &'static str,
    message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

/// The `crypto_jwt_verify` host function. A request answered before for a
/// token that still holds is answered from [`Verdicts`] without decoding
/// anything. A token whose keys are at hand (a secret, an inline key set,
/// or a fetched one still fresh in the cache) is checked in the call
/// itself, with no future to run; only a key set or discovery document
/// that must be fetched first makes the call wait.
pub(super) fn function() -> HostFunction {
    HostFunction::new(
        "crypto_jwt_verify",
        Capability::CRYPTO,
        1,
        ResultEncoding::Envelope,
        |state, args| {
            let read = GuestContext::of(state).and_then(|cx| {
                let raw = argument(state, args[0])?;
                let now = jsonwebtoken::get_current_timestamp();
                Ok((question(&cx.host.crypto, raw, now)?, cx))
            });
            let (id, req, cx) = match read {
                Ok((Question::Ask { id, req }, cx)) => (id, req, cx),
                Ok((Question::Answered(answer), _)) => {
                    return Box::pin(std::future::ready(Ok(Some(answer))));
                }
                Err(e) => return Box::pin(std::future::ready(Err(e))),
            };
            let cache = &cx.host.crypto;
            if let Some(settled) = check_now(cache, &req) {
                return Box::pin(std::future::ready(
                    settled.and_then(|c| outcome(cache, id, &req, c)),
                ));
            }
            let fetcher = Fetcher {
                shared: state.shared.clone(),
                grant: state
                    .grants()
                    .get::<CryptoGrant>(Capability::CRYPTO)
                    .cloned()
                    .unwrap_or_default(),
                guest: state.guest_name().to_owned(),
            };
            Box::pin(async move {
                let cache = &cx.host.crypto;
                let checked = check(cache, Some(&fetcher), &req).await?;
                outcome(cache, id, &req, checked)
            })
        },
    )
}

/// A request read from the guest: answered from [`Verdicts`] already, or
/// to be checked (`id` is its hash, under which a valid answer is kept).
enum Question {
    Answered(Vec<u8>),
    Ask { id: [u8; 32], req: Box<VerifyReq> },
}

/// Reads the request `raw`, answering it from memory when an identical one
/// was answered before and the answer still holds at `now`.
fn question(cache: &super::JwksCache, raw: &[u8], now: u64) -> Result<Question, HostError> {
    let id = Verdicts::id(raw);
    if let Some(answer) = cache.verdicts.answer(cache, &id, now) {
        return Ok(Question::Answered(answer));
    }
    Ok(Question::Ask {
        id,
        req: Box::new(parse(raw)?),
    })
}

/// The answer for a checked token: written straight from its parts (no
/// map built per call), members in the order `json!` would write them.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Answer<'a> {
    Valid {
        claims: &'a Value,
        header: &'a Value,
        valid: bool,
    },
    Refused {
        message: String,
        reason: &'static str,
        valid: bool,
    },
}

/// The answer for a checked token; a valid one is remembered under `id`
/// (the request's hash) for the next identical request.
fn outcome(
    cache: &super::JwksCache,
    id: [u8; 32],
    req: &VerifyReq,
    checked: Result<Valid, Refusal>,
) -> HostOutput {
    let valid = match checked {
        Ok(valid) => valid,
        Err(r) => {
            return to_json(Answer::Refused {
                message: r.message,
                reason: r.reason,
                valid: false,
            });
        }
    };
    let answer = to_json(Answer::Valid {
        claims: &valid.claims,
        header: &valid.header,
        valid: true,
    })?;
    if let Some(bytes) = &answer {
        let keys = match (valid.generation, req.jwks.is_some()) {
            (Some(generation), false) => KeySource::Fetched {
                jwks_uri: req.jwks_uri.clone(),
                issuer: req.issuer.clone(),
                kid: valid.kid,
                fresh: freshness(req),
                generation,
            },
            _ => KeySource::InRequest,
        };
        let leeway = req.leeway_seconds.unwrap_or(DEFAULT_LEEWAY);
        if let Some(verdict) = Verdict::new(bytes, &valid.claims, leeway, keys) {
            cache.verdicts.insert(id, verdict);
        }
    }
    Ok(answer)
}

/// A token that passed every check.
struct Valid {
    header: Value,
    claims: Value,
    kid: Option<String>,
    /// The generation of the key set that verified it (`None`: a secret).
    generation: Option<u64>,
}

/// A check's outcome: the valid token, a refusal, or a host failure.
type Checked = Result<Result<Valid, Refusal>, HostError>;

/// Host errors (bad arguments, unreachable key sets) outside, refusals inside.
async fn check(cache: &super::JwksCache, fetcher: Option<&Fetcher>, req: &VerifyReq) -> Checked {
    let token = match Token::read(req)? {
        Ok(t) => t,
        Err(r) => return Ok(Err(r)),
    };
    let set = if token.needs_key_set() {
        Some(key_set(cache, fetcher, req, token.kid.as_deref()).await?)
    } else {
        None
    };
    Ok(token.verify(cache, req, set.as_deref()))
}

/// [`check`] when it needs nothing fetched; `None` when it does.
fn check_now(cache: &super::JwksCache, req: &VerifyReq) -> Option<Checked> {
    let token = match Token::read(req) {
        Ok(Ok(t)) => t,
        Ok(Err(r)) => return Some(Ok(Err(r))),
        Err(e) => return Some(Err(e)),
    };
    let set = if token.needs_key_set() {
        match key_set_at_hand(cache, req, token.kid.as_deref())? {
            Ok(set) => Some(set),
            Err(e) => return Some(Err(e)),
        }
    } else {
        None
    };
    Some(Ok(token.verify(cache, req, set.as_deref())))
}

/// How long cached key sets and discovery documents live, per the request.
fn freshness(req: &VerifyReq) -> Freshness {
    Freshness {
        max_age: Duration::from_secs(req.cache_seconds.unwrap_or(300).max(1)),
        refresh: Duration::from_secs(req.refresh_seconds.unwrap_or(60).max(1)),
    }
}

/// The key set the request names when nothing must be fetched for it: the
/// inline one, or a cached one [`key_set`] would use as it is.
fn key_set_at_hand(
    cache: &super::JwksCache,
    req: &VerifyReq,
    kid: Option<&str>,
) -> Option<Result<std::sync::Arc<KeySet>, HostError>> {
    if req.jwks.is_some() {
        return Some(inline_key_set(req));
    }
    let fresh = freshness(req);
    let uri = match (&req.jwks_uri, req.discovery, &req.issuer) {
        (Some(uri), _, _) => uri.clone(),
        (None, true, Some(issuer)) => cache.discovered(issuer, fresh)?,
        // No key source: `key_set` says what is wrong.
        _ => return None,
    };
    cache.cached_keys(&uri, kid, fresh).map(Ok)
}

fn inline_key_set(req: &VerifyReq) -> Result<std::sync::Arc<KeySet>, HostError> {
    let doc = req.jwks.as_ref().unwrap_or(&Value::Null);
    KeySet::parse(doc)
        .map(std::sync::Arc::new)
        .map_err(|e| HostError::invalid_argument(format!("`jwks`: {e}")))
}

/// The key set the request names: inline, at `jwksUri`, or by discovery.
async fn key_set(
    cache: &super::JwksCache,
    fetcher: Option<&Fetcher>,
    req: &VerifyReq,
    kid: Option<&str>,
) -> Result<std::sync::Arc<KeySet>, HostError> {
    if req.jwks.is_some() {
        return inline_key_set(req);
    }
    let fetcher =
        fetcher.ok_or_else(|| HostError::new("unavailable", "no outbound client to fetch keys"))?;
    let fresh = freshness(req);
    let uri = match (&req.jwks_uri, req.discovery, &req.issuer) {
        (Some(uri), _, _) => uri.clone(),
        (None, true, Some(issuer)) => cache.discover(fetcher, issuer, fresh).await?,
        (None, true, None) => {
            return Err(HostError::invalid_argument(
                "`discovery` needs `issuer`: the provider's discovery document is found from it",
            ));
        }
        (None, false, _) => {
            return Err(HostError::invalid_argument(
                "no key source: give `jwksUri`, `discovery` with `issuer`, `jwks`, or `secret` for HS256",
            ));
        }
    };
    cache.keys(fetcher, &uri, kid, fresh).await
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
