//! The `log` grant for plugins, observed with a real log subscriber (its own
//! test binary, because the subscriber is process-wide).

use buntime::capabilities::{Capability, Grants};
use buntime::wasm::{Engine, EngineConfig, GuestOptions, HostFunction, ResultEncoding};

/// The fixture also imports two host functions; they are not called here.
fn unused(name: &'static str) -> HostFunction {
    HostFunction::ungated(name, 1, ResultEncoding::Raw, |_, _| {
        Box::pin(async { Ok(None) })
    })
}

#[tokio::test]
async fn a_plugin_without_the_log_grant_is_silenced_and_counted() {
    // At `info`, the PDK skips trace and debug itself (`get_log_level`), and
    // calls `log_info`, `log_warn` and `log_error`.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_test_writer()
        .try_init();
    let engine = Engine::new(EngineConfig {
        host_functions: vec![unused("reverse"), unused("stamp")],
        ..EngineConfig::default()
    })
    .expect("engine");
    let wasm = std::fs::read(buntime_fixtures::BASICS).expect("fixture");

    let silenced = engine
        .load(&wasm, GuestOptions::new("no-log").log_requires_grant(true))
        .expect("load");
    let mut instance = silenced.instantiate().await.expect("instance");
    instance.call("log_all", "").await.expect("call");
    let denied = engine.stats().denials_by_capability();
    assert_eq!(
        denied.get("log"),
        Some(&3),
        "one denial per call: {denied:?}"
    );

    let granted = engine
        .load(
            &wasm,
            GuestOptions::new("may-log")
                .log_requires_grant(true)
                .grants(Grants::default().with(Capability::LOG)),
        )
        .expect("load");
    let mut instance = granted.instantiate().await.expect("instance");
    instance.call("log_all", "").await.expect("call");
    assert_eq!(
        engine.stats().denials_by_capability().get("log"),
        Some(&3),
        "no new denial"
    );
    assert_eq!(engine.stats().denials.get(), 3);
}
