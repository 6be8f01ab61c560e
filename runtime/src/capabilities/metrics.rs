//! `metrics`: reading the server's figures (the metrics plugin's source).
//!
//! and registering a plugin's own metrics, which the host's `/_/metrics`
//! exposition writes with its own ([`crate::metrics::plugin`]).
//!
//! Grant: `"metrics": true` (both), or `{"read": true, "register": true}`.
//!
//! | function | input | result |
//! |---|---|---|
//! | `metrics_snapshot` | none (handle 0) | the server's figures as JSON: HTTP, per app version (with duration histograms), pool, plugins, engine (docs/capabilities.md §15) |
//! | `metrics_register` | `{"name", "kind", "help"?, "labels"?: [{"name", "values"}]}` | `{"id", "series"}` |
//! | `metrics_add`, `metrics_set`, `metrics_observe` | `(id: i64, value: i64)` | nothing (handle 0) |
//! | `metrics_values` | none | the plugin's own families with their values |
//!
//! The snapshot is built from the same atomics the `/_/metrics` exposition
//! reads, at the time of the call; nothing is recorded for it. Updates take
//! two integers rather than JSON and answer nothing, so counting costs the
//! call and one atomic operation.

mod series;

use std::sync::Arc;

use serde_json::Value;

use super::state::no_context;
use super::{Capability, CapabilitySpec, GrantContext, GrantValue};
use crate::capabilities::GuestContext;
use crate::wasm::{HostError, HostFunction, ResultEncoding};

/// The capability's name.
pub(crate) const METRICS: Capability = Capability::new("metrics");

/// The declaration syntax, shown in parse errors and denials.
const SYNTAX: &str = "\"metrics\": true or {\"read\": true, \"register\": true}";

/// The `metrics` capability.
pub(super) struct MetricsSpec;

/// What a plugin may do with the server's metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsGrant {
    /// Read the server's figures (`metrics_snapshot`).
    pub read: bool,
    /// Register and update its own metrics.
    pub register: bool,
}

impl CapabilitySpec for MetricsSpec {
    fn capability(&self) -> Capability {
        METRICS
    }

    fn syntax(&self) -> &'static str {
        SYNTAX
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        let grant = match declared {
            Value::Bool(false) => return Ok(None),
            Value::Bool(true) => MetricsGrant {
                read: true,
                register: true,
            },
            Value::Object(map) => {
                let mut grant = MetricsGrant::default();
                for (key, value) in map {
                    let Value::Bool(on) = value else {
                        return Err(format!("`{key}` must be true or false, found {value}"));
                    };
                    match key.as_str() {
                        "read" => grant.read = *on,
                        "register" => grant.register = *on,
                        other => {
                            return Err(format!("unknown field `{other}`; known: read, register"));
                        }
                    }
                }
                grant
            }
            other => return Err(format!("expected true, false or an object, found {other}")),
        };
        Ok(Some(Arc::new(grant)))
    }

    fn host_functions(&self) -> Vec<HostFunction> {
        let mut all = series::host_functions();
        all.push(HostFunction::new_sync(
            "metrics_snapshot",
            METRICS,
            0,
            ResultEncoding::Envelope,
            |state, _| {
                require(state, "metrics_snapshot", "read")?;
                let cx = GuestContext::of(state)?;
                let view = cx.host.metrics_view().ok_or_else(no_context)?;
                serde_json::to_vec(&view.snapshot())
                    .map(Some)
                    .map_err(|e| HostError::new("internal", e.to_string()))
            },
        ));
        all
    }
}

/// Refuses a call the grant's `field` does not cover, naming the grant.
fn require(state: &crate::wasm::HostState, function: &str, field: &str) -> Result<(), HostError> {
    let grant = state.grants().get::<MetricsGrant>(METRICS);
    let allowed = match field {
        "read" => grant.is_some_and(|g| g.read),
        _ => grant.is_some_and(|g| g.register),
    };
    if allowed {
        return Ok(());
    }
    let what = if field == "read" {
        "reading the server's metrics"
    } else {
        "registering metrics"
    };
    Err(state.deny(
        METRICS,
        function,
        format!("{what} is not granted"),
        format!("\"metrics\": {{\"{field}\": true}}"),
    ))
}
