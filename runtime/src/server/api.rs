//! The core API and internal routes: health, apps, pool metrics and stats.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ErrorDetail, ErrorKind};

/// `GET /_/api/health`.
pub(crate) async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": state.started.elapsed().as_secs(),
    }))
}

/// `GET /_/api/health/live`: the process answers.
pub(crate) async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /_/api/health/ready`: every worker dir is readable and no shutdown
/// is under way. An unreadable dir is named by its path, or in production
/// by its place in `RUNTIME_WORKER_DIRS` (`RUNTIME_WORKER_DIRS[0]`).
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let hidden = state.error_detail == ErrorDetail::Hidden;
    let missing: Vec<String> = state
        .catalog
        .dirs()
        .iter()
        .enumerate()
        .filter(|(_, d)| std::fs::read_dir(d).is_err())
        .map(|(i, d)| {
            if hidden {
                format!("RUNTIME_WORKER_DIRS[{i}]")
            } else {
                d.display().to_string()
            }
        })
        .collect();
    let draining = state.shutting_down.load(Ordering::Relaxed);
    let ok = missing.is_empty() && !draining;
    let body = Json(json!({
        "status": if ok { "ready" } else { "not_ready" },
        "unreadableWorkerDirs": missing,
        "shuttingDown": draining,
    }));
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// `GET /_/api/apps`: every app, its versions and kinds. In production
/// ([`ErrorDetail::Hidden`]) no absolute path is shown: no `dir`, and a
/// config error names `worker.jsonc` rather than its full path.
pub(crate) async fn apps(State(state): State<AppState>) -> Json<Value> {
    let hidden = state.error_detail == ErrorDetail::Hidden;
    let all = state.catalog.all();
    let apps: Vec<Value> = all
        .into_iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let settings = state.app_settings.get(v);
                    let kind = match settings.as_ref().map(|s| &s.kind) {
                        Ok(Some(super::apps::AppKind::Static(_))) => "static",
                        Ok(Some(super::apps::AppKind::Wasm(_))) => "wasm",
                        Ok(None) => "empty",
                        Err(_) => "invalid",
                    };
                    let config_error = settings.err().map(|e| {
                        if hidden {
                            let relative = crate::config::ConfigError::new(
                                crate::config::WORKER_CONFIG_FILE.as_ref(),
                                &e.field,
                                e.message,
                            );
                            relative.to_string()
                        } else {
                            e.to_string()
                        }
                    });
                    let mut entry = json!({
                        "version": v.version.as_ref().map_or("latest".to_owned(), |x| x.to_string()),
                        "kind": kind,
                        "configError": config_error,
                    });
                    if !hidden {
                        entry["dir"] = v.dir.display().to_string().into();
                    }
                    entry
                })
                .collect();
            json!({ "name": name, "versions": versions })
        })
        .collect();
    Json(json!({ "apps": apps }))
}

/// `GET /_/metrics`: the Prometheus exposition when the `Accept` header
/// asks for a text format (as Prometheus does), else the counters as JSON.
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(format) = exposition_format(accept) else {
        return metrics_json(&state).into_response();
    };
    match super::exposition::render(&state, format) {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        Err(_) => {
            super::error::ApiError::new(ErrorKind::Internal, "the metrics could not be encoded")
                .into_response()
        }
    }
}

/// The text format `accept` prefers over JSON, if any: the media range
/// with the highest `q` among OpenMetrics, `text/plain` and JSON; a tie
/// goes to the one listed first.
fn exposition_format(accept: &str) -> Option<super::exposition::Format> {
    use crate::server::exposition::Format;
    let mut best: Option<(f32, Option<Format>)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let kind = match parts.next().unwrap_or("").to_ascii_lowercase().as_str() {
            "application/openmetrics-text" => Some(Format::OpenMetrics),
            "text/plain" => Some(Format::Prometheus),
            "application/json" => None,
            _ => continue,
        };
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, kind));
        }
    }
    best.and_then(|(_, kind)| kind)
}

/// The counters as JSON, for the UI.
fn metrics_json(state: &AppState) -> Json<Value> {
    let pools = state.pools.snapshot();
    let sum = |f: fn(&crate::pool::AppStats) -> u64| pools.iter().map(|p| f(&p.stats)).sum::<u64>();
    let requests = sum(|s| s.requests.get());
    let latency = sum(|s| s.latency_us());
    Json(json!({
        "apps": pools.len(),
        "eventStreams": state.plugins.services().events.open_streams(),
        "hits": sum(|s| s.hits.get()),
        "misses": sum(|s| s.misses.get()),
        "evictions": state.pools.evictions.load(Ordering::Relaxed),
        "instancesCreated": sum(|s| s.created.get()),
        "instancesRetired": sum(|s| s.retired.get()),
        "instancesFailed": sum(|s| s.failed.get()),
        "requests": requests,
        "errors": sum(|s| s.errors.get()),
        "rejected": sum(|s| s.rejected.get()),
        "avgLatencyMs": if requests == 0 { 0.0 } else { latency as f64 / requests as f64 / 1000.0 },
        "engine": engine_metrics(state.pools.engine().stats()),
    }))
}

pub(super) fn engine_metrics(stats: &crate::wasm::EngineStats) -> Value {
    json!({
        "compiled": stats.compiled.get(),
        "cacheHits": stats.cache_hits.get(),
        "sharedCode": stats.shared.get(),
        "instances": stats.instances.get(),
        "traps": stats.traps.get(),
        "timeouts": stats.timeouts.get(),
        "directCalls": stats.direct_calls.get(),
        "fiberCalls": stats.fiber_calls.get(),
        "guestLogLines": stats.guest_log_lines.get(),
        "guestLogDropped": stats.guest_log_dropped.get(),
        "denials": stats.denials.get(),
        "denialsByCapability": stats.denials_by_capability(),
    })
}

/// `GET /_/stats`: per app version.
pub(crate) async fn stats(State(state): State<AppState>) -> Json<Value> {
    Json(stats_snapshot(&state))
}

/// `GET /_/sse`: `/_/stats` as server-sent events, one `stats` event a second,
/// until the client goes away (the stream is dropped with the connection) or
/// the server shuts down.
///
/// Counted against the caps on open streams, like plugin streams, under
/// the client's address (resolved through trusted proxies).
pub(crate) async fn sse(
    State(state): State<AppState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use axum::response::sse::{Event, KeepAlive, Sse};
    let peer = req.extensions().get::<super::ClientAddr>().map(|c| c.0);
    let client = super::guard::client_of(&state, &req, peer).address;
    let events = &state.plugins.services().events;
    let ticket = match events.open_stream(Some(client)) {
        Ok(t) => t,
        Err(e) => return super::plugin_stream::stream_refused(&e),
    };
    let ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    let stream = futures_util::stream::unfold(
        (state, ticks, ticket),
        |(state, mut ticks, ticket)| async move {
            ticks.tick().await;
            // End the stream on shutdown so it does not hold the drain open.
            if state.shutting_down.load(Ordering::Relaxed) {
                return None;
            }
            let event = Event::default()
                .event("stats")
                .json_data(stats_snapshot(&state));
            let event = event
                .unwrap_or_else(|_| Event::default().event("error").data("serialisation failed"));
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (state, ticks, ticket),
            ))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn stats_snapshot(state: &AppState) -> Value {
    let pools: Vec<Value> = state
        .pools
        .snapshot()
        .iter()
        .map(|p| {
            let requests = p.stats.requests.get();
            let latency = p.stats.latency_us();
            // Busy instances are on their request; idle ones are listed.
            let mut instances: Vec<Value> = (0..p.active())
                .map(|_| json!({ "state": "active" }))
                .collect();
            instances.extend(p.idle_instances().into_iter().map(|i| {
                json!({
                    "state": "idle",
                    "requests": i.requests,
                    "ageSeconds": i.age.as_secs_f64(),
                    "idleSeconds": i.idle.as_secs_f64(),
                })
            }));
            json!({
                "app": p.key(),
                "instances": instances,
                "active": p.active(),
                "queued": p.queued(),
                "idle": p.idle_count(),
                "requests": requests,
                "errors": p.stats.errors.get(),
                "ageSeconds": p.age().as_secs(),
                "avgLatencyMs": if requests == 0 { 0.0 } else { latency as f64 / requests as f64 / 1000.0 },
            })
        })
        .collect();
    json!({ "workers": pools })
}

/// `GET /.well-known/buntime`.
pub(crate) async fn well_known() -> Json<Value> {
    Json(json!({ "runtime": "buntime", "version": env!("CARGO_PKG_VERSION"), "api": "/_/api" }))
}

#[cfg(test)]
mod tests {
    use super::exposition_format;
    use crate::server::exposition::Format;

    #[test]
    fn accept_header_picks_the_exposition_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(exposition_format(prometheus), Some(Format::OpenMetrics));
        assert_eq!(
            exposition_format("text/plain; version=0.0.4"),
            Some(Format::Prometheus)
        );
        assert_eq!(
            exposition_format("text/plain;q=0.2, application/json"),
            None
        );
        assert_eq!(exposition_format("*/*"), None);
        assert_eq!(exposition_format(""), None);
        assert_eq!(
            exposition_format("text/html,application/xhtml+xml,*/*;q=0.8"),
            None
        );
        assert_eq!(exposition_format("application/openmetrics-text;q=0"), None);
    }
}
