//! The `metrics` functions over a plugin's own series: registering a
//! family, updating a series by id, reading the values back.

use serde_json::{Value, json};

use super::{METRICS, require};
use crate::capabilities::GuestContext;
use crate::capabilities::args::json_argument;
use crate::metrics::plugin::{FamilyDef, Series};
use crate::wasm::{HostError, HostFunction, HostState, ResultEncoding};

/// An update: the series id and the value, as the guest passed them.
fn update(
    name: &'static str,
    apply: fn(&crate::metrics::plugin::PluginMetrics, u64, i64),
) -> HostFunction {
    HostFunction::new_sync(name, METRICS, 2, ResultEncoding::Raw, move |state, args| {
        // Ids exist only after a registration, which needs the grant; an
        // unknown id is ignored, so counting never fails a request.
        if let Some(cx) = state.context::<GuestContext>() {
            apply(&cx.metrics, args[0], args[1] as i64);
        }
        Ok(None)
    })
}

/// The plugin's families and their values, as `metrics_values` answers.
fn values(state: &HostState) -> Result<Value, HostError> {
    let cx = GuestContext::of(state)?;
    let families: Vec<Value> = cx
        .metrics
        .families()
        .iter()
        .map(|f| {
            let series: Vec<Value> = (0..f.len)
                .map(|i| {
                    let labels: serde_json::Map<String, Value> = f
                        .labels_of(i)
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), json!(v)))
                        .collect();
                    match cx.metrics.series(f.first + i) {
                        Some(Series::Counter(c)) => json!({ "labels": labels, "value": c.get() }),
                        Some(Series::Gauge(g)) => json!({
                            "labels": labels,
                            "value": g.load(std::sync::atomic::Ordering::Relaxed),
                        }),
                        Some(Series::Histogram(h)) => {
                            let s = h.snapshot();
                            json!({ "labels": labels, "count": s.count, "sum": s.sum })
                        }
                        None => json!({ "labels": labels }),
                    }
                })
                .collect();
            json!({ "name": f.def.name, "id": f.first, "series": series })
        })
        .collect();
    Ok(json!(families))
}

pub(super) fn host_functions() -> Vec<HostFunction> {
    vec![
        HostFunction::new_sync(
            "metrics_register",
            METRICS,
            1,
            ResultEncoding::Envelope,
            |state, args| {
                require(state, "metrics_register", "register")?;
                let cx = GuestContext::of(state)?;
                let def: FamilyDef = json_argument(state, args[0])?;
                let (id, series) = cx.metrics.register(def).map_err(|e| {
                    let code = if e.contains("may have are left") {
                        "limit_exceeded"
                    } else {
                        "invalid_argument"
                    };
                    HostError::new(code, e)
                })?;
                Ok(Some(
                    json!({ "id": id, "series": series })
                        .to_string()
                        .into_bytes(),
                ))
            },
        ),
        update("metrics_add", |m, id, v| m.add(id, v)),
        update("metrics_set", |m, id, v| m.set(id, v)),
        update("metrics_observe", |m, id, v| m.observe(id, v.max(0) as u64)),
        HostFunction::new_sync(
            "metrics_values",
            METRICS,
            0,
            ResultEncoding::Envelope,
            |state, _| {
                require(state, "metrics_values", "register")?;
                Ok(Some(values(state)?.to_string().into_bytes()))
            },
        ),
    ]
}
