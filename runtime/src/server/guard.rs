//! The check in front of the core routes and the plugin routes: the
//! request's client and key against what the route needs
//! ([`crate::access`]), refusals as JSON errors with a code.
//!
//! | status | code | when |
//! |---|---|---|
//! | 401 | `API_KEY_REQUIRED` | no key, and one is configured — or none is and the client is not on this machine |
//! | 401 | `API_KEY_INVALID` | an unknown, revoked or expired key |
//! | 403 | `PERMISSION_DENIED` | the key's role lacks the permission |
//! | 403 | `CROSS_SITE_REQUEST` | a mutating request a browser marked cross-site, without a key header |
//! | 429 | `TOO_MANY_KEY_ATTEMPTS` | the client's address sent too many invalid keys lately ([`crate::access::FailedAttempts`]) |

use std::net::{Ipv4Addr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::routes::Guard;
use super::{ApiError, AppState, ClientAddr, ErrorKind};
use crate::access::{Caller, ClientView, Needed, Permission, Refusal};

/// The peer of a request served in process (tests, benchmarks): it has
/// no connection, so it comes from this machine.
const IN_PROCESS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// The API key a request to a plugin route carried, taken out of its
/// headers before the chain ([`take_key`]).
#[derive(Debug, Clone)]
pub(crate) struct PresentedKey(String);

impl PresentedKey {
    /// The key as presented.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Moves the caller's API key out of a request to `/_/…` into an
/// extension, so no plugin (hooks or the route) sees it: `X-API-Key`, and
/// `Authorization: Bearer` when the token is one of this server's keys
/// (another bearer token, such as a JWT for a plugin, stays).
pub(crate) fn take_key(state: &AppState, req: &mut Request) {
    let headers = req.headers_mut();
    let key = match headers.remove(crate::access::API_KEY_HEADER) {
        Some(v) => v.to_str().ok().map(|k| k.trim().to_owned()),
        None => {
            let bearer = crate::access::presented_key(headers)
                .filter(|t| state.access.is_runtime_key(t))
                .map(str::to_owned);
            if bearer.is_some() {
                headers.remove(header::AUTHORIZATION);
            }
            bearer
        }
    };
    if let Some(key) = key {
        req.extensions_mut().insert(PresentedKey(key));
    }
}

/// The middleware of every guarded core route.
pub(crate) async fn core_route(
    State((state, guard)): State<(AppState, Guard)>,
    mut req: Request,
    next: Next,
) -> Response {
    let needed = match guard {
        Guard::Public => return next.run(req).await,
        Guard::Metrics if state.access.policy.metrics_public => return next.run(req).await,
        Guard::Metrics => Permission::WorkersRead,
        Guard::Needs(p) => p,
    };
    let peer = req.extensions().get::<ClientAddr>().map(|c| c.0);
    match authorize(&state, Needed::Core(needed), &req, peer) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(refusal) => refused(refusal),
    }
}

/// The client of `req` from `peer` (`None`: served in process) as the
/// server sees it.
pub(crate) fn client_of<'a>(
    state: &AppState,
    req: &'a Request,
    peer: Option<SocketAddr>,
) -> ClientView<'a> {
    crate::access::resolve(
        peer.unwrap_or(IN_PROCESS),
        req.headers(),
        req.uri(),
        &state.access.policy.trusted_proxies,
    )
}

/// Whether `req` from `peer` may do what `needed` names (a refusal is
/// logged at debug level with the client's address).
pub(crate) fn authorize(
    state: &AppState,
    needed: Needed<'_>,
    req: &Request,
    peer: Option<SocketAddr>,
) -> Result<Caller, Refusal> {
    let client = client_of(state, req, peer);
    let key = match req.extensions().get::<PresentedKey>() {
        Some(k) => Some(k.0.as_str()),
        None => crate::access::presented_key(req.headers()),
    };
    state
        .access
        .authorize(needed, req.method(), req.headers(), key, &client)
        .map_err(|refusal| {
            tracing::debug!(
                client = %client.address,
                path = req.uri().path(),
                needed = %needed,
                ?refusal,
                "request refused"
            );
            refusal
        })
}

/// A refusal as the client sees it.
pub(crate) fn refused(refusal: Refusal) -> Response {
    let mut retry_after = None;
    let (kind, message) = match refusal {
        Refusal::KeyRequired { local_only: false } => (
            ErrorKind::ApiKeyRequired,
            "this route needs an API key: send it in `X-API-Key` or `Authorization: Bearer`"
                .to_owned(),
        ),
        Refusal::KeyRequired { local_only: true } => (
            ErrorKind::ApiKeyRequired,
            "this route needs an API key; none is configured, so only clients on the server's own machine are served without one: set RUNTIME_MASTER_KEY, or create a key from that machine (POST /_/api/keys)"
                .to_owned(),
        ),
        Refusal::KeyInvalid(why) => (ErrorKind::ApiKeyInvalid, why.to_owned()),
        Refusal::Forbidden { needed, caller } => (
            ErrorKind::PermissionDenied,
            format!("{caller} lacks the permission `{needed}`"),
        ),
        Refusal::CrossSite => (
            ErrorKind::CrossSiteRequest,
            "a request from another site cannot change anything here; clients send an API key header (browsers send none across sites)"
                .to_owned(),
        ),
        Refusal::TooManyAttempts(wait) => {
            let seconds = wait.as_secs() + 1;
            retry_after = Some(seconds);
            (
                ErrorKind::TooManyKeyAttempts,
                format!("too many invalid API keys came from this address; retry in {seconds} s"),
            )
        }
    };
    let mut err = ApiError::new(kind, message).public();
    err.retry_after = retry_after;
    let status = kind.status();
    let mut res = err.into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"buntime\""),
        );
    }
    res
}
