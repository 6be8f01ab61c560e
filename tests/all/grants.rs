//! Capability checks on host functions, and load-time errors.

use buntime::capabilities::{Capability, Grants};
use buntime::wasm::{Allocation, CallError, EngineConfig, GuestOptions, LoadError};
use buntime_fixtures as fx;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_host_function_without_its_grant_stops_the_guest_with_a_hint() {
    let engine = support::engine();
    let module = engine
        .load(&fx::bytes(fx::BASICS), GuestOptions::new("nogrant"))
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let err = instance
        .call("host_reverse", "abc")
        .await
        .expect_err("denied");
    let CallError::HostFunction(message) = &err else {
        panic!("expected a host-function error, got {err:?}");
    };
    assert!(message.contains("capability `reverse` denied"), "{message}");
    assert!(message.contains("extism:host/user::reverse"), "{message}");
    assert!(
        message.contains("grant it in the guest's manifest"),
        "{message}"
    );
    assert_eq!(engine.stats().denials.get(), 1);
    assert_eq!(
        engine.stats().denials_by_capability().get("reverse"),
        Some(&1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_host_function_without_its_grant_returns_an_error_the_guest_can_handle() {
    let engine = support::engine();
    let module = engine
        .load(&fx::bytes(fx::BASICS), GuestOptions::new("nogrant"))
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let out = instance
        .call("host_stamp", "x")
        .await
        .expect("the guest keeps running");
    let envelope: serde_json::Value = serde_json::from_slice(&out.output).expect("json");
    assert_eq!(envelope["error"]["code"], "capability_denied");
    assert!(
        envelope["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`stamp`")),
        "{envelope}"
    );
    // The instance is still healthy.
    assert!(instance.call("noop", Vec::new()).await.is_ok());

    // With the grant, the same call succeeds.
    let granted = engine
        .load(
            &fx::bytes(fx::BASICS),
            GuestOptions::new("granted").grants(Grants::default().with(Capability::new("stamp"))),
        )
        .expect("load");
    let mut instance = granted.instantiate().await.expect("instantiate");
    let out = instance.call("host_stamp", "x").await.expect("call");
    assert_eq!(&out.output[..], br#"{"ok":"x!"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_an_ungranted_host_is_refused_and_counted() {
    let addr = support::http_server().await;
    let engine = support::engine();
    let module = engine
        .load(
            &fx::bytes(fx::BASICS),
            GuestOptions::new("web")
                .grants(Grants::default().allow_host("10.0.0.1").expect("pattern")),
        )
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let url = format!("http://127.0.0.1:{}/hello", addr.port());
    let err = instance
        .call("http_get", url.clone())
        .await
        .expect_err("denied");
    assert_eq!(
        err,
        CallError::HostFunction(format!("HTTP request to {url} is not allowed"))
    );
    assert_eq!(engine.stats().denials_by_capability().get("http"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_response_over_the_cap_is_refused() {
    let addr = support::http_server().await;
    let module = support::engine()
        .load(
            &fx::bytes(fx::BASICS),
            support::parity_options("web").max_http_response_bytes(1 << 20),
        )
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let err = instance
        .call("http_get", format!("http://127.0.0.1:{}/big", addr.port()))
        .await
        .expect_err("too big");
    assert!(
        err.to_string().contains("exceeds the configured maximum"),
        "{err}"
    );
}

#[test]
fn a_module_that_is_not_wasm_is_a_clear_error() {
    let err = support::engine()
        .load(b"definitely not wasm", GuestOptions::new("junk"))
        .expect_err("must fail");
    assert!(matches!(err, LoadError::Compile { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("`junk` is not a valid WebAssembly module"),
        "{err}"
    );
}

#[test]
fn a_module_importing_an_unknown_host_function_names_it() {
    // (module (import "extism:host/user" "nope" (func)))
    let wasm = [
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
        0x02, 0x19, 0x01, 0x10, b'e', b'x', b't', b'i', b's', b'm', b':', b'h', b'o', b's', b't',
        b'/', b'u', b's', b'e', b'r', 0x04, b'n', b'o', b'p', b'e', 0x00, 0x00,
    ];
    let err = support::engine()
        .load(&wasm, GuestOptions::new("needy"))
        .expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains("`needy` cannot be linked"), "{text}");
    assert!(text.contains("nope"), "{text}");
}

#[test]
fn a_missing_file_names_the_path() {
    let err = support::engine()
        .load_file("/nonexistent/plugin.wasm".as_ref(), GuestOptions::new("x"))
        .expect_err("must fail");
    assert!(
        err.to_string().contains("/nonexistent/plugin.wasm"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_demand_fallback_runs_guests_too() {
    let engine = support::engine_with(EngineConfig {
        pooling: false,
        ..EngineConfig::default()
    });
    assert_eq!(engine.allocation(), Allocation::OnDemand);
    let module = engine
        .load(&fx::bytes(fx::BASICS), support::parity_options("od"))
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    assert_eq!(
        &instance.call("greet", "od").await.expect("call").output[..],
        b"Hello, od!"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_serves_many_concurrent_instances() {
    let engine = support::engine_with(EngineConfig {
        slots: Some(64),
        ..EngineConfig::default()
    });
    assert_eq!(engine.allocation(), Allocation::Pooling { slots: 64 });
    let module = engine
        .load(&fx::bytes(fx::BASICS), support::parity_options("many"))
        .expect("load");
    let mut instances = Vec::new();
    for _ in 0..48 {
        instances.push(module.instantiate().await.expect("instantiate"));
    }
    let calls = instances.into_iter().enumerate().map(|(i, mut inst)| {
        tokio::spawn(async move {
            let out = inst.call("greet", format!("n{i}")).await.expect("call");
            assert_eq!(out.output, format!("Hello, n{i}!").into_bytes());
        })
    });
    for c in calls {
        c.await.expect("join");
    }
}
