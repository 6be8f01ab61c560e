//! `crypto`: hashing, MACs, random bytes, password hashes and JWS
//! verification done by the host for guests.
//!
//! Asymmetric signature checks and memory-hard password hashes are slow in
//! a WASM guest and easy to get subtly wrong; the host does them with
//! well-kept crates (`jsonwebtoken` over `ring`, `argon2`, `hmac`, `sha2`,
//! `subtle`). Grant: `"crypto": true`, or `{"jwks": [URL patterns],
//! "privateNetworks"?: bool}` to also let the host fetch JSON Web Key Sets
//! and OpenID discovery documents from those URLs (the `http` grant's
//! patterns and private-network rules, see [`super::http`]).
//!
//! Binary values travel as text: `encoding` says how `data` and `key` are
//! written (`utf8`, the default, `base64`, `base64url` or `hex`); digests
//! come back as `{"hex", "base64url"}`.
//!
//! | function | input | result |
//! |---|---|---|
//! | `crypto_random` | `{"bytes"}` (1 to 1024) | `{"hex", "base64url"}` |
//! | `crypto_sha256` | `{"data", "encoding"?}` | `{"hex", "base64url"}` |
//! | `crypto_hmac` | `{"key", "data", "alg"?: "sha256"\|"sha384"\|"sha512", "encoding"?}` | `{"hex", "base64url"}` |
//! | `crypto_compare` | `{"a", "b"}` | `true` when equal, in time independent of where they differ |
//! | `crypto_password_hash` | `{"password"}` | an argon2id PHC string |
//! | `crypto_password_verify` | `{"password", "hash"}` | `true` or `false` |
//! | `crypto_jwt_verify` | see [`jwt`] | `{"valid": true, "header", "claims"}` or `{"valid": false, "reason", "message"}` |

mod jwks;
mod jwt;
mod verdicts;

use std::sync::Arc;

use base64::Engine as _;
use hmac::Mac;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;

pub use jwks::JwksCache;

use super::args::{argument, parse, to_json};
use super::{Capability, CapabilitySpec, GrantContext, GrantValue, string_list};
use crate::grants::{HttpGrant, UrlPattern};
use crate::wasm::{HostError, HostFunction, HostOutput, HostState, ResultEncoding};

/// Most random bytes one call returns.
const MAX_RANDOM_BYTES: usize = 1024;
/// Longest password accepted (argon2 hashes any length; this bounds the work).
const MAX_PASSWORD_BYTES: usize = 4096;

/// The `crypto` capability.
pub(super) struct CryptoSpec;

/// The parsed `crypto` grant.
#[derive(Debug, Clone, Default)]
pub struct CryptoGrant {
    /// Where key sets and discovery documents may be fetched from.
    pub jwks: HttpGrant,
}

impl CapabilitySpec for CryptoSpec {
    fn capability(&self) -> Capability {
        Capability::CRYPTO
    }

    fn syntax(&self) -> &'static str {
        "\"crypto\": true or {\"jwks\": [\"https://idp.example.com\"], \"privateNetworks\"?: true}"
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        match declared {
            Value::Bool(true) => Ok(Some(Arc::new(CryptoGrant::default()))),
            Value::Bool(false) => Ok(None),
            Value::Object(map) => {
                let mut grant = CryptoGrant::default();
                for (key, value) in map {
                    match key.as_str() {
                        "jwks" => {
                            grant.jwks.patterns = string_list(value, "`jwks`")?
                                .iter()
                                .map(|p| UrlPattern::parse(p).map_err(|e| e.to_string()))
                                .collect::<Result<_, _>>()?;
                        }
                        "privateNetworks" => {
                            grant.jwks.private_networks = value.as_bool().ok_or_else(|| {
                                format!("`privateNetworks` must be true or false, found {value}")
                            })?;
                        }
                        other => {
                            return Err(format!(
                                "unknown key `{other}` (allowed: `jwks`, `privateNetworks`)"
                            ));
                        }
                    }
                }
                Ok(Some(Arc::new(grant)))
            }
            other => Err(format!("expected true, false or an object, found {other}")),
        }
    }

    fn host_functions(&self) -> Vec<HostFunction> {
        vec![
            sync("crypto_random", random),
            sync("crypto_sha256", sha256),
            sync("crypto_hmac", hmac_fn),
            sync("crypto_compare", compare),
            blocking("crypto_password_hash", password_hash),
            blocking("crypto_password_verify", password_verify),
            jwt::function(),
        ]
    }
}

/// A `crypto_*` function that answers at once from its JSON argument.
fn sync(name: &'static str, op: fn(&[u8]) -> HostOutput) -> HostFunction {
    HostFunction::new_sync(
        name,
        Capability::CRYPTO,
        1,
        ResultEncoding::Envelope,
        move |state: &mut HostState, args| op(argument(state, args[0])?),
    )
}

/// A `crypto_*` function whose work (argon2) runs on the blocking pool, never
/// on an async worker.
fn blocking(name: &'static str, op: fn(Vec<u8>) -> HostOutput) -> HostFunction {
    HostFunction::new(
        name,
        Capability::CRYPTO,
        1,
        ResultEncoding::Envelope,
        move |state, args| {
            let input = argument(state, args[0]).map(<[u8]>::to_vec);
            Box::pin(async move {
                let input = input?;
                tokio::task::spawn_blocking(move || op(input))
                    .await
                    .map_err(|_| HostError::new("internal", "the hashing task was interrupted"))?
            })
        },
    )
}

fn digest(bytes: &[u8]) -> HostOutput {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    to_json(json!({
        "hex": hex,
        "base64url": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    }))
}

/// How a text field holds bytes.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Utf8,
    Base64,
    Base64url,
    Hex,
}

impl Encoding {
    fn decode(self, text: &str, field: &str) -> Result<Vec<u8>, HostError> {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let bad = |e: String| {
            HostError::invalid_argument(format!("`{field}` is not valid {self:?} text: {e}"))
        };
        match self {
            Encoding::Utf8 => Ok(text.as_bytes().to_vec()),
            Encoding::Base64 => STANDARD.decode(text).map_err(|e| bad(e.to_string())),
            Encoding::Base64url => URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|e| bad(e.to_string())),
            Encoding::Hex => {
                if !text.len().is_multiple_of(2) {
                    return Err(bad("odd number of digits".into()));
                }
                (0..text.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(e.to_string()))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RandomReq {
    bytes: usize,
}

fn random(input: &[u8]) -> HostOutput {
    let req: RandomReq = parse(input)?;
    if req.bytes == 0 || req.bytes > MAX_RANDOM_BYTES {
        return Err(HostError::invalid_argument(format!(
            "`bytes` must be 1 to {MAX_RANDOM_BYTES}, found {}",
            req.bytes
        )));
    }
    let mut out = vec![0u8; req.bytes];
    getrandom::fill(&mut out)
        .map_err(|e| HostError::new("internal", format!("the system random source failed: {e}")))?;
    digest(&out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataReq {
    data: String,
    #[serde(default)]
    encoding: Encoding,
}

fn sha256(input: &[u8]) -> HostOutput {
    let req: DataReq = parse(input)?;
    digest(&sha2::Sha256::digest(
        req.encoding.decode(&req.data, "data")?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HmacReq {
    key: String,
    data: String,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    encoding: Encoding,
}

fn hmac_fn(input: &[u8]) -> HostOutput {
    let req: HmacReq = parse(input)?;
    let key = req.encoding.decode(&req.key, "key")?;
    let data = req.encoding.decode(&req.data, "data")?;
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut m = <M as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    let out = match req.alg.as_deref().unwrap_or("sha256") {
        "sha256" => mac::<hmac::Hmac<sha2::Sha256>>(&key, &data),
        "sha384" => mac::<hmac::Hmac<sha2::Sha384>>(&key, &data),
        "sha512" => mac::<hmac::Hmac<sha2::Sha512>>(&key, &data),
        other => {
            return Err(HostError::invalid_argument(format!(
                "unknown HMAC algorithm `{other}` (use sha256, sha384 or sha512)"
            )));
        }
    };
    digest(&out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareReq {
    a: String,
    b: String,
}

fn compare(input: &[u8]) -> HostOutput {
    use subtle::ConstantTimeEq;
    let req: CompareReq = parse(input)?;
    // Lengths are not secret (a MAC's length is public); contents are.
    let equal = req.a.len() == req.b.len() && bool::from(req.a.as_bytes().ct_eq(req.b.as_bytes()));
    to_json(Value::Bool(equal))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordReq {
    password: String,
    #[serde(default)]
    hash: Option<String>,
}

fn password(input: &[u8]) -> Result<PasswordReq, HostError> {
    let req: PasswordReq = parse(input)?;
    if req.password.len() > MAX_PASSWORD_BYTES {
        return Err(HostError::invalid_argument(format!(
            "a password may be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(req)
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: the OWASP
/// recommendation) and a random salt.
fn password_hash(input: Vec<u8>) -> HostOutput {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let req = password(&input)?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HostError::new("internal", e.to_string()))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| HostError::new("internal", e.to_string()))?;
    let hash = argon2::Argon2::default()
        .hash_password(req.password.as_bytes(), &salt)
        .map_err(|e| HostError::new("internal", format!("argon2id failed: {e}")))?;
    to_json(Value::String(hash.to_string()))
}

/// Checks a password against a PHC string; a malformed hash is an error,
/// a wrong password is `false`.
fn password_verify(input: Vec<u8>) -> HostOutput {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let req = password(&input)?;
    let text = req
        .hash
        .ok_or_else(|| HostError::invalid_argument("`hash` is required"))?;
    let parsed = PasswordHash::new(&text)
        .map_err(|e| HostError::invalid_argument(format!("`hash` is not a PHC string: {e}")))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(HostError::invalid_argument(format!(
            "`hash` uses {}, only argon2id is accepted",
            parsed.algorithm
        )));
    }
    let ok = argon2::Argon2::default()
        .verify_password(req.password.as_bytes(), &parsed)
        .is_ok();
    to_json(Value::Bool(ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: fn(&[u8]) -> HostOutput, input: Value) -> Value {
        let out = op(input.to_string().as_bytes()).unwrap().unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn sha256_and_hmac_match_the_rfc_vectors() {
        let d = call(sha256, json!({"data": "abc"}));
        assert_eq!(
            d["hex"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2.
        let m = call(
            hmac_fn,
            json!({"key": "Jefe", "data": "what do ya want for nothing?"}),
        );
        assert_eq!(
            m["hex"],
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let hex = call(
            hmac_fn,
            json!({"key": "4a656665", "data": "7768617420646f2079612077616e7420666f72206e6f7468696e673f", "encoding": "hex"}),
        );
        assert_eq!(hex["hex"], m["hex"]);
    }

    #[test]
    fn compare_random_and_passwords() {
        assert_eq!(call(compare, json!({"a": "abc", "b": "abc"})), json!(true));
        assert_eq!(call(compare, json!({"a": "abc", "b": "abd"})), json!(false));
        assert_eq!(call(compare, json!({"a": "abc", "b": "ab"})), json!(false));
        let r = call(random, json!({"bytes": 32}));
        assert_eq!(r["hex"].as_str().unwrap().len(), 64);
        assert!(random(br#"{"bytes": 5000}"#).is_err());

        let hash: Value = serde_json::from_slice(
            &password_hash(br#"{"password": "s3cret"}"#.to_vec())
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        let hash = hash.as_str().unwrap().to_owned();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let verify = |p: &str| -> Value {
            let input = json!({"password": p, "hash": hash})
                .to_string()
                .into_bytes();
            serde_json::from_slice(&password_verify(input).unwrap().unwrap()).unwrap()
        };
        assert_eq!(verify("s3cret"), json!(true));
        assert_eq!(verify("wrong"), json!(false));
    }

    #[test]
    fn grants_parse() {
        let ctx = GrantContext::default();
        assert!(CryptoSpec.parse(&json!(true), &ctx).unwrap().is_some());
        assert!(CryptoSpec.parse(&json!(false), &ctx).unwrap().is_none());
        let g = CryptoSpec
            .parse(&json!({"jwks": ["https://idp.example.com"]}), &ctx)
            .unwrap()
            .unwrap();
        let g = g.downcast_ref::<CryptoGrant>().unwrap();
        assert!(
            g.jwks
                .matching(&url::Url::parse("https://idp.example.com/jwks").unwrap())
                .is_some()
        );
        assert!(CryptoSpec.parse(&json!({"keys": []}), &ctx).is_err());
    }
}
