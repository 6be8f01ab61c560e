//! Service calls between plugins: `services_call` from one plugin reaches an
//! exported function of another through the current chain. (Whether the
//! caller may call the target at all, it lists it in its dependencies, is
//! checked by the `services` capability before the call gets here.)

use bytes::Bytes;

use super::PluginHost;
use crate::capabilities::ServiceRouter;
use crate::plugins::plugin::HookFailure;
use crate::wasm::{CallError, HostError};

impl ServiceRouter for PluginHost {
    fn call(
        &self,
        caller: &str,
        target: &str,
        function: &str,
        input: Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, HostError>> + Send>>
    {
        let chain = self.current();
        let plugin = chain.get(target).cloned();
        let (caller, target, function) =
            (caller.to_owned(), target.to_owned(), function.to_owned());
        Box::pin(async move {
            let plugin = plugin.ok_or_else(|| {
                HostError::new("not_found", format!("plugin `{target}` is not loaded"))
            })?;
            if !plugin.manifest.services.contains(&function) {
                return Err(HostError::new(
                    "not_found",
                    format!(
                        "`{target}` offers no service `{function}` (it offers: {})",
                        plugin.manifest.services.join(", ")
                    ),
                ));
            }
            tracing::trace!(%caller, %target, %function, "service call");
            match plugin
                .call(&function, input, http::Extensions::new())
                .await
                .0
            {
                Ok(out) => Ok(out.to_vec()),
                Err(e) => Err(HostError::new(
                    match e.failure {
                        HookFailure::Call(CallError::Timeout(_)) => "timeout",
                        HookFailure::Call(CallError::Busy(_)) => "busy",
                        HookFailure::Call(CallError::Draining) => "unavailable",
                        _ => "service_failed",
                    },
                    e.to_string(),
                )),
            }
        })
    }
}
