//! Unit tests of `crypto_jwt_verify` (`jwt.rs`).

use super::*;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use ring::signature::{self, KeyPair};
use serde_json::json;

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
        Ok(valid) => Ok(valid.claims),
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
    let p256 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
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
        serde_json::from_value(json!({"token": token, "secret": secret, "audience": ["x", "api"]}))
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
        let req: VerifyReq =
            serde_json::from_value(json!({"token": token, "secret": secret, "audience": audience}))
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

#[tokio::test]
async fn a_valid_answer_is_given_again_only_for_the_identical_request_in_time() {
    let cache = super::super::JwksCache::default();
    let secret = "s3cret-s3cret-s3cret";
    let now = jsonwebtoken::get_current_timestamp();
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u", "aud": "api", "exp": now + 60}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    // One request through the host function's steps; `true` when remembered.
    let ask = |audience: &str, at: u64| {
        let raw =
            serde_json::to_vec(&json!({"token": token, "secret": secret, "audience": audience}))
                .unwrap();
        let cache = &cache;
        async move {
            let answer = match question(cache, &raw, at).unwrap() {
                Question::Answered(answer) => return (answer, true),
                Question::Ask { id, req } => {
                    let checked = check(cache, None, &req).await.unwrap();
                    outcome(cache, id, &req, checked).unwrap().unwrap()
                }
            };
            (answer, false)
        }
    };
    let valid = |answer: &[u8]| serde_json::from_slice::<Value>(answer).unwrap()["valid"] == true;

    let (first, remembered) = ask("api", now).await;
    assert!(valid(&first) && !remembered);
    let (second, remembered) = ask("api", now).await;
    assert!(remembered, "the same request is answered from memory");
    assert_eq!(first, second);
    // Another setting is another question, checked in full.
    let (other, remembered) = ask("other", now).await;
    assert!(!valid(&other) && !remembered);
    // A refusal is not remembered.
    assert!(!ask("other", now).await.1);
    // Past `exp` and the leeway, the remembered answer is not given: the
    // full check runs (at the real clock, where the token is still valid).
    let (late, remembered) = ask("api", now + 60 + 61).await;
    assert!(!remembered);
    assert!(valid(&late));
}
