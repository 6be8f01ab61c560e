//! WebSocket pass-through for proxied requests.
//!
//! When a plugin's `proxy` answer allows it (`websocket`) and the client's
//! request asks for a WebSocket (HTTP/1.1 `Connection: upgrade`, `Upgrade:
//! websocket`, or an HTTP/2 extended CONNECT, which `extended_connect`
//! turned into the same), the host forwards the handshake with its upgrade
//! headers (over HTTP/1.1 always; for an HTTP/2 client, with a key of its
//! own, whose accept it checks). If the upstream switches protocols, the
//! client gets the 101 (an HTTP/2 client: a 200), through the earlier
//! plugins' `on_response` like any answer, and the host relays bytes — whole
//! frames as the two ends write them — both ways
//! until either side closes, the connection is silent for `idle`, or it has
//! lasted `total`. Frames are not parsed: each end speaks WebSocket to the
//! other through the host (only their heads are followed, to know where one
//! ends). When the server shuts down, each end gets a close frame
//! (`upstream_ws_close`) rather than a cut connection or one kept open.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse as _, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::error::{ApiError, ErrorKind};
use super::extended_connect::Stream;
use super::upstream::strip_hop_by_hop;
use super::upstream_ws_close::{End, Frames, going_away};

/// How long a closing handshake under way at shutdown may take to finish.
const HANDSHAKE_AT_SHUTDOWN: Duration = Duration::from_secs(2);

/// The server's relayed WebSockets: told to close when it shuts down, and
/// waited for.
#[derive(Debug)]
pub(crate) struct Relays {
    /// `true` once the server is shutting down; each relay holds a receiver.
    stop: watch::Sender<bool>,
}

impl Default for Relays {
    fn default() -> Self {
        Self {
            stop: watch::channel(false).0,
        }
    }
}

impl Relays {
    /// Tells every relay, and every one opened from now on, to close.
    pub(crate) fn close(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once no relay is left.
    pub(crate) async fn closed(&self) {
        self.stop.closed().await;
    }
}

/// How long a relayed connection may be silent, and live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relay {
    /// The longest silence, both ways together.
    pub(crate) idle: Duration,
    /// The longest life.
    pub(crate) total: Duration,
}

/// How the client asked for its WebSocket.
#[derive(Debug)]
pub(crate) enum Handshake {
    /// HTTP/1.1 `Upgrade`: its own `Sec-WebSocket-Key` goes up, the
    /// upstream's 101 comes back.
    Upgrade,
    /// HTTP/2 extended CONNECT: the host's `key` goes up, and a 200 comes
    /// back once the upstream's accept matches it.
    Connect { key: HeaderValue, stream: Stream },
}

/// How `req` asks for a WebSocket, if it does.
pub(crate) fn asked(req: &mut Request) -> Option<Handshake> {
    if let Some(stream) = req.extensions_mut().remove::<Stream>() {
        return Some(Handshake::Connect {
            key: Stream::key(),
            stream,
        });
    }
    let has = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    (req.version() == Version::HTTP_11
        && has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "websocket"))
    .then_some(Handshake::Upgrade)
}

impl Handshake {
    /// Sets the upgrade headers on the request for the upstream.
    pub(crate) fn request_headers(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Self::Connect { key, .. } = self {
            headers.insert(header::SEC_WEBSOCKET_KEY, key.clone());
        }
    }
}

/// The client's answer to an upstream that switched protocols: its 101 with
/// the upgrade headers (for an HTTP/2 client, a 200 without them), and,
/// once both connections are handed over, the relay between them (on its
/// own task). An upstream whose accept does not answer the host's key is
/// `502 UPSTREAM_FAILED`.
pub(crate) fn switch(
    mut upstream: hyper::Response<hyper::body::Incoming>,
    client_side: OnUpgrade,
    handshake: Handshake,
    relay: Relay,
    origin: Arc<str>,
    relays: &Relays,
) -> Response {
    let stop = relays.stop.subscribe();
    let upstream_side = hyper::upgrade::on(&mut upstream);
    let (mut parts, _) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.extensions = http::Extensions::new();
    // Over HTTP/2 the relay holds its connection busy while it lives.
    let held = match handshake {
        Handshake::Upgrade => {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts
                .headers
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            None
        }
        Handshake::Connect { key, stream } => {
            let accept = parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
            if !Stream::accepts(&key, accept.as_ref()) {
                return ApiError::new(
                    ErrorKind::UpstreamFailed,
                    format!(
                        "the upstream `{origin}` switched to WebSocket with a \
                         `Sec-WebSocket-Accept` that does not answer the host's key"
                    ),
                )
                .into_response();
            }
            parts.status = StatusCode::OK;
            parts.headers.remove(header::CONTENT_LENGTH);
            stream.relayed()
        }
    };
    tokio::spawn(async move {
        let _held = held;
        let (client, upstream) = match tokio::join!(client_side, upstream_side) {
            (Ok(c), Ok(u)) => (TokioIo::new(c), TokioIo::new(u)),
            (c, u) => {
                tracing::debug!(
                    upstream = %origin,
                    client = c.err().map(|e| e.to_string()),
                    upstream_error = u.err().map(|e| e.to_string()),
                    "a WebSocket upgrade did not complete"
                );
                return;
            }
        };
        let why = pump(client, upstream, relay, stop).await;
        tracing::debug!(upstream = %origin, "WebSocket relay ended: {why}");
    });
    Response::from_parts(parts, Body::empty())
}

/// Copies bytes both ways until one side closes or fails, a limit is
/// reached or the server shuts down; says which.
async fn pump(
    a: impl AsyncRead + AsyncWrite + Unpin,
    b: impl AsyncRead + AsyncWrite + Unpin,
    relay: Relay,
    mut stop: watch::Receiver<bool>,
) -> &'static str {
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    // The frames each end sends, followed to close between two of them.
    let mut from_client = Frames::default();
    let mut from_upstream = Frames::default();
    let mut end = tokio::time::Instant::now() + relay.total;
    let mut stopping = false;
    let why = loop {
        let idle = tokio::time::sleep(relay.idle);
        tokio::select! {
            n = ar.read(&mut up) => match n {
                Ok(0) | Err(_) => break "the client closed",
                Ok(n) => {
                    from_client.advance(&up[..n], false);
                    if bw.write_all(&up[..n]).await.is_err() {
                        break "the upstream closed";
                    }
                }
            },
            n = br.read(&mut down) => match n {
                Ok(0) | Err(_) => break "the upstream closed",
                Ok(n) => {
                    from_upstream.advance(&down[..n], false);
                    if aw.write_all(&down[..n]).await.is_err() {
                        break "the client closed";
                    }
                }
            },
            () = idle => break "idle limit",
            () = tokio::time::sleep_until(end) => {
                break if stopping { "server shutdown" } else { "duration limit" };
            }
            // A dropped sender (the server is gone) counts as a shutdown.
            () = async {
                // The guard is dropped here: it must not be held across an await.
                let _ = stop.wait_for(|s| *s).await;
            }, if !stopping => {
                if from_client.closed || from_upstream.closed {
                    // A closing handshake is under way: let it finish.
                    stopping = true;
                    end = end.min(tokio::time::Instant::now() + HANDSHAKE_AT_SHUTDOWN);
                    continue;
                }
                going_away(
                    End { read: &mut ar, write: &mut aw, sent: &mut from_client, buf: &mut up },
                    End { read: &mut br, write: &mut bw, sent: &mut from_upstream, buf: &mut down },
                )
                .await;
                return "server shutdown";
            }
        }
    };
    let _ = aw.shutdown().await;
    let _ = bw.shutdown().await;
    why
}
