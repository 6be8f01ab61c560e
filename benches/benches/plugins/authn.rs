//! `authn_jwt`: one bearer JWT checked by the authn plugin per request,
//! next to the same server with authn off. The token is EdDSA-signed here
//! (ring); the plugin fetches the key set once from a loopback server and
//! then checks every token against its cache in the host (`crypto`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::Criterion;
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::bench_core_plugin;

const ISSUER: &str = "https://issuer.bench";

/// A signing key and its key set as a provider publishes it.
fn key() -> (Ed25519KeyPair, String) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key pair");
    let jwks = serde_json::json!({ "keys": [{
        "kty": "OKP", "crv": "Ed25519", "kid": "bench", "alg": "EdDSA", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
    }]});
    (pair, jwks.to_string())
}

/// A token for `sub` valid for an hour.
fn token(pair: &Ed25519KeyPair) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": "bench" });
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "bench", "sub": "user-1", "iat": now, "exp": now + 3600,
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = pair.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// Serves `jwks` at `/jwks` on a loopback port, on `rt`'s tasks.
fn serve_jwks(rt: &tokio::runtime::Runtime, jwks: String) -> u16 {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { ([("content-type", "application/json")], jwks) }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await });
    port
}

pub(crate) fn authn(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (pair, jwks) = key();
    let port = serve_jwks(&rt, jwks);
    let bearer = format!("Bearer {}", token(&pair));
    let mut group = c.benchmark_group("authn_jwt");
    let on = format!(
        r#"["@buntime/plugin-authn", {{ "providers": [{{ "type": "jwt", "name": "bench",
            "issuer": "{ISSUER}", "audience": ["bench"], "algorithms": ["EdDSA"],
            "jwksUri": "http://127.0.0.1:{port}/jwks" }}] }}]"#
    );
    let headers = [("authorization", bearer.as_str())];
    // With authn on, the first request fetches the key set; it must pass.
    for (label, entry) in [
        ("without_authn", None),
        ("authn_jwt_cached_jwks", Some(on.as_str())),
    ] {
        bench_core_plugin(
            &rt,
            &mut group,
            label,
            "@buntime/plugin-authn",
            entry,
            &headers,
        );
    }
    group.finish();
}
