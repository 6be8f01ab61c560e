//! `services`: calling a function another plugin exports.
//!
//! A plugin may call only plugins it depends on (`dependencies` or
//! `optionalDependencies`), and only the functions that plugin lists as
//! `services` in its manifest — never its hooks. Services speak JSON: the
//! callee receives the `input` value as JSON text and must return JSON.
//!
//! Grant: `"services": ["@buntime/plugin-keyval"]`, or `"services": true` for
//! every dependency.
//!
//! `services_call({"plugin", "function", "input"})` → the callee's JSON output.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::args::json_argument;
use super::state::no_context;
use super::{Capability, CapabilitySpec, GrantContext, GrantValue, string_list};
use crate::capabilities::GuestContext;
use crate::wasm::{HostFunction, ResultEncoding};

/// The `services` capability.
pub(super) struct ServicesSpec;

/// The plugins a guest may call.
#[derive(Debug, Clone, Default)]
pub struct ServicesGrant {
    /// Plugin names.
    pub plugins: Vec<String>,
}

impl CapabilitySpec for ServicesSpec {
    fn capability(&self) -> Capability {
        Capability::SERVICES
    }

    fn syntax(&self) -> &'static str {
        "\"services\": [\"@scope/plugin-you-depend-on\"] or true (every dependency)"
    }

    fn parse(
        &self,
        declared: &Value,
        ctx: &GrantContext<'_>,
    ) -> Result<Option<GrantValue>, String> {
        let plugins = match declared {
            Value::Bool(false) => return Ok(None),
            Value::Bool(true) => ctx.dependencies.to_vec(),
            other => string_list(other, "`services`")?,
        };
        for p in &plugins {
            if !ctx.dependencies.contains(p) {
                return Err(format!(
                    "`{p}` is not a dependency of this plugin; add it to `dependencies` (or `optionalDependencies`) to call its services"
                ));
            }
        }
        Ok(Some(Arc::new(ServicesGrant { plugins })))
    }

    fn host_functions(&self) -> Vec<HostFunction> {
        vec![HostFunction::new(
            "services_call",
            Capability::SERVICES,
            1,
            ResultEncoding::Envelope,
            |state, args| {
                let prepared = (|| {
                    let cx = GuestContext::of(state)?;
                    let req: CallReq = json_argument(state, args[0])?;
                    let allowed = state
                        .grants()
                        .get::<ServicesGrant>(Capability::SERVICES)
                        .is_some_and(|g| g.plugins.contains(&req.plugin));
                    if !allowed {
                        return Err(state.deny(
                            Capability::SERVICES,
                            "services_call",
                            format!("`{}` may not call services of `{}`", cx.name, req.plugin),
                            format!(
                                "\"services\": [\"{}\"], with `{}` in `dependencies`",
                                req.plugin, req.plugin
                            ),
                        ));
                    }
                    let router = cx.host.router().ok_or_else(no_context)?;
                    let input = Bytes::from(
                        req.input
                            .map_or_else(|| "null".to_owned(), |raw| raw.get().to_owned()),
                    );
                    Ok(router.call(&cx.name, &req.plugin, &req.function, input))
                })();
                Box::pin(async move {
                    let output = prepared?.await?;
                    Ok(Some(match serde_json::from_slice::<Value>(&output) {
                        Ok(_) => output,
                        Err(_) if output.is_empty() => b"null".to_vec(),
                        Err(_) => serde_json::to_vec(&String::from_utf8_lossy(&output))
                            .unwrap_or_default(),
                    }))
                })
            },
        )]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallReq {
    plugin: String,
    function: String,
    /// Passed on as text: the callee sees the caller's member order and
    /// number spelling.
    #[serde(default)]
    input: Option<Box<serde_json::value::RawValue>>,
}
