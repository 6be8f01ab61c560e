//! `@buntime/plugin-authn`: who is calling. Bearer JWTs from OpenID
//! providers are verified by the host (`crypto_jwt_verify`: signature, key
//! set, expiry, issuer, audience), API keys of machine clients by their
//! SHA-256; browsers log in with an OpenID provider (authorization code +
//! PKCE) or an email and password and then carry a server-side session in a
//! cookie. Any of these becomes the `X-Identity` header the plugins and apps
//! after it read; a request without a valid identity is refused (401 JSON,
//! or a redirect to the login page for browsers) unless the app lists the
//! route as public.
//!
//! - [`config`], [`oidc`], [`password`], [`routes`]: the config, claims to
//!   identity, public-route globs (pure);
//! - [`redirect`]: the redirect allow-list, cookies and forms (pure);
//! - [`web`]: answers and the redirect to the login page (the page is
//!   `ui/index.html`, served by the host under `/_/auth/`);
//! - `guest`: the exports, the flows, sessions and accounts (wasm only).
//!
//! Options and failure modes: `docs/plugins/authn.md`.

pub mod config;
pub mod oidc;
pub mod password;
pub mod redirect;
pub mod routes;
pub mod web;

#[cfg(target_arch = "wasm32")]
mod guest;
