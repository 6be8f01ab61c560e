//! `@buntime/plugin-logs`: the host's log feed (runtime records, the apps'
//! and plugins' log lines) kept in a bounded buffer, queried, counted and
//! tailed under `/_/logs/api`.
//!
//! - [`query`]: query parameters, filtering and stats (pure);
//! - `guest`: the exports and the buffer (wasm only).
//!
//! **One buffer whatever instance answers.** The plugin runs on several
//! instances that share no memory, so the buffer lives in the host's `state`
//! store, which all of them share and which outlives reloads: a ring of
//! `maxEntries` slots (`r:<seq % maxEntries>`) filled in order of one
//! atomic sequence (`seq`). A single instance (`limits.instances: 1`) would
//! also give one buffer, but would serialize every query behind feed
//! delivery and lose the buffer whenever that instance is discarded or the
//! plugin reloads.
//!
//! Routes and the record format: `docs/plugins/logs.md`.

pub mod query;

#[cfg(target_arch = "wasm32")]
mod guest;
