//! The ceiling for the load harness: a plain axum server answering
//! `hello` on every path, on the port given as the first argument.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(9000);
    let app = axum::Router::new().fallback(|| async { "hello" });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
