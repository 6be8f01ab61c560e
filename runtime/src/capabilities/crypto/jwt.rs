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

use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jwks::{Fetcher, Freshness, KeyKind, KeySet};
use super::{CryptoGrant, answer, parse};
use crate::capabilities::Capability;
use crate::capabilities::GuestContext;
use crate::wasm::{HostError, HostFunction, HostOutput, ResultEncoding};

/// The asymmetric algorithms accepted by default.
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

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

/// The `crypto_jwt_verify` host function.
pub(super) fn function() -> HostFunction {
    HostFunction::new(
        "crypto_jwt_verify",
        Capability::CRYPTO,
        1,
        ResultEncoding::Envelope,
        |state, args| {
            let prepared = (|| {
                let cx = GuestContext::of(state)?;
                let req: VerifyReq = parse(super::argument(state, args[0])?)?;
                let grant = state
                    .grants()
                    .get::<CryptoGrant>(Capability::CRYPTO)
                    .cloned()
                    .unwrap_or_default();
                let fetcher = Fetcher {
                    shared: state.shared.clone(),
                    grant,
                    guest: state.guest_name().to_owned(),
                };
                Ok::<_, HostError>((cx, req, fetcher))
            })();
            Box::pin(async move {
                let (cx, req, fetcher) = prepared?;
                verify(&cx.host.crypto, &fetcher, req).await
            })
        },
    )
}

async fn verify(cache: &super::JwksCache, fetcher: &Fetcher, req: VerifyReq) -> HostOutput {
    let result = match check(cache, Some(fetcher), &req).await? {
        Ok((header, claims)) => json!({"valid": true, "header": header, "claims": claims}),
        Err(r) => json!({"valid": false, "reason": r.reason, "message": r.message}),
    };
    answer(result)
}

/// Host errors (bad arguments, unreachable key sets) outside, refusals inside.
async fn check(
    cache: &super::JwksCache,
    fetcher: Option<&Fetcher>,
    req: &VerifyReq,
) -> Result<Result<(Value, Value), Refusal>, HostError> {
    let allowed = allowed_algorithms(req)?;
    let header = match header(&req.token) {
        Ok(h) => h,
        Err(r) => return Ok(Err(r)),
    };
    let alg_text = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg_text.eq_ignore_ascii_case("none") || alg_text.is_empty() {
        return Ok(Err(refuse(
            "alg_none",
            "the token is unsigned (`alg: none`), which is never accepted",
        )));
    }
    let Some(alg) = Algorithm::from_str(alg_text)
        .ok()
        .filter(|a| allowed.contains(a))
    else {
        return Ok(Err(refuse(
            "algorithm_not_allowed",
            format!("the token's algorithm `{alg_text}` is not accepted here"),
        )));
    };
    let kid = header.get("kid").and_then(Value::as_str);

    // The keys, and what identifies them for the verified-token cache.
    let (keys, key_id): (Vec<DecodingKey>, Vec<u8>) = if HMAC.contains(&alg) {
        // `allowed` holds HMAC algorithms only when a secret is configured.
        let secret = req.secret.as_deref().unwrap_or_default();
        (
            vec![DecodingKey::from_secret(secret.as_bytes())],
            secret.as_bytes().to_vec(),
        )
    } else {
        let set = key_set(cache, fetcher, req, kid).await?;
        let want = kind_of(alg);
        let keys: Vec<DecodingKey> = set
            .keys
            .iter()
            .filter(|k| Some(k.kind) == want)
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .map(|k| k.key.clone())
            .collect();
        if keys.is_empty() {
            return Ok(Err(refuse(
                "unknown_kid",
                match kid {
                    Some(kid) => {
                        format!("no {alg_text} key with id `{kid}` in the provider's key set")
                    }
                    None => format!("no {alg_text} key in the provider's key set"),
                },
            )));
        }
        (keys, set.generation.to_le_bytes().to_vec())
    };

    let id = super::jwks::VerifiedTokens::id(&req.token, &key_id);
    let mut validation = validation(req, alg);
    let verified_before = cache.verified.contains(&id);
    if verified_before {
        // The signature verified against these very keys: check the claims.
        validation.insecure_disable_signature_validation();
    }
    let mut last = refuse("bad_signature", "the signature does not verify");
    for key in &keys {
        match jsonwebtoken::decode::<Value>(&req.token, key, &validation) {
            Ok(data) => {
                if let Some(missing) = req
                    .required_claims
                    .iter()
                    .find(|c| data.claims.get(c.as_str()).is_none_or(Value::is_null))
                {
                    return Ok(Err(refuse(
                        "missing_claim",
                        format!("the token has no `{missing}` claim"),
                    )));
                }
                if !verified_before {
                    cache.verified.insert(id);
                }
                return Ok(Ok((header, data.claims)));
            }
            Err(e) => {
                last = refusal(e.kind());
                if last.reason != "bad_signature" || verified_before {
                    break;
                }
            }
        }
    }
    Ok(Err(last))
}

/// The key set the request names: inline, at `jwksUri`, or by discovery.
async fn key_set(
    cache: &super::JwksCache,
    fetcher: Option<&Fetcher>,
    req: &VerifyReq,
    kid: Option<&str>,
) -> Result<std::sync::Arc<KeySet>, HostError> {
    if let Some(doc) = &req.jwks {
        return KeySet::parse(doc)
            .map(std::sync::Arc::new)
            .map_err(|e| HostError::invalid_argument(format!("`jwks`: {e}")));
    }
    let fetcher =
        fetcher.ok_or_else(|| HostError::new("unavailable", "no outbound client to fetch keys"))?;
    let fresh = Freshness {
        max_age: Duration::from_secs(req.cache_seconds.unwrap_or(300).max(1)),
        refresh: Duration::from_secs(req.refresh_seconds.unwrap_or(60).max(1)),
    };
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

fn allowed_algorithms(req: &VerifyReq) -> Result<Vec<Algorithm>, HostError> {
    let has_keys = req.jwks_uri.is_some() || req.discovery || req.jwks.is_some();
    let mut out = Vec::new();
    match &req.algorithms {
        Some(names) => {
            for name in names {
                let alg = Algorithm::from_str(name).map_err(|_| {
                    HostError::invalid_argument(format!(
                        "unknown algorithm `{name}` in `algorithms` (known: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512)"
                    ))
                })?;
                if HMAC.contains(&alg) && req.secret.is_none() {
                    return Err(HostError::invalid_argument(format!(
                        "`{name}` needs `secret`: HMAC tokens are checked only against a configured secret"
                    )));
                }
                out.push(alg);
            }
        }
        None => {
            if has_keys {
                out.extend_from_slice(ASYMMETRIC);
            }
            if req.secret.is_some() {
                out.extend_from_slice(HMAC);
            }
        }
    }
    Ok(out)
}

/// The token's header, decoded without trusting anything in it yet.
fn header(token: &str) -> Result<Value, Refusal> {
    let malformed = |m: &str| refuse("malformed", format!("the token is not a compact JWS: {m}"));
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "it must be three base64url parts separated by dots",
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| malformed("the header is not base64url"))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed("the header is not JSON"))?;
    if !value.is_object() {
        return Err(malformed("the header is not a JSON object"));
    }
    Ok(value)
}

fn kind_of(alg: Algorithm) -> Option<KeyKind> {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Some(KeyKind::Rsa),
        Algorithm::ES256 => Some(KeyKind::P256),
        Algorithm::ES384 => Some(KeyKind::P384),
        Algorithm::EdDSA => Some(KeyKind::Ed25519),
        _ => None,
    }
}

fn validation(req: &VerifyReq, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = req.leeway_seconds.unwrap_or(60);
    v.validate_nbf = true;
    let mut required: Vec<&str> = vec!["exp"];
    for c in &req.required_claims {
        if matches!(c.as_str(), "nbf" | "sub" | "iss" | "aud") {
            required.push(c);
        }
    }
    if let Some(issuer) = &req.issuer {
        v.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &req.audience {
        Some(aud) => {
            v.set_audience(&aud.list());
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

fn refusal(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::InvalidSignature => refuse("bad_signature", "the signature does not verify"),
        ErrorKind::ExpiredSignature => refuse("expired", "the token has expired (`exp`)"),
        ErrorKind::ImmatureSignature => {
            refuse("not_yet_valid", "the token is not valid yet (`nbf`)")
        }
        ErrorKind::InvalidIssuer => refuse(
            "wrong_issuer",
            "the token's issuer (`iss`) is not the configured one",
        ),
        ErrorKind::InvalidAudience => refuse(
            "wrong_audience",
            "the token's audience (`aud`) is not one of the configured ones",
        ),
        ErrorKind::MissingRequiredClaim(c) => {
            refuse("missing_claim", format!("the token has no `{c}` claim"))
        }
        ErrorKind::InvalidAlgorithm => refuse(
            "algorithm_not_allowed",
            "the token's algorithm does not fit the key",
        ),
        other => refuse("malformed", format!("the token cannot be read: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use ring::signature::{self, KeyPair};

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn request(token: &str, jwks: Value) -> VerifyReq {
        serde_json::from_value(json!({
            "token": token, "jwks": jwks, "issuer": "https://idp", "audience": "api"
        }))
        .unwrap()
    }

    async fn reason(req: &VerifyReq) -> Result<Value, &'static str> {
        match check(&super::super::JwksCache::default(), None, req)
            .await
            .unwrap()
        {
            Ok((_, claims)) => Ok(claims),
            Err(r) => Err(r.reason),
        }
    }

    fn claims() -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({"sub": "u", "iss": "https://idp", "aud": "api", "exp": now + 60})
    }

    #[tokio::test]
    async fn ed25519_and_p256_keys_verify_their_algorithms_only() {
        let rng = ring::rand::SystemRandom::new();
        let ed = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed_pub = signature::Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
        let p256 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let p256_pub = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            p256.as_ref(),
            &rng,
        )
        .unwrap();
        let point = p256_pub.public_key().as_ref();
        let jwks = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(ed_pub.public_key().as_ref())},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&point[1..33]), "y": b64(&point[33..])},
        ]});

        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("ed".into());
        let token = encode(&header, &claims(), &EncodingKey::from_ed_der(ed.as_ref())).unwrap();
        assert_eq!(
            reason(&request(&token, jwks.clone())).await.unwrap()["sub"],
            "u"
        );

        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec".into());
        let token = encode(&header, &claims(), &EncodingKey::from_ec_der(p256.as_ref())).unwrap();
        assert_eq!(
            reason(&request(&token, jwks.clone())).await.unwrap()["sub"],
            "u"
        );

        // An ES256 token naming the Ed25519 key: no key of that type.
        header.kid = Some("ed".into());
        let token = encode(&header, &claims(), &EncodingKey::from_ec_der(p256.as_ref())).unwrap();
        assert_eq!(
            reason(&request(&token, jwks.clone())).await,
            Err("unknown_kid")
        );

        // HS256 is refused without a secret, whatever the key set holds.
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        assert_eq!(
            reason(&request(&token, jwks)).await,
            Err("algorithm_not_allowed")
        );
    }

    #[tokio::test]
    async fn hs256_with_a_configured_secret() {
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"s3cret-s3cret-s3cret"),
        )
        .unwrap();
        let req = |secret: &str| -> VerifyReq {
            serde_json::from_value(
                json!({"token": token, "secret": secret, "audience": ["x", "api"]}),
            )
            .unwrap()
        };
        assert!(reason(&req("s3cret-s3cret-s3cret")).await.is_ok());
        assert_eq!(reason(&req("other")).await, Err("bad_signature"));
        let missing: VerifyReq = serde_json::from_value(json!({
            "token": token, "secret": "s3cret-s3cret-s3cret", "requiredClaims": ["email"]
        }))
        .unwrap();
        assert_eq!(reason(&missing).await, Err("missing_claim"));
    }

    #[tokio::test]
    async fn a_verified_token_skips_only_its_signature_check_and_only_for_its_keys() {
        let cache = super::super::JwksCache::default();
        let secret = "s3cret-s3cret-s3cret";
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let ask = |token: &str, secret: &str, audience: &str| {
            let req: VerifyReq = serde_json::from_value(
                json!({"token": token, "secret": secret, "audience": audience}),
            )
            .unwrap();
            let cache = &cache;
            async move {
                match check(cache, None, &req).await.unwrap() {
                    Ok(_) => Ok(()),
                    Err(r) => Err(r.reason),
                }
            }
        };
        let hits = || {
            cache
                .verified
                .hits
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        assert_eq!(ask(&token, secret, "api").await, Ok(()));
        assert_eq!(hits(), 0);
        assert_eq!(ask(&token, secret, "api").await, Ok(()));
        assert_eq!(hits(), 1, "the second use skips the signature check");
        // The claims are still checked on a remembered token.
        assert_eq!(ask(&token, secret, "other").await, Err("wrong_audience"));
        // Other keys do not inherit the verification.
        assert_eq!(
            ask(&token, "another-secret", "api").await,
            Err("bad_signature")
        );
        // A changed signature is another token.
        let mut tampered = token.clone();
        let last = if tampered.ends_with('A') { 'B' } else { 'A' };
        tampered.pop();
        tampered.push(last);
        assert_eq!(ask(&tampered, secret, "api").await, Err("bad_signature"));
        assert_eq!(hits(), 2);
    }
}
