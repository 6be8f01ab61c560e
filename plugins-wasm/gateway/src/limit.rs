//! Rate limiting, the pure part: whose bucket a request draws from, and
//! the headers that report it. The bucket itself is the host's
//! (`state_take`), so every instance draws from the same tokens.

use buntime_pdk::{Client, RequestHeadRef};
use sha2::{Digest, Sha256};

use crate::config::{KeyBy, Limit};

/// State keys of buckets start with this.
pub const BUCKET_PREFIX: &str = "rl:";

/// Values longer than this are keyed by their hash, so a key stays within
/// the state's key limit however long the header.
const MAX_RAW: usize = 128;

/// The headers a limited response exposes to scripts (with CORS).
pub const EXPOSED: [&str; 4] = [
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
];

fn hashed(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn bounded(value: &str) -> String {
    if value.len() > MAX_RAW {
        format!("#{}", hashed(value))
    } else {
        value.to_owned()
    }
}

/// The client's address as the host resolved it (`unknown` when the
/// request has no client, e.g. served in process).
pub fn address(client: Option<&Client>) -> &str {
    client.map_or("unknown", |c| c.address.as_str())
}

/// The API key a request presents: `X-API-Key`, else a bearer token.
fn api_key<'r>(req: &'r RequestHeadRef<'_>) -> Option<&'r str> {
    if let Some(k) = req.header("x-api-key") {
        return Some(k.trim()).filter(|k| !k.is_empty());
    }
    let (scheme, token) = req.header("authorization")?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The identity subject an authentication plugin set (`X-Identity`).
fn subject(req: &RequestHeadRef<'_>) -> Option<String> {
    let identity: serde_json::Value = serde_json::from_str(req.header("x-identity")?).ok()?;
    identity["sub"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Whose tokens `req` draws from under `key_by`; a request that lacks what
/// `key_by` names is counted by its address. `key_hash` is the hash of the
/// server's own API key the host took from a request to `/_/…`
/// (`Client::api_key_hash`), the same as [`hashed`] of the key.
pub fn client_key(
    key_by: &KeyBy,
    req: &RequestHeadRef<'_>,
    address: &str,
    key_hash: Option<&str>,
) -> String {
    let keyed = match key_by {
        KeyBy::Ip => None,
        // Only a hash of a credential is ever stored or listed.
        KeyBy::ApiKey => api_key(req)
            .map(hashed)
            .or_else(|| key_hash.map(str::to_owned))
            .map(|h| format!("key:{h}")),
        KeyBy::User => subject(req).map(|s| format!("user:{}", bounded(&s))),
        KeyBy::Header(name) => req.header(name).map(|v| format!("hdr:{}", bounded(v))),
    };
    keyed.unwrap_or_else(|| concat(&["ip:", address]))
}

/// The pieces joined, in one allocation (`format!` goes through the
/// formatting machinery: in a guest, more than the rest of the key's work).
fn concat(pieces: &[&str]) -> String {
    let mut out = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for p in pieces {
        out.push_str(p);
    }
    out
}

/// The state key of `req`'s bucket under `limit`.
pub fn bucket_key(
    limit: &Limit,
    req: &RequestHeadRef<'_>,
    address: &str,
    key_hash: Option<&str>,
) -> String {
    concat(&[
        BUCKET_PREFIX,
        &limit.id,
        ":",
        &client_key(&limit.key_by, req, address, key_hash),
    ])
}

/// Whole seconds, rounded up.
pub fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the
/// bucket is full again).
pub fn headers(limit: u64, remaining: u64, reset_ms: u64) -> Vec<(String, String)> {
    let mut digits = itoa::Buffer::new();
    let mut number = |n: u64| digits.format(n).to_owned();
    vec![
        ("x-ratelimit-limit".into(), number(limit)),
        ("x-ratelimit-remaining".into(), number(remaining)),
        ("x-ratelimit-reset".into(), number(seconds(reset_ms))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::glob_match;

    const IP: &str = "203.0.113.9";

    /// A head borrowed from JSON text kept for the test's life.
    fn head(headers: &[(&str, &str)]) -> RequestHeadRef<'static> {
        let json = serde_json::json!({
            "method": "GET", "path": "/", "request_id": "r",
            "headers": headers,
        })
        .to_string();
        serde_json::from_str(Box::leak(json.into_boxed_str())).unwrap()
    }

    #[test]
    fn keys_fall_back_to_the_address() {
        let anon = head(&[]);
        for k in [
            KeyBy::Ip,
            KeyBy::ApiKey,
            KeyBy::User,
            KeyBy::Header("x-t".into()),
        ] {
            assert_eq!(client_key(&k, &anon, IP, None), "ip:203.0.113.9");
        }
        let req = head(&[
            ("authorization", "Bearer sekrit"),
            ("x-identity", r#"{"sub":"alice","roles":[]}"#),
            ("x-t", "acme"),
        ]);
        let key = client_key(&KeyBy::ApiKey, &req, IP, None);
        assert!(key.starts_with("key:") && !key.contains("sekrit"), "{key}");
        assert_eq!(
            key,
            client_key(&KeyBy::ApiKey, &head(&[("x-api-key", "sekrit")]), IP, None)
        );
        assert_eq!(client_key(&KeyBy::User, &req, IP, None), "user:alice");
        assert_eq!(
            client_key(&KeyBy::Header("x-t".into()), &req, IP, None),
            "hdr:acme"
        );
        // The hash the host passes for a key it took from `/_/…` is the
        // same bucket as the key seen in a header.
        let taken = hashed("sekrit");
        assert_eq!(client_key(&KeyBy::ApiKey, &anon, IP, Some(&taken)), key);
        assert_eq!(
            client_key(&KeyBy::Ip, &anon, IP, Some(&taken)),
            "ip:203.0.113.9"
        );
        let long = "v".repeat(500);
        let key = client_key(
            &KeyBy::Header("x-t".into()),
            &head(&[("x-t", &long)]),
            IP,
            None,
        );
        assert!(key.len() < 64, "{key}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("/api/**", "/api"));
        assert!(glob_match("/api/**", "/api/a/b"));
        assert!(!glob_match("/api/**", "/apix"));
        assert!(glob_match("/a/*/c", "/a/b/c"));
        assert!(!glob_match("/a/*/c", "/a/b/x/c"));
        assert!(glob_match("/health", "/health"));
        assert!(!glob_match("/health", "/healthz"));
        assert!(glob_match("/v?", "/v1"));
    }
}
