//! The client of a request, for the guests that read it.
//!
//! Guests ask for the client with `buntime_request_client`
//! ([`crate::wasm::abi::RequestClient`]); a module that does not import it
//! never costs its requests a resolution or a serialisation. For those that
//! do, the client is resolved (through the operator's trusted proxies) and
//! serialised at most once per request, and every guest of that request —
//! plugins in either hook, the plugin route or the app — gets the same
//! answer.

use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, Uri};

use super::forwarding::ForwardingMemo;
use crate::access::TrustedProxies;
use crate::wasm::GuestModule;
use crate::wasm::abi::RequestClient;

/// The client of one request: the connection's peer, resolved into the
/// client's JSON on first need.
pub(crate) struct RequestClientSource<'a> {
    /// The connection's peer (`None`: served in process, no client).
    pub(crate) peer: Option<SocketAddr>,
    proxies: &'a TrustedProxies,
    /// The hash of the API key the server took from the request
    /// ([`key_hash`]), passed on as `apiKeyHash`.
    api_key_hash: Option<String>,
    json: OnceLock<Option<Bytes>>,
    /// The connection's forwarding headers of its last proxied request.
    memo: Option<&'a ForwardingMemo>,
}

/// What guests are told of an API key the server took from a request: the
/// first 16 bytes of its SHA-256 in hex (what the gateway plugin keys a
/// limit by when it sees the key itself).
pub(crate) fn key_hash(key: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(key.as_bytes());
    digest[..16]
        .iter()
        .fold(String::with_capacity(32), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

impl<'a> RequestClientSource<'a> {
    /// The client of a request from `peer`, believing forwarding headers
    /// only from `proxies`.
    pub(crate) fn new(peer: Option<SocketAddr>, proxies: &'a TrustedProxies) -> Self {
        Self {
            peer,
            proxies,
            api_key_hash: None,
            json: OnceLock::new(),
            memo: None,
        }
    }

    /// Keeps the forwarding headers in the connection's `memo`.
    pub(crate) fn with_memo(mut self, memo: Option<&'a ForwardingMemo>) -> Self {
        self.memo = memo;
        self
    }

    /// The connection's forwarding headers, if it keeps them.
    pub(crate) fn memo(&self) -> Option<&'a ForwardingMemo> {
        self.memo
    }

    /// Tells guests the hash of `key`, the API key the server took from
    /// the request ([`super::guard::take_key`]).
    pub(crate) fn with_api_key(mut self, key: Option<&str>) -> Self {
        self.api_key_hash = key.map(key_hash);
        self
    }

    /// Resolves the client from a request's `headers` and `uri` now, if it
    /// is not yet: later guests see this answer even if a plugin changes
    /// the forwarding headers meanwhile.
    pub(crate) fn resolve(&self, headers: &HeaderMap, uri: &Uri) -> Option<&Bytes> {
        self.json
            .get_or_init(|| {
                let peer = self.peer?;
                let view = crate::access::resolve(peer, headers, uri, self.proxies);
                let mut json = view.to_json();
                if let Some(hash) = &self.api_key_hash
                    && json.pop() == Some(b'}')
                {
                    // Hex needs no escaping.
                    json.extend_from_slice(b",\"apiKeyHash\":\"");
                    json.extend_from_slice(hash.as_bytes());
                    json.extend_from_slice(b"\"}");
                }
                Some(Bytes::from(json))
            })
            .as_ref()
    }

    /// The client's address (for limits kept per client), resolved from a
    /// request's `headers` and `uri`.
    pub(crate) fn address(&self, headers: &HeaderMap, uri: &Uri) -> Option<std::net::IpAddr> {
        let peer = self.peer?;
        Some(crate::access::resolve(peer, headers, uri, self.proxies).address)
    }

    /// The client as resolved from a request's `headers` and `uri` (`None`:
    /// served in process).
    pub(crate) fn view<'h>(
        &self,
        headers: &'h HeaderMap,
        uri: &'h Uri,
    ) -> Option<crate::access::ClientView<'h>> {
        let peer = self.peer?;
        Some(crate::access::resolve(peer, headers, uri, self.proxies))
    }

    /// Hands the client to a call of `module` if the module reads it,
    /// resolving it from `headers` and `uri` if no guest has yet.
    pub(crate) fn attach(
        &self,
        module: &GuestModule,
        headers: &HeaderMap,
        uri: &Uri,
        ext: &mut http::Extensions,
    ) {
        if module.reads_client()
            && let Some(json) = self.resolve(headers, uri)
        {
            ext.insert(RequestClient(json.clone()));
        }
    }

    /// Hands the client, if already resolved, to a call of `module` that
    /// reads it (`on_response`, where the request's headers are gone).
    pub(crate) fn attach_resolved(&self, module: &GuestModule, ext: &mut http::Extensions) {
        if module.reads_client()
            && let Some(Some(json)) = self.json.get()
        {
            ext.insert(RequestClient(json.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_key_reaches_guests_as_its_hash_only() {
        let proxies = TrustedProxies::default();
        let peer = Some(SocketAddr::from(([127, 0, 0, 1], 9)));
        let uri = Uri::from_static("/_/gateway/api/stats");
        let with_key = RequestClientSource::new(peer, &proxies).with_api_key(Some("sekrit"));
        let json = with_key.resolve(&HeaderMap::new(), &uri).expect("a client");
        assert!(!String::from_utf8_lossy(json).contains("sekrit"));
        let client: buntime_pdk::Client = serde_json::from_slice(json).expect("the client JSON");
        // The gateway's own hash of a key seen in a header: one bucket.
        assert_eq!(
            client.api_key_hash.as_deref(),
            Some("7e35aaaea6b83ab43c9271737060ce48")
        );
        assert_eq!(client.address, "127.0.0.1");

        let without = RequestClientSource::new(peer, &proxies).with_api_key(None);
        let json = without.resolve(&HeaderMap::new(), &uri).expect("a client");
        let client: buntime_pdk::Client = serde_json::from_slice(json).expect("the client JSON");
        assert_eq!(client.api_key_hash, None);
    }
}
