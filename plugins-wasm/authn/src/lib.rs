//! `@buntime/plugin-authn`: who is calling. Bearer JWTs from OpenID
//! providers are verified by the host (`crypto_jwt_verify`: signature, key
//! set, expiry, issuer, audience), API keys of machine clients by their
//! SHA-256; either becomes the `X-Identity` header the
//! plugins and apps after it read; a request without a valid identity is
//! refused (401 JSON, or a redirect to the login page for browsers) unless
//! the app lists the route as public.
//!
//! - [`config`]: the config, claims to identity, public-route globs (pure);
//! - `guest`: the `on_init`, `on_request` and `handle` exports (wasm only).
//!
//! Options and failure modes: `docs/plugins/authn.md`.

pub mod config;
pub mod web;

#[cfg(target_arch = "wasm32")]
mod guest;
