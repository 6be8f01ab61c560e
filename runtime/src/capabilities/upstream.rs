//! `upstream`: the upstreams a plugin may delegate a request to.
//!
//! A plugin's `on_request` may answer `proxy` with a URL; the host then
//! forwards the request there itself (`server::upstream`). The grant lists
//! the URLs that may be reached, with the `http` grant's patterns and its
//! private-network rule (refused after DNS unless the grant names the host
//! or sets `privateNetworks`), so the two read and behave alike. No host
//! functions: the host checks the grant when it acts on the answer.

use std::sync::Arc;

use serde_json::Value;

use super::{Capability, CapabilitySpec, GrantContext, GrantValue, HttpGrant};

/// The `upstream` capability; its grant is an [`super::HttpGrant`].
pub(super) struct UpstreamSpec;

impl CapabilitySpec for UpstreamSpec {
    fn capability(&self) -> Capability {
        Capability::UPSTREAM
    }

    fn syntax(&self) -> &'static str {
        "\"upstream\": [\"http://127.0.0.1:*\", \"https://*.svc.cluster.local\"] or {\"allow\": [...], \"privateNetworks\": true}"
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        Ok(HttpGrant::parse_declaration(declared)?.map(|g| Arc::new(g) as GrantValue))
    }
}
