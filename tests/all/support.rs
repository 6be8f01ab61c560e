//! Shared helpers: engines with the test host functions, a loopback HTTP
//! server, the `extism` crate set up as the oracle, and [`eventually`], the
//! one way a test waits for something to happen.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use buntime::capabilities::{Capability, Grants};
use buntime::wasm::{Engine, EngineConfig, GuestOptions};
use buntime_tests::test_host_functions;

/// An engine with the test host functions and no disk cache.
pub fn engine() -> Engine {
    engine_with(EngineConfig::default())
}

/// An engine built from `config` plus the test host functions.
pub fn engine_with(mut config: EngineConfig) -> Engine {
    config.host_functions.extend(test_host_functions());
    Engine::new(config).expect("engine")
}

/// Everything the parity fixtures need, granted.
pub fn full_grants() -> Grants {
    Grants::default()
        .with(Capability::new("reverse"))
        .with(Capability::new("stamp"))
        .allow_host("127.0.0.1")
        .expect("valid pattern")
}

/// Options for a parity run: one config key, full grants, a generous timeout.
pub fn parity_options(name: &str) -> GuestOptions {
    GuestOptions::new(name)
        .config("greeting", "hi there")
        .grants(full_grants())
        .timeout(Duration::from_secs(10))
}

/// Starts a loopback HTTP server answering `/hello` with `hello` and
/// `/status/418` with 418; returns its address.
pub async fn http_server() -> SocketAddr {
    use axum::{Router, http::StatusCode, routing::get};
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/status/418",
            get(|| async { (StatusCode::IM_A_TEAPOT, "teapot") }),
        )
        .route("/big", get(|| async { vec![b'x'; 2 << 20] }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// The `extism` crate's plugin for the same fixture and settings.
pub fn extism_plugin(path: &str, wasi: bool) -> extism::Plugin {
    use extism::{Manifest, PTR, PluginBuilder, UserData, Wasm};
    let manifest = Manifest::new([Wasm::file(path)])
        .with_config_key("greeting", "hi there")
        .with_allowed_host("127.0.0.1")
        .with_timeout(Duration::from_secs(10));
    PluginBuilder::new(manifest)
        .with_wasi(wasi)
        .with_function(
            "reverse",
            [PTR],
            [PTR],
            UserData::new(()),
            |plugin, inputs, outputs, _| {
                let bytes: Vec<u8> = plugin.memory_get_val(&inputs[0])?;
                let reversed: Vec<u8> = bytes.into_iter().rev().collect();
                plugin.memory_set_val(&mut outputs[0], reversed)?;
                Ok(())
            },
        )
        .with_function(
            "stamp",
            [PTR],
            [PTR],
            UserData::new(()),
            |plugin, inputs, outputs, _| {
                let text: String = plugin.memory_get_val(&inputs[0])?;
                let envelope = serde_json::json!({ "ok": format!("{text}!") }).to_string();
                plugin.memory_set_val(&mut outputs[0], envelope)?;
                Ok(())
            },
        )
        .build()
        .expect("extism plugin")
}

/// How often [`eventually`] looks again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Runs `probe` until it answers `Ok`, looking again every 20 ms, and
/// returns what it answered; once `within` has passed, fails the test
/// saying what was awaited and the last value `probe` saw (its `Err`).
///
/// A deadline, not a number of tries: on a loaded machine each try can take
/// long, so a count of tries gives up after a time nobody chose. The
/// passing case returns as soon as the condition holds, so `within` can be
/// generous at no cost.
pub async fn eventually<T, S, F>(what: &str, within: Duration, mut probe: impl FnMut() -> F) -> T
where
    S: Debug,
    F: Future<Output = Result<T, S>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {last:?}")
            }
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}
