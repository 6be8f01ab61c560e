//! Buntime's end-to-end tests: real guests built from source, the real engine,
//! real HTTP on loopback. One binary, one module per feature.

mod app_body;
mod attacks;
mod bulk_vars;
mod cache;
mod grants;
mod hostile;
mod inline_access;
mod parity;
mod plugins;
mod profiling;
mod security;
mod server;
mod support;
mod wasi_direct;
