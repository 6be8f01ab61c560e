//! Hostile apps, plugins and clients against a real server: one file per class
//! of attack, each test failing without the defence it names (see
//! `docs/security.md` for the threat model and the guarantees).

mod allocation;
mod app_dir;
mod cache;
mod cancellation;
mod connections;
mod deadlines;
mod errors;
pub(crate) mod framing;
mod guests;
pub(crate) mod kernel;
mod raw_http;
mod reads;
mod sql;
