//! `http`: outbound HTTP from guests, by URL pattern. The grant's types
//! and the private-address rules are in [`crate::grants`], where the
//! engine's outbound client reads them.
//!
//! A grant is a list of `scheme://host:port` patterns (`*` and `?` wildcards
//! in the host, `*` for any port). `api.example.com` alone means HTTP or HTTPS
//! on any port (the Extism `allowed_hosts` meaning); `https://api.example.com`
//! means HTTPS on 443 only.
//!
//! Private networks (loopback, RFC 1918, link-local, unique-local, CGNAT) are
//! refused *after DNS resolution* — a public name that resolves to
//! `127.0.0.1` is still refused — unless the grant names the address itself
//! (`http://127.0.0.1:8080`, `http://localhost:*`) or sets
//! `"privateNetworks": true`. The engine's outbound client re-checks every
//! address it connects to, so a name cannot be re-pointed (DNS rebinding)
//! between the check and the connection.

use std::sync::Arc;

use serde_json::Value;

use super::{Capability, CapabilitySpec, GrantContext, GrantValue};
use crate::grants::HttpGrant;

/// The `http` capability.
pub(super) struct HttpSpec;

impl CapabilitySpec for HttpSpec {
    fn capability(&self) -> Capability {
        Capability::HTTP
    }

    fn syntax(&self) -> &'static str {
        HttpGrant::SYNTAX
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        Ok(HttpGrant::parse_declaration(declared)?.map(|g| Arc::new(g) as GrantValue))
    }
}
