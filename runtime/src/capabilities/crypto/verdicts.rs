//! Answers `crypto_jwt_verify` gave for valid tokens, so that a client
//! sending the same bearer token on every request costs the host a hash, a
//! lookup and a clock check instead of a full decode and validation.
//!
//! An answer is found by the SHA-256 of the whole request the guest sent
//! (the token *and* every setting: issuer, audience, algorithms, required
//! claims, leeway, the key source), so a hit is an identical question. It is
//! given again only while it would still be the answer:
//!
//! - the time claims still hold at the current time (`exp` plus leeway not
//!   passed, `nbf` minus leeway reached): an answer never outlives its token;
//! - for a fetched key set, the cache still holds, fresh, the very set
//!   (the same generation) that verified the signature: a refetched or
//!   expired set sends the token through the full check again, so a key
//!   rotated out stops vouching for its tokens at the next refetch.
//!
//! Keys that travel in the request (a secret, an inline key set) are part
//! of the hashed bytes. Only valid answers are kept (a refusal is cheap to
//! repeat and may stop being one, e.g. a token not valid *yet*), and only
//! small ones, so the cache holds at most [`VERDICTS`] ×
//! [`MAX_ANSWER_BYTES`] bytes of answers however many tokens a client
//! invents.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::jwks::{Freshness, JwksCache, lock};

/// How many answers are remembered (least recently used go first).
pub(super) const VERDICTS: usize = 4096;
/// The largest answer remembered; larger ones are recomputed each time.
pub(super) const MAX_ANSWER_BYTES: usize = 4096;

/// Where the keys that verified a remembered token came from.
#[derive(Debug, Clone)]
pub(super) enum KeySource {
    /// A secret or an inline key set: part of the request's bytes.
    InRequest,
    /// A fetched key set: `jwks_uri`, or the one discovery found for `issuer`.
    Fetched {
        jwks_uri: Option<String>,
        issuer: Option<String>,
        kid: Option<String>,
        fresh: Freshness,
        generation: u64,
    },
}

/// One remembered answer.
#[derive(Debug)]
pub(super) struct Verdict {
    answer: Box<[u8]>,
    /// The token is expired once `now - leeway > exp`.
    exp: u64,
    /// The token is not valid yet while `nbf > now + leeway`.
    nbf: Option<u64>,
    leeway: u64,
    keys: KeySource,
}

impl Verdict {
    /// The answer `answer` for a token with these `claims`, or `None` when
    /// it is not worth keeping: too large, or time claims that are not
    /// plain integers (those go through the full check every time).
    pub(super) fn new(answer: &[u8], claims: &Value, leeway: u64, keys: KeySource) -> Option<Self> {
        if answer.len() > MAX_ANSWER_BYTES {
            return None;
        }
        let exp = claims.get("exp")?.as_u64()?;
        let nbf = match claims.get("nbf") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64()?),
        };
        Some(Self {
            answer: answer.into(),
            exp,
            nbf,
            leeway,
            keys,
        })
    }

    /// Whether the time claims hold at `now` (seconds since the epoch), as
    /// the full check decides them.
    pub(super) fn in_time(&self, now: u64) -> bool {
        let not_expired = self.exp >= now.saturating_sub(self.leeway);
        let started = self
            .nbf
            .is_none_or(|nbf| nbf <= now.saturating_add(self.leeway));
        not_expired && started
    }

    /// Whether the keys that verified the token are still the ones in use.
    fn keys_current(&self, cache: &JwksCache) -> bool {
        match &self.keys {
            KeySource::InRequest => true,
            KeySource::Fetched {
                jwks_uri,
                issuer,
                kid,
                fresh,
                generation,
            } => {
                let uri = match (jwks_uri, issuer) {
                    (Some(uri), _) => uri.clone(),
                    (None, Some(issuer)) => match cache.discovered(issuer, *fresh) {
                        Some(uri) => uri,
                        None => return false,
                    },
                    (None, None) => return false,
                };
                cache
                    .cached_keys(&uri, kid.as_deref(), *fresh)
                    .is_some_and(|set| set.generation == *generation)
            }
        }
    }
}

/// The remembered answers, by request hash.
pub(super) struct Verdicts {
    seen: Mutex<lru::LruCache<[u8; 32], Arc<Verdict>>>,
    /// Answers given from the cache (for tests and figures).
    pub(super) hits: AtomicU64,
}

impl Default for Verdicts {
    fn default() -> Self {
        Self {
            seen: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(VERDICTS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            hits: AtomicU64::new(0),
        }
    }
}

impl Verdicts {
    /// The cache key of a request: the SHA-256 of its bytes.
    pub(super) fn id(request: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(request).into()
    }

    /// The answer remembered for `id` if it still holds at `now`.
    pub(super) fn answer(&self, cache: &JwksCache, id: &[u8; 32], now: u64) -> Option<Vec<u8>> {
        let verdict = lock(&self.seen).get(id).cloned()?;
        if !verdict.in_time(now) || !verdict.keys_current(cache) {
            // The full check decides (and refuses an expired token).
            lock(&self.seen).pop(id);
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(verdict.answer.to_vec())
    }

    /// Remembers `verdict` as the answer to `id`.
    pub(super) fn insert(&self, id: [u8; 32], verdict: Verdict) {
        lock(&self.seen).put(id, Arc::new(verdict));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::crypto::jwks::KeySet;
    use serde_json::json;
    use std::time::Duration;

    const FRESH: Freshness = Freshness {
        max_age: Duration::from_secs(300),
        refresh: Duration::from_secs(60),
    };

    fn verdict(claims: Value, keys: KeySource) -> Verdict {
        Verdict::new(b"{\"valid\":true}", &claims, 60, keys).expect("kept")
    }

    #[test]
    fn a_remembered_answer_holds_only_while_its_time_claims_do() {
        let v = verdict(json!({"exp": 1000, "nbf": 500}), KeySource::InRequest);
        // `nbf` 500 with 60 s of leeway: valid from 440 on.
        assert!(!v.in_time(439));
        assert!(v.in_time(440));
        // `exp` 1000 with 60 s of leeway: valid up to 1060.
        assert!(v.in_time(1060));
        assert!(!v.in_time(1061));

        let cache = JwksCache::default();
        let id = Verdicts::id(b"request");
        cache.verdicts.insert(id, v);
        assert_eq!(
            cache.verdicts.answer(&cache, &id, 800).as_deref(),
            Some(&b"{\"valid\":true}"[..])
        );
        assert_eq!(cache.verdicts.hits.load(Ordering::Relaxed), 1);
        // Past its time the answer is dropped: the full check refuses the token.
        assert_eq!(cache.verdicts.answer(&cache, &id, 2000), None);
        assert_eq!(cache.verdicts.answer(&cache, &id, 800), None, "dropped");
        // Another request (another setting, another token) is another question.
        assert_eq!(
            cache.verdicts.answer(&cache, &Verdicts::id(b"other"), 800),
            None
        );
    }

    #[test]
    fn answers_that_cannot_be_rechecked_cheaply_are_not_kept() {
        let keys = || KeySource::InRequest;
        assert!(Verdict::new(b"{}", &json!({"exp": 1.5}), 0, keys()).is_none());
        assert!(Verdict::new(b"{}", &json!({"exp": 10, "nbf": "soon"}), 0, keys()).is_none());
        assert!(Verdict::new(b"{}", &json!({"sub": "no exp"}), 0, keys()).is_none());
        let large = vec![b' '; MAX_ANSWER_BYTES + 1];
        assert!(Verdict::new(&large, &json!({"exp": 10}), 0, keys()).is_none());
    }

    #[test]
    fn a_refetched_key_set_sends_the_token_through_the_full_check() {
        let cache = JwksCache::default();
        let uri = "https://idp.example/jwks";
        let empty = || KeySet::parse(&json!({"keys": []})).expect("a key set");
        let first = cache.put_keys(uri, empty());
        let fetched = |generation| KeySource::Fetched {
            jwks_uri: Some(uri.to_owned()),
            issuer: None,
            kid: None,
            fresh: FRESH,
            generation,
        };
        let id = Verdicts::id(b"with a fetched key set");
        cache
            .verdicts
            .insert(id, verdict(json!({"exp": 1000}), fetched(first.generation)));
        assert!(cache.verdicts.answer(&cache, &id, 900).is_some());
        // The provider's keys are refetched: a new generation.
        cache.put_keys(uri, empty());
        assert_eq!(cache.verdicts.answer(&cache, &id, 900), None);
        // A set found by discovery that is no longer known is not trusted either.
        let discovered = KeySource::Fetched {
            jwks_uri: None,
            issuer: Some("https://idp.example".into()),
            kid: None,
            fresh: FRESH,
            generation: first.generation,
        };
        cache
            .verdicts
            .insert(id, verdict(json!({"exp": 1000}), discovered));
        assert_eq!(cache.verdicts.answer(&cache, &id, 900), None);
    }
}
