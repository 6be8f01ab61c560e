//! WebSocket over HTTP/2: the extended `CONNECT` of RFC 8441.
//!
//! An HTTP/2 client opens a WebSocket with a `CONNECT` whose `:protocol` is
//! `websocket`; once answered 2xx, the stream carries the WebSocket frames.
//! The server offers it (`SETTINGS_ENABLE_CONNECT_PROTOCOL`, `listener.rs`),
//! and this module owns what happens around such a request:
//!
//! - **In** ([`enter`]): the request becomes the handshake the chain knows
//!   from HTTP/1.1: method `GET`, `Connection: upgrade`, `Upgrade:
//!   websocket`, the client's own `Sec-WebSocket-*` headers (an HTTP/2
//!   client sends no `Sec-WebSocket-Key`). Any other `:protocol` is
//!   answered `501 PROTOCOL_NOT_SUPPORTED` before the chain runs.
//! - **Through**: a plugin that delegates it to an upstream with WebSocket
//!   on has the host open that upstream with an HTTP/1.1 handshake, under a
//!   key of the host's ([`Stream::key`]) whose `Sec-WebSocket-Accept` it
//!   checks, and relay the frames (`upstream_ws.rs`, the same relay and
//!   limits as HTTP/1.1); the client's answer is a 200.
//! - **Out** ([`Stream::leave`]): any other 2xx answer (an app's page, a
//!   core route, an upstream that did not switch) would tell the client its
//!   WebSocket is open on a stream nobody relays: it becomes `400
//!   WEBSOCKET_NOT_RELAYED`. Other answers pass as they are.
//!
//! The relay counts as a request in flight on its connection while it
//! lives, so the connection's idle timeout (`connection.rs`) does not close
//! the HTTP/2 connection under it: its own idle and total limits apply, as
//! over HTTP/1.1, where the relay has the connection to itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use super::connection::{Activity, InFlight};
use super::error::{ApiError, ErrorDetail, ErrorKind, render};
use super::request_id::X_REQUEST_ID;

/// The `:protocol` relayed (RFC 8441 §4).
const WEBSOCKET: &str = "websocket";
/// Appended to a key to make its `Sec-WebSocket-Accept` (RFC 6455 §4.2.2).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The most of a refused `:protocol` quoted back.
const QUOTED: usize = 64;

/// One WebSocket asked for over HTTP/2: kept by the service to check the
/// answer, and carried (a request extension) to the host's proxy, which
/// relays it.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    /// Set once the upstream switched and the relay is set up.
    relayed: Arc<AtomicBool>,
    /// The client connection's activity (`None`: served in process).
    activity: Option<Arc<Activity>>,
    /// The request's path, for the refusal.
    path: Arc<str>,
}

impl Stream {
    /// A fresh `Sec-WebSocket-Key` for the upstream handshake: 16 random
    /// bytes in base64 (RFC 6455 §4.1).
    pub(crate) fn key() -> HeaderValue {
        let mut nonce = [0u8; 16];
        // A fixed nonce still makes a valid handshake; a random one is what
        // RFC 6455 asks (it only guards against caching intermediaries).
        let _ = getrandom::fill(&mut nonce);
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        HeaderValue::try_from(key).unwrap_or(HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="))
    }

    /// Whether `accept` is the `Sec-WebSocket-Accept` that answers `key`.
    pub(crate) fn accepts(key: &HeaderValue, accept: Option<&HeaderValue>) -> bool {
        let mut sha = Sha1::new();
        sha.update(key.as_bytes());
        sha.update(ACCEPT_GUID);
        let expected = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
        accept.is_some_and(|a| a.as_bytes() == expected.as_bytes())
    }

    /// Marks the WebSocket relayed, and holds its connection as busy until
    /// the returned guard drops (with the relay).
    pub(crate) fn relayed(&self) -> Option<InFlight> {
        self.relayed.store(true, Ordering::Release);
        self.activity.as_ref().map(Activity::begin)
    }

    /// The answer the client gets: `res`, unless it is a 2xx the relay did
    /// not make (rendered with the request's id, under `detail`).
    pub(crate) fn leave(&self, res: Response, detail: ErrorDetail) -> Response {
        let status = res.status();
        if !status.is_success() || self.relayed.load(Ordering::Acquire) {
            return res;
        }
        let err = ApiError::new(
            ErrorKind::WebSocketNotRelayed,
            format!(
                "`{}` answered a WebSocket over HTTP/2 (extended CONNECT) with {status} instead \
                 of relaying it: only a plugin that delegates the request to an upstream with \
                 WebSocket on (a proxy rule with `\"websocket\": true`), and an upstream that \
                 switches protocols, open one",
                self.path
            ),
        );
        let id = res.headers().get(X_REQUEST_ID).cloned();
        let mut refused = render(
            &err,
            err.kind.status(),
            id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
            detail,
        );
        if let Some(id) = id {
            refused.headers_mut().insert(X_REQUEST_ID, id);
        }
        refused
    }
}

/// Turns an extended `CONNECT` for `websocket` into the chain's handshake
/// (see the module docs) and returns what the service keeps of it; `None`
/// for every other request, left as it is. An extended `CONNECT` for any
/// other protocol is the error to answer.
pub(crate) fn enter(
    req: &mut Request,
    activity: Option<&Arc<Activity>>,
) -> Result<Option<Stream>, ApiError> {
    if req.method() != Method::CONNECT {
        return Ok(None);
    }
    // A plain CONNECT (no `:protocol`) is no concern of this module.
    let Some(protocol) = req.extensions_mut().remove::<hyper::ext::Protocol>() else {
        return Ok(None);
    };
    if !protocol.as_str().eq_ignore_ascii_case(WEBSOCKET) {
        let quoted: String = protocol.as_str().chars().take(QUOTED).collect();
        return Err(ApiError::new(
            ErrorKind::ProtocolNotSupported,
            format!(
                "extended CONNECT with `:protocol` `{}`: this server relays only `websocket` \
                 (RFC 8441)",
                quoted.escape_debug()
            ),
        )
        .public());
    }
    *req.method_mut() = Method::GET;
    let headers = req.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(WEBSOCKET));
    let stream = Stream {
        relayed: Arc::new(AtomicBool::new(false)),
        activity: activity.cloned(),
        path: Arc::from(req.uri().path()),
    };
    req.extensions_mut().insert(stream.clone());
    Ok(Some(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_of_rfc_6455s_example_key() {
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        let accept = HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(Stream::accepts(&key, Some(&accept)));
        assert!(!Stream::accepts(&key, Some(&key)));
        assert!(!Stream::accepts(&key, None));
        let fresh = Stream::key();
        assert_eq!(fresh.len(), 24);
        assert_ne!(fresh, Stream::key());
    }

    #[test]
    fn only_a_websocket_connect_is_turned_into_a_handshake() {
        let connect = |protocol: Option<&'static str>| {
            let mut req = Request::builder()
                .method(Method::CONNECT)
                .uri("http://example.com/ws")
                .body(axum::body::Body::empty())
                .unwrap();
            if let Some(p) = protocol {
                req.extensions_mut()
                    .insert(hyper::ext::Protocol::from_static(p));
            }
            req
        };
        let mut ws = connect(Some("websocket"));
        assert!(enter(&mut ws, None).unwrap().is_some());
        assert_eq!(ws.method(), Method::GET);
        assert_eq!(ws.headers()[header::UPGRADE], "websocket");
        assert!(ws.extensions().get::<Stream>().is_some());

        let mut plain = connect(None);
        assert!(enter(&mut plain, None).unwrap().is_none());
        assert_eq!(plain.method(), Method::CONNECT);

        let err = enter(&mut connect(Some("connect-udp")), None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::ProtocolNotSupported);
        assert!(err.message.contains("connect-udp"), "{}", err.message);
    }
}
