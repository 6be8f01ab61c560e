//! The floor for `benches/proxy.sh`: the least a reverse proxy built on
//! the same stack as Buntime (tokio, hyper's HTTP/1.1 server and client
//! connections) can cost. It forwards `/up/<rest>` to
//! `http://127.0.0.1:<upstream>/<rest>` over kept-alive connections,
//! streaming both bodies, adds `X-Forwarded-For` as the nginx path does,
//! and does nothing else: no plugin, no limits, no hop-by-hop handling, no
//! error pages. Buntime's proxy row minus this row is what Buntime's own
//! work costs; this row next to nginx's is what the stack costs.
//!
//! ```text
//! native-proxy <listen port> <upstream port>
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Body = http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>;

/// Idle senders to the one upstream, taken by a request and put back once
/// its answer's head arrived (hyper queues nothing on a busy HTTP/1
/// sender, so a sender is lent to one request at a time).
struct Upstream {
    addr: SocketAddr,
    idle: Mutex<Vec<SendRequest<Incoming>>>,
}

impl Upstream {
    async fn sender(&self) -> std::io::Result<SendRequest<Incoming>> {
        loop {
            let Some(mut sender) = self.idle.lock().expect("pool lock").pop() else {
                break;
            };
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(sender)
    }

    async fn forward(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, Infallible> {
        let Some(rest) = request.uri().path().strip_prefix("/up") else {
            return Ok(status(StatusCode::NOT_FOUND));
        };
        let path = match request.uri().query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        let Ok(uri) = path.parse::<Uri>() else {
            return Ok(status(StatusCode::BAD_REQUEST));
        };
        *request.uri_mut() = uri;
        if let Ok(peer) = HeaderValue::from_str(&peer.ip().to_string()) {
            request.headers_mut().insert("x-forwarded-for", peer);
        }
        let Ok(mut sender) = self.sender().await else {
            return Ok(status(StatusCode::BAD_GATEWAY));
        };
        let response = sender.send_request(request).await;
        // The answer's body is read on the connection this sender stands
        // for; hyper's `ready` waits for that before the sender is lent again.
        self.idle.lock().expect("pool lock").push(sender);
        Ok(match response {
            Ok(response) => response.map(http_body_util::Either::Left),
            Err(_) => status(StatusCode::BAD_GATEWAY),
        })
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(http_body_util::Either::Right(http_body_util::Empty::new()));
    *response.status_mut() = code;
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u16>());
    let (Some(Ok(port)), Some(Ok(upstream))) = (args.next(), args.next()) else {
        eprintln!("usage: native-proxy <listen port> <upstream port>");
        std::process::exit(2);
    };
    let upstream = Arc::new(Upstream {
        addr: SocketAddr::from(([127, 0, 0, 1], upstream)),
        idle: Mutex::new(Vec::new()),
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| upstream.clone().forward(request, peer));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
