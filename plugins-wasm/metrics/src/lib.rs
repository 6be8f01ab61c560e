//! `@buntime/plugin-metrics`: the server's key figures for a dashboard.
//!
//! - [`figures`]: turning the host's snapshot (the `metrics` capability)
//!   into the summary, the per-app stats and a sample over an interval,
//!   with latency percentiles estimated from the duration histograms (pure);
//! - `guest`: the routes, the shared history and the stream (wasm only).
//!
//! Routes and options: `docs/plugins/metrics.md`.

pub mod figures;

#[cfg(target_arch = "wasm32")]
mod guest;
