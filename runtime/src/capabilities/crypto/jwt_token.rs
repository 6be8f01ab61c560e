//! Checking one token (`jwt.rs`): its header against the accepted
//! algorithms, then its signature against the keys (a secret or a key set)
//! and its claims, with `jsonwebtoken`'s errors turned into refusals.

use std::str::FromStr;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::super::jwks::{KeyKind, KeySet, VerifiedTokens};
use super::{DEFAULT_LEEWAY, Refusal, Valid, VerifyReq, refuse};
use crate::wasm::HostError;

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

/// A token's header, read and checked against the accepted algorithms.
pub(super) struct Token {
    header: Value,
    alg: Algorithm,
    pub(super) kid: Option<String>,
}

impl Token {
    pub(super) fn read(req: &VerifyReq) -> Result<Result<Token, Refusal>, HostError> {
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
        let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
        Ok(Ok(Token { header, alg, kid }))
    }

    /// Whether its keys come from a key set (else from the secret).
    pub(super) fn needs_key_set(&self) -> bool {
        !HMAC.contains(&self.alg)
    }

    /// Checks the signature (unless it verified before against the same
    /// keys) and the claims, against `set` or the request's secret.
    pub(super) fn verify(
        self,
        cache: &super::super::JwksCache,
        req: &VerifyReq,
        set: Option<&KeySet>,
    ) -> Result<Valid, Refusal> {
        let (alg, kid) = (self.alg, self.kid.as_deref());
        // The keys, and what identifies them for the verified-token cache.
        let secret_key;
        let (keys, key_id): (Vec<&DecodingKey>, Vec<u8>) = match set {
            // `allowed` holds HMAC algorithms only when a secret is configured.
            None => {
                let secret = req.secret.as_deref().unwrap_or_default();
                secret_key = DecodingKey::from_secret(secret.as_bytes());
                (vec![&secret_key], secret.as_bytes().to_vec())
            }
            Some(set) => {
                let want = kind_of(alg);
                let keys: Vec<&DecodingKey> = set
                    .keys
                    .iter()
                    .filter(|k| Some(k.kind) == want)
                    .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
                    .map(|k| &k.key)
                    .collect();
                if keys.is_empty() {
                    let alg_text = self.header["alg"].as_str().unwrap_or_default();
                    return Err(refuse(
                        "unknown_kid",
                        match kid {
                            Some(kid) => {
                                format!(
                                    "no {alg_text} key with id `{kid}` in the provider's key set"
                                )
                            }
                            None => format!("no {alg_text} key in the provider's key set"),
                        },
                    ));
                }
                (keys, set.generation.to_le_bytes().to_vec())
            }
        };

        let id = VerifiedTokens::id(&req.token, &key_id);
        let mut validation = validation(req, alg);
        let verified_before = cache.verified.contains(&id);
        if verified_before {
            // The signature verified against these very keys: check the claims.
            validation.insecure_disable_signature_validation();
        }
        let mut last = refuse("bad_signature", "the signature does not verify");
        for key in keys {
            match jsonwebtoken::decode::<Value>(&req.token, key, &validation) {
                Ok(data) => {
                    if let Some(missing) = req
                        .required_claims
                        .iter()
                        .find(|c| data.claims.get(c.as_str()).is_none_or(Value::is_null))
                    {
                        return Err(refuse(
                            "missing_claim",
                            format!("the token has no `{missing}` claim"),
                        ));
                    }
                    if !verified_before {
                        cache.verified.insert(id);
                    }
                    return Ok(Valid {
                        header: self.header,
                        claims: data.claims,
                        kid: self.kid,
                        generation: set.map(|s| s.generation),
                    });
                }
                Err(e) => {
                    last = refusal(e.kind());
                    if last.reason != "bad_signature" || verified_before {
                        break;
                    }
                }
            }
        }
        Err(last)
    }
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
    v.leeway = req.leeway_seconds.unwrap_or(DEFAULT_LEEWAY);
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
