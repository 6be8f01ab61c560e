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

use crate::access::TrustedProxies;
use crate::wasm::GuestModule;
use crate::wasm::abi::RequestClient;

/// The client of one request: the connection's peer, resolved into the
/// client's JSON on first need.
pub(crate) struct RequestClientSource<'a> {
    /// The connection's peer (`None`: served in process, no client).
    pub(crate) peer: Option<SocketAddr>,
    proxies: &'a TrustedProxies,
    json: OnceLock<Option<Bytes>>,
}

impl<'a> RequestClientSource<'a> {
    /// The client of a request from `peer`, believing forwarding headers
    /// only from `proxies`.
    pub(crate) fn new(peer: Option<SocketAddr>, proxies: &'a TrustedProxies) -> Self {
        Self {
            peer,
            proxies,
            json: OnceLock::new(),
        }
    }

    /// Resolves the client from a request's `headers` and `uri` now, if it
    /// is not yet: later guests see this answer even if a plugin changes
    /// the forwarding headers meanwhile.
    pub(crate) fn resolve(&self, headers: &HeaderMap, uri: &Uri) -> Option<&Bytes> {
        self.json
            .get_or_init(|| {
                let peer = self.peer?;
                let view = crate::access::resolve(peer, headers, uri, self.proxies);
                serde_json::to_vec(&view).ok().map(Bytes::from)
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
