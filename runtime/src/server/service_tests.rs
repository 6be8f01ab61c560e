//! The size of a request's future. Every request allocates its future and
//! copies parts of it as it is built and awaited, so bytes in it cost on
//! every request; and async code grows it silently (each `.await` point of a
//! child future is a slot of its own, and a rarely taken branch sizes the
//! whole). These budgets catch such growth where it happens.

use super::*;
use crate::plugins::PluginSources;
use crate::wasm::{Engine, EngineConfig};

/// Budgets with some room over the sizes measured, debug and release alike:
/// an app request through the service 2.9 KiB, the chain's own future
/// 1.8 KiB. The app call and the hooks are boxed inside the chain
/// (`pipeline.rs`): held inline, the largest of them would size the chain's
/// future and the service's, and be copied with them on every move.
const SERVICE_BUDGET: usize = 4 << 10;
const CHAIN_BUDGET: usize = 5 << 9;

#[tokio::test]
async fn a_requests_future_stays_within_its_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(EngineConfig {
        host_functions: super::super::host_functions(),
        ..EngineConfig::default()
    })
    .expect("engine");
    let state = AppState::build(
        engine,
        vec![dir.path().to_owned()],
        4,
        PluginSources::default(),
    )
    .await
    .expect("state");
    let mut service = super::super::service(state.clone());
    let request = || {
        http::Request::get("/app/x")
            .body(Body::empty())
            .expect("request")
    };

    let call = tower::Service::call(&mut service, request());
    let service_bytes = std::mem::size_of_val(&*call);
    let chain = super::super::pipeline::run(&state, request(), None, None);
    let chain_bytes = std::mem::size_of_val(&chain);
    eprintln!("service future {service_bytes} B, chain future {chain_bytes} B");
    assert!(
        service_bytes <= SERVICE_BUDGET,
        "a request's future is {service_bytes} bytes (budget {SERVICE_BUDGET}): box the rare path that grew it"
    );
    assert!(
        chain_bytes <= CHAIN_BUDGET,
        "the chain's future is {chain_bytes} bytes (budget {CHAIN_BUDGET}): box the rare path that grew it"
    );
}
