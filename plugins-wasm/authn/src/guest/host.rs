//! Calls into the host: the `crypto`, `pool` and `http` capabilities, with
//! the envelope decoding they share.

use buntime_pdk::abi::{HostErrorBody, HostResult};
use extism_pdk::HttpRequest;
use serde_json::{Value, json};

#[allow(unsafe_code, reason = "imports are foreign functions by definition")]
mod imports {
    #[link(wasm_import_module = "extism:host/user")]
    unsafe extern "C" {
        pub(super) fn crypto_jwt_verify(h: u64) -> u64;
        pub(super) fn crypto_sha256(h: u64) -> u64;
        pub(super) fn crypto_random(h: u64) -> u64;
        pub(super) fn crypto_password_hash(h: u64) -> u64;
        pub(super) fn crypto_password_verify(h: u64) -> u64;
        pub(super) fn pool_public_routes() -> u64;
    }
}

pub(super) fn internal(message: String) -> HostErrorBody {
    HostErrorBody {
        code: "internal".into(),
        message,
    }
}

/// An envelope host function called with `request` as JSON.
fn call(f: unsafe extern "C" fn(u64) -> u64, request: &Value) -> Result<Value, HostErrorBody> {
    call_as(f, request)
}

/// An envelope host function called with `request` serialized, its result
/// read as `T`.
fn call_as<T: serde::de::DeserializeOwned>(
    f: unsafe extern "C" fn(u64) -> u64,
    request: &impl serde::Serialize,
) -> Result<T, HostErrorBody> {
    let bytes = serde_json::to_vec(request).map_err(|e| internal(e.to_string()))?;
    call_with(f, &bytes)
}

/// An envelope host function called with `bytes` (JSON) as its argument.
fn call_with<T: serde::de::DeserializeOwned>(
    f: unsafe extern "C" fn(u64) -> u64,
    bytes: &[u8],
) -> Result<T, HostErrorBody> {
    let handle = buntime_pdk::io::write_block(bytes);
    if handle == 0 {
        return Err(internal("the host has no room for the argument".into()));
    }
    #[allow(unsafe_code, reason = "a host import")]
    // SAFETY: `handle` is a live block holding the argument.
    let out = unsafe { f(handle) };
    buntime_pdk::io::free_block(handle);
    decode(out)
}

/// An envelope result block.
fn decode<T: serde::de::DeserializeOwned>(out: u64) -> Result<T, HostErrorBody> {
    if out == 0 {
        return Err(internal("the host returned no result".into()));
    }
    let answer = buntime_pdk::io::read_block(out);
    buntime_pdk::io::free_block(out);
    serde_json::from_slice::<HostResult<T>>(&answer)
        .map_err(|e| internal(e.to_string()))?
        .into_result()
}

/// `crypto_jwt_verify`.
pub(super) fn jwt_verify(request: &Value) -> Result<Value, HostErrorBody> {
    call(imports::crypto_jwt_verify, request)
}

/// What `crypto_jwt_verify` answers, read without its `header` (which the
/// request path does not use).
#[derive(serde::Deserialize)]
pub(super) struct Verdict {
    pub(super) valid: bool,
    #[serde(default)]
    pub(super) claims: Value,
    #[serde(default)]
    pub(super) reason: Option<String>,
    #[serde(default)]
    pub(super) message: Option<String>,
}

/// `crypto_jwt_verify` of `token` with a provider's settings, given as
/// the JSON members of its request without `token` (`verify_members`,
/// written once per provider): the request is `{"token": …, <members>}`,
/// the same JSON as the settings map with the token put first.
pub(super) fn jwt_verdict(members: &str, token: &str) -> Result<Verdict, HostErrorBody> {
    let mut bytes = Vec::with_capacity(token.len() + members.len() + 16);
    bytes.extend_from_slice(b"{\"token\":");
    serde_json::to_writer(&mut bytes, token).map_err(|e| internal(e.to_string()))?;
    if !members.is_empty() {
        bytes.push(b',');
        bytes.extend_from_slice(members.as_bytes());
    }
    bytes.push(b'}');
    call_with(imports::crypto_jwt_verify, &bytes)
}

/// `crypto_sha256` of a text: `{"hex", "base64url"}`.
pub(super) fn sha256(data: &str) -> Result<Value, HostErrorBody> {
    call(imports::crypto_sha256, &json!({ "data": data }))
}

/// The SHA-256 of `data`, lower-case hex.
pub(super) fn sha256_hex(data: &str) -> Result<String, HostErrorBody> {
    Ok(sha256(data)?["hex"].as_str().unwrap_or_default().to_owned())
}

/// `bytes` random bytes from the host, base64url without padding.
pub(super) fn random(bytes: usize) -> Result<String, HostErrorBody> {
    let out = call(imports::crypto_random, &json!({ "bytes": bytes }))?;
    out["base64url"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| internal("crypto_random answered without `base64url`".into()))
}

/// An argon2id PHC string for `password` (the host's blocking pool).
pub(super) fn password_hash(password: &str) -> Result<String, HostErrorBody> {
    let out = call(
        imports::crypto_password_hash,
        &json!({ "password": password }),
    )?;
    out.as_str()
        .map(str::to_owned)
        .ok_or_else(|| internal("crypto_password_hash answered without a hash".into()))
}

/// Whether `password` matches the argon2id `hash`.
pub(super) fn password_verify(password: &str, hash: &str) -> Result<bool, HostErrorBody> {
    Ok(call(
        imports::crypto_password_verify,
        &json!({ "password": password, "hash": hash }),
    )? == json!(true))
}

/// `pool_public_routes`: the apps' own `publicRoutes`.
pub(super) fn public_routes() -> Result<Value, HostErrorBody> {
    #[allow(unsafe_code, reason = "a host import")]
    // SAFETY: takes no arguments and returns a block handle.
    let out = unsafe { imports::pool_public_routes() };
    decode(out)
}

/// An HTTP exchange through the `http` capability: the status and the body
/// as JSON. A URL outside the grant, or an unreachable server, is an error
/// (the host traps the call; the route answers 500 and the log says why).
pub(super) fn fetch_json(
    url: &str,
    form: Option<(&str, Option<String>)>,
) -> Result<(u16, Value), String> {
    let mut req = HttpRequest::new(url).with_header("accept", "application/json");
    let body = match form {
        Some((body, auth)) => {
            req = req
                .with_method("POST")
                .with_header("content-type", "application/x-www-form-urlencoded");
            if let Some(auth) = auth {
                req = req.with_header("authorization", auth);
            }
            Some(body.to_owned())
        }
        None => None,
    };
    let res =
        extism_pdk::http::request::<String>(&req, body).map_err(|e| format!("`{url}`: {e}"))?;
    let status = res.status_code();
    let value = serde_json::from_slice(&res.body())
        .map_err(|e| format!("`{url}` answered {status} with a body that is not JSON: {e}"))?;
    Ok((status, value))
}
