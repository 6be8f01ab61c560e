//! `buntime_request_client`: who the client of the current request is, for
//! the guests that ask.
//!
//! The client (its peer, its address through trusted proxies, the scheme and
//! host it used) is not part of the request head: most apps and plugins never
//! read it, and decoding it in every guest on every request cost a measurable
//! share of a warm request. A module that imports this function gets it on
//! demand; the server resolves and serialises it only for such modules
//! ([`super::super::GuestModule::reads_client`]).

use bytes::Bytes;

use super::super::host_fn::{HostFunction, ResultEncoding};

/// The name of the import, in `extism:host/user`.
pub const REQUEST_CLIENT: &str = "buntime_request_client";

/// The client of the current call's request as JSON (set by the caller as an
/// extension): `{"peer", "address", "scheme", "host"?}`.
#[derive(Debug, Clone)]
pub struct RequestClient(pub Bytes);

/// `buntime_request_client() -> handle`: a new block holding the client's
/// JSON, or 0 when the request has no client (served in process).
pub fn client_function() -> HostFunction {
    HostFunction::ungated_sync(REQUEST_CLIENT, 0, ResultEncoding::Raw, |state, _| {
        Ok(state
            .extensions
            .get::<RequestClient>()
            .map(|c| c.0.to_vec()))
    })
}
