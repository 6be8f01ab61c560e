//! Fetched JSON Web Key Sets and OpenID discovery documents, cached.
//!
//! A key set is fetched on first use and kept for the caller's `cacheSeconds`.
//! A token naming a key id the cached set lacks (the provider rotated its
//! keys) refetches the set, but at most once per `refreshSeconds` per URL,
//! so a stream of tokens with made-up key ids cannot turn the host into a
//! load generator against the provider. Fetches obey the `crypto` grant's
//! `jwks` URL patterns and the `http` capability's private-network rules
//! (the same outbound clients, which re-check every address they connect to).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use serde_json::Value;

use super::CryptoGrant;
use crate::capabilities::Capability;
use crate::grants::{is_private_address, resolves_only_private};
use crate::wasm::{EngineShared, HostError, user_denial};

/// Largest key set or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 256 << 10;
/// Longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One usable public key.
#[derive(Clone)]
pub(super) struct Key {
    pub(super) kid: Option<String>,
    pub(super) kind: KeyKind,
    pub(super) key: DecodingKey,
}

/// A parsed key set.
pub(super) struct KeySet {
    pub(super) keys: Vec<Key>,
    fetched: Instant,
    /// Unique per parsed set, so a verification remembered against one set
    /// is never taken for another (see [`VerifiedTokens`]).
    pub(super) generation: u64,
}

/// Source of [`KeySet::generation`].
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl KeySet {
    /// The usable keys of a JWKS document; keys of other types or uses
    /// (encryption keys, unsupported curves) are skipped.
    pub(super) fn parse(doc: &Value) -> Result<Self, String> {
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the document has no `keys` list")?;
        let keys = list
            .iter()
            .filter(|k| k.get("use").is_none_or(|u| u == "sig"))
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter_map(|jwk| {
                let kind = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => KeyKind::Rsa,
                    AlgorithmParameters::EllipticCurve(p) => match p.curve {
                        EllipticCurve::P256 => KeyKind::P256,
                        EllipticCurve::P384 => KeyKind::P384,
                        _ => return None,
                    },
                    AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                        KeyKind::Ed25519
                    }
                    // Shared secrets never come from a key set.
                    _ => return None,
                };
                Some(Key {
                    kid: jwk.common.key_id.clone(),
                    kind,
                    key: DecodingKey::from_jwk(&jwk).ok()?,
                })
            })
            .collect();
        Ok(Self {
            keys,
            fetched: Instant::now(),
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    fn has(&self, kid: Option<&str>) -> bool {
        kid.is_none_or(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }
}

/// The outbound clients a fetch may use (the engine's).
#[derive(Clone)]
pub(super) struct Fetcher {
    pub(super) shared: Arc<EngineShared>,
    pub(super) grant: CryptoGrant,
    pub(super) guest: String,
}

impl Fetcher {
    /// Refuses a key-set fetch the grant does not cover: logged and counted
    /// like every denial (the fetch runs away from the guest's store, so
    /// this cannot use `HostState::deny`).
    fn deny(&self, detail: String, hint: String) -> HostError {
        self.shared.stats.record_denial(Capability::CRYPTO.name());
        let denial = user_denial(Capability::CRYPTO, "crypto_jwt_verify", detail, hint);
        tracing::warn!(guest = %self.guest, capability = "crypto", "{denial}");
        denial.into()
    }

    /// GETs `url` as JSON, within the grant.
    async fn json(&self, url: &str) -> Result<Value, HostError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| HostError::invalid_argument(format!("`{url}` is not a URL: {e}")))?;
        if self.grant.jwks.matching(&parsed).is_none() {
            let origin = parsed.origin().ascii_serialization();
            return Err(self.deny(
                format!("fetching `{url}` is not granted"),
                format!("\"crypto\": {{\"jwks\": [\"{origin}\"]}}"),
            ));
        }
        let allow_private = self.grant.jwks.allows_private(&parsed);
        if !allow_private {
            let host = parsed.host_str().unwrap_or_default().to_owned();
            let port = parsed.port_or_known_default().unwrap_or(443);
            let private = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => is_private_address(ip.into()).then_some(ip.into()),
                Some(url::Host::Ipv6(ip)) => is_private_address(ip.into()).then_some(ip.into()),
                _ => resolves_only_private(&host, port).await,
            };
            if let Some(ip) = private {
                return Err(self.deny(
                    format!("`{host}` is the private address {ip}"),
                    format!(
                        "\"crypto\": {{\"jwks\": [\"{}://{ip}:{port}\"]}} to grant it by address, or \"privateNetworks\": true",
                        parsed.scheme()
                    ),
                ));
            }
        }
        let client = if allow_private {
            &self.shared.http
        } else {
            &self.shared.http_public
        };
        let fail = |e: String| HostError::new("unavailable", format!("fetching `{url}`: {e}"));
        let mut response = client
            .get(parsed.clone())
            .header("accept", "application/json")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("the server answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(fail(format!(
                    "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))
    }
}

/// How long cached documents live, from the caller.
#[derive(Debug, Clone, Copy)]
pub(super) struct Freshness {
    /// A key set or discovery document older than this is refetched.
    pub(super) max_age: Duration,
    /// An unknown key id refetches at most this often.
    pub(super) refresh: Duration,
}

/// Every fetched key set and discovery document, by URL and issuer.
#[derive(Default)]
pub struct JwksCache {
    sets: Mutex<HashMap<String, Arc<KeySet>>>,
    /// When each URL was last fetched (or tried).
    attempts: Mutex<HashMap<String, Instant>>,
    /// issuer → (jwks_uri, when read).
    discovery: Mutex<HashMap<String, (String, Instant)>>,
    /// Tokens whose signature verified, so that a client sending the same
    /// token again costs a hash and a claims check, not a signature check.
    pub(super) verified: VerifiedTokens,
    /// Answers for valid tokens, given again while they hold.
    pub(super) verdicts: super::verdicts::Verdicts,
}

/// The signatures already verified: the SHA-256 of the token with the key
/// material that verified it (a key set's generation, or a secret). A
/// token's claims (`exp`, `nbf`, `iss`, `aud`, required claims) are checked
/// on every use all the same; only the signature check is skipped, and only
/// against the same keys — a refetched key set is a new generation, so a
/// rotated-out key stops vouching for its tokens at the next refetch.
/// Bounded (least recently used go first), so a flood of distinct tokens
/// costs memory only up to [`VERIFIED_TOKENS`] entries.
pub(super) struct VerifiedTokens {
    seen: Mutex<lru::LruCache<[u8; 32], ()>>,
    /// Lookups answered from the cache (for tests and figures).
    pub(super) hits: std::sync::atomic::AtomicU64,
}

/// How many verified tokens are remembered.
pub(super) const VERIFIED_TOKENS: usize = 4096;

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            seen: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(VERIFIED_TOKENS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            hits: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl VerifiedTokens {
    /// The cache key of `token` verified by `keys` (a generation or a secret).
    pub(super) fn id(token: &str, keys: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update((keys.len() as u64).to_le_bytes());
        h.update(keys);
        h.update(token.as_bytes());
        h.finalize().into()
    }

    /// Whether `id`'s signature verified before.
    pub(super) fn contains(&self, id: &[u8; 32]) -> bool {
        let hit = lock(&self.seen).get(id).is_some();
        if hit {
            self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        hit
    }

    /// Remembers that `id`'s signature verified.
    pub(super) fn insert(&self, id: [u8; 32]) {
        lock(&self.seen).put(id, ());
    }
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").finish_non_exhaustive()
    }
}

impl JwksCache {
    /// The `jwks_uri` of `issuer`'s discovery document, whose own `issuer`
    /// must be exactly `issuer` (OpenID Connect Discovery §4.3).
    pub(super) async fn discover(
        &self,
        fetcher: &Fetcher,
        issuer: &str,
        fresh: Freshness,
    ) -> Result<String, HostError> {
        if let Some(uri) = self.discovered(issuer, fresh) {
            return Ok(uri);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = fetcher.json(&url).await?;
        let stated = doc.get("issuer").and_then(Value::as_str);
        if stated != Some(issuer) {
            return Err(HostError::new(
                "invalid_discovery",
                format!(
                    "the discovery document at `{url}` names issuer {stated:?}, not `{issuer}`; configure the issuer exactly as the provider states it"
                ),
            ));
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                HostError::new(
                    "invalid_discovery",
                    format!("the discovery document at `{url}` has no `jwks_uri`"),
                )
            })?
            .to_owned();
        lock(&self.discovery).insert(issuer.to_owned(), (uri.clone(), Instant::now()));
        Ok(uri)
    }

    /// The `jwks_uri` of `issuer` when its discovery document was read
    /// within `fresh.max_age`.
    pub(super) fn discovered(&self, issuer: &str, fresh: Freshness) -> Option<String> {
        lock(&self.discovery)
            .get(issuer)
            .filter(|(_, at)| at.elapsed() < fresh.max_age)
            .map(|(uri, _)| uri.clone())
    }

    /// Puts `set` in the cache as the one fetched from `uri`.
    #[cfg(test)]
    pub(super) fn put_keys(&self, uri: &str, set: KeySet) -> Arc<KeySet> {
        let set = Arc::new(set);
        lock(&self.sets).insert(uri.to_owned(), set.clone());
        set
    }

    /// The cached key set at `uri` when [`JwksCache::keys`] would use it
    /// without fetching: fresh, and holding `kid` or refetched lately.
    pub(super) fn cached_keys(
        &self,
        uri: &str,
        kid: Option<&str>,
        fresh: Freshness,
    ) -> Option<Arc<KeySet>> {
        let set = lock(&self.sets).get(uri).cloned()?;
        if set.fetched.elapsed() >= fresh.max_age {
            return None;
        }
        if set.has(kid) {
            return Some(set);
        }
        lock(&self.attempts)
            .get(uri)
            .is_some_and(|t| t.elapsed() < fresh.refresh)
            .then_some(set)
    }

    /// The key set at `uri`, refetched when stale or when it lacks `kid` and
    /// the last fetch is older than `fresh.refresh`.
    pub(super) async fn keys(
        &self,
        fetcher: &Fetcher,
        uri: &str,
        kid: Option<&str>,
        fresh: Freshness,
    ) -> Result<Arc<KeySet>, HostError> {
        if let Some(set) = self.cached_keys(uri, kid, fresh) {
            return Ok(set);
        }
        let cached = lock(&self.sets).get(uri).cloned();
        lock(&self.attempts).insert(uri.to_owned(), Instant::now());
        let fetched = async {
            let doc = fetcher.json(uri).await?;
            KeySet::parse(&doc)
                .map_err(|e| HostError::new("invalid_jwks", format!("the key set at `{uri}`: {e}")))
        }
        .await;
        match (fetched, cached) {
            (Ok(set), _) => {
                let set = Arc::new(set);
                lock(&self.sets).insert(uri.to_owned(), set.clone());
                Ok(set)
            }
            // A provider that is briefly down does not lock everyone out:
            // the keys it served last still verify.
            (Err(e), Some(old)) => {
                tracing::warn!(guest = %fetcher.guest, error = %e, "refetching a key set failed; using the cached one");
                Ok(old)
            }
            (Err(e), None) => Err(e),
        }
    }
}

/// A poisoned lock still guards a consistent cache (entries are replaced
/// whole), so it is used as it is.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
