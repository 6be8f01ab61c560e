//! Who may call the core API and the plugin routes: API keys, roles, and
//! the client's address.
//!
//! A key comes in `X-API-Key` or `Authorization: Bearer`: the master key
//! (`RUNTIME_MASTER_KEY`, compared in constant time) acts as admin; a
//! generated key ([`KeyStore`]) has a role (`roles`). With no key
//! configured at all, a request without a key is allowed only from this
//! machine ([`ClientView::is_local`]). A mutating request that a browser
//! says is cross-site is refused unless it carries a key header, and
//! cookies are never read, so a page on another site cannot act through
//! the operator's browser. Failed key attempts are limited per client
//! address ([`FailedAttempts`]).

mod attempts;
mod client;
mod client_json;
mod keys;
mod roles;

use std::sync::Arc;

use http::{HeaderMap, Method, header};
use subtle::ConstantTimeEq;

pub use crate::config::TrustedProxies;
pub use attempts::{
    ATTEMPT_WINDOW, FAILED_ATTEMPTS, FailedAttempts, MAX_ATTEMPT_WINDOW, MAX_FAILED_ATTEMPTS,
};
pub use client::{ClientView, host_is_loopback, resolve, with_ip_text};
pub use keys::{
    Checked, KEY_PREFIX, KeyStore, KeyStoreError, NewKey, StoredKey, now, parse_expires_in,
};
pub use roles::{Needed, Permission, Permissions, Role};

/// The header a key may be sent in (or `Authorization: Bearer`).
pub const API_KEY_HEADER: &str = "x-api-key";

/// The operator's access settings.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// `RUNTIME_MASTER_KEY` (or `BUNTIME_MASTER_KEY`).
    pub master_key: Option<crate::config::Secret>,
    /// `RUNTIME_TRUSTED_PROXIES`.
    pub trusted_proxies: TrustedProxies,
    /// `RUNTIME_METRICS_PUBLIC`: `/_/metrics` without a key.
    pub metrics_public: bool,
    /// `RUNTIME_KEY_ATTEMPTS` and `RUNTIME_KEY_ATTEMPT_WINDOW`: invalid
    /// keys one client address may send in a burst, and the time over which
    /// its allowance refills.
    pub key_attempts: (u32, std::time::Duration),
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self {
            master_key: None,
            trusted_proxies: TrustedProxies::default(),
            metrics_public: false,
            key_attempts: (FAILED_ATTEMPTS, ATTEMPT_WINDOW),
        }
    }
}

/// The access settings and the generated keys.
#[derive(Debug)]
pub struct Access {
    /// The operator's settings.
    pub policy: AccessPolicy,
    master: Option<[u8; 32]>,
    /// The generated keys.
    pub keys: KeyStore,
    /// Failed key attempts per client address.
    pub failures: FailedAttempts,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The master key.
    Master,
    /// A client on this machine while no key is configured.
    Local,
    /// A generated key.
    Key(Arc<StoredKey>),
}

impl Caller {
    /// What the caller may do.
    pub fn permissions(&self) -> std::borrow::Cow<'_, Permissions> {
        match self {
            Self::Master | Self::Local => std::borrow::Cow::Owned(Permissions::all()),
            Self::Key(k) => std::borrow::Cow::Borrowed(&k.permissions),
        }
    }

    /// How errors and logs name it.
    pub fn describe(&self) -> String {
        match self {
            Self::Master => "the master key".into(),
            Self::Local => "a local client".into(),
            Self::Key(k) => format!("key `{}` ({}, role {})", k.name, k.prefix, k.role.as_str()),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No key, and one is needed (401). `local_only`: no key is configured,
    /// so only clients on this machine are served without one.
    KeyRequired {
        /// Whether the server has no key configured.
        local_only: bool,
    },
    /// The key is not valid: unknown, revoked or expired (401).
    KeyInvalid(&'static str),
    /// The key's role lacks the permission (403).
    Forbidden {
        /// The permission needed.
        needed: String,
        /// Who asked.
        caller: String,
    },
    /// A mutating request a browser marked cross-site, without a key (403).
    CrossSite,
    /// The client's address sent too many invalid keys lately (429); it
    /// may try again after this long.
    TooManyAttempts(std::time::Duration),
}

impl Access {
    /// The settings over a key store.
    pub fn new(policy: AccessPolicy, keys: KeyStore) -> Self {
        let master = policy.master_key.as_ref().map(|k| keys::digest(k.expose()));
        let (burst, window) = policy.key_attempts;
        Self {
            policy,
            master,
            keys,
            failures: FailedAttempts::new(burst, window),
        }
    }

    /// Whether any key is configured (the master key or a generated one).
    pub fn configured(&self) -> bool {
        self.master.is_some() || self.keys.any()
    }

    /// Whether `token` is one of this server's keys by its form: a
    /// generated key's prefix, or the master key. Such a token is taken out
    /// of requests to plugin routes before any plugin sees them.
    pub fn is_runtime_key(&self, token: &str) -> bool {
        token.starts_with(KEY_PREFIX)
            || self
                .master
                .is_some_and(|m| bool::from(keys::digest(token).ct_eq(&m)))
    }

    /// Decides whether a request with `method`, `headers` and the
    /// presented `key` from `client` may do what `needed` names.
    pub fn authorize(
        &self,
        needed: Needed<'_>,
        method: &Method,
        headers: &HeaderMap,
        key: Option<&str>,
        client: &ClientView<'_>,
    ) -> Result<Caller, Refusal> {
        if key.is_none() && writes(method) && cross_site(headers, client.host) {
            return Err(Refusal::CrossSite);
        }
        let caller = match key {
            Some(key) => {
                if let Some(wait) = self.failures.blocked(client.address) {
                    return Err(Refusal::TooManyAttempts(wait));
                }
                self.identify(key).inspect_err(|r| {
                    if matches!(r, Refusal::KeyInvalid(_)) {
                        self.failures.failed(client.address);
                    }
                })?
            }
            None if self.configured() => return Err(Refusal::KeyRequired { local_only: false }),
            None if client.is_local() => Caller::Local,
            None => return Err(Refusal::KeyRequired { local_only: true }),
        };
        if caller.permissions().allows(needed) {
            Ok(caller)
        } else {
            Err(Refusal::Forbidden {
                needed: needed.to_string(),
                caller: caller.describe(),
            })
        }
    }

    /// Whether `key` is a valid key of this server: the master key, or a
    /// generated key that is neither revoked nor expired.
    pub fn holds(&self, key: &str) -> bool {
        self.identify(key).is_ok()
    }

    fn identify(&self, key: &str) -> Result<Caller, Refusal> {
        if let Some(master) = &self.master
            && bool::from(keys::digest(key).ct_eq(master))
        {
            return Ok(Caller::Master);
        }
        match self.keys.check(key) {
            Checked::Valid(k) => Ok(Caller::Key(k)),
            Checked::Expired => Err(Refusal::KeyInvalid("the API key has expired")),
            Checked::Unknown => Err(Refusal::KeyInvalid(
                "the API key is not valid (unknown or revoked)",
            )),
        }
    }
}

/// Whether `method` changes something (anything but GET, HEAD, OPTIONS).
pub fn writes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The key a request carries: `X-API-Key`, else `Authorization: Bearer`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(API_KEY_HEADER) {
        return v.to_str().ok().map(str::trim);
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether a browser says the request comes from another site:
/// `Sec-Fetch-Site: cross-site` or `same-site`, or an `Origin` whose host
/// is not the one the client asked for (`host`), or `Origin: null`.
pub fn cross_site(headers: &HeaderMap, host: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && matches!(site.as_bytes(), b"cross-site" | b"same-site")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let origin = origin.to_str().unwrap_or("null");
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    match (origin_host, host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn keys_come_from_either_header() {
        assert_eq!(presented_key(&headers(&[("x-api-key", "a ")])), Some("a"));
        assert_eq!(
            presented_key(&headers(&[("authorization", "bearer b")])),
            Some("b")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Basic Yjpj")])),
            None
        );
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let host = Some("localhost:8000");
        assert!(!cross_site(&headers(&[]), host));
        assert!(!cross_site(
            &headers(&[("sec-fetch-site", "same-origin")]),
            host
        ));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "none")]), host));
        assert!(cross_site(
            &headers(&[("sec-fetch-site", "cross-site")]),
            host
        ));
        assert!(cross_site(
            &headers(&[("sec-fetch-site", "same-site")]),
            host
        ));
        assert!(!cross_site(
            &headers(&[("origin", "http://localhost:8000")]),
            host
        ));
        assert!(cross_site(
            &headers(&[("origin", "https://evil.example")]),
            host
        ));
        assert!(cross_site(&headers(&[("origin", "null")]), host));
    }
}
