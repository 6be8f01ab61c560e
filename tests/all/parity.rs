//! Parity: every non-hostile fixture, in every language and target, gives the
//! same output, error message and return code under Buntime's host as under
//! the `extism` crate (the reference implementation of the ABI).

use buntime::wasm::{CallError, GuestInstance};
use buntime_fixtures as fx;

use crate::support;

/// What a call produced, in a form both hosts can be reduced to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok(Vec<u8>),
    Err { rc: i32, message: String },
}

fn extism_call(plugin: &mut extism::Plugin, export: &str, input: &[u8]) -> Outcome {
    match plugin.call_get_error_code::<&[u8], Vec<u8>>(export, input) {
        Ok(out) => Outcome::Ok(out),
        Err((e, rc)) => Outcome::Err {
            rc,
            message: e.root_cause().to_string(),
        },
    }
}

async fn buntime_call(instance: &mut GuestInstance, export: &str, input: &[u8]) -> Outcome {
    match instance.call(export, input.to_vec()).await {
        Ok(out) => Outcome::Ok(out.output.to_vec()),
        Err(e) => Outcome::Err {
            rc: e.rc(),
            message: match e {
                CallError::Guest { message, .. } => message,
                other => other.to_string(),
            },
        },
    }
}

/// The cases every `basics` fixture (Rust, Rust on WASI, C, AssemblyScript) runs,
/// in order on one instance (so `count` proves vars persist across calls).
fn common_cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("greet", b"Buntime".to_vec()),
        ("greet", "ünïcödé ✓".as_bytes().to_vec()),
        ("greet", Vec::new()),
        ("count", Vec::new()),
        ("count", Vec::new()),
        ("count", Vec::new()),
        ("config", b"greeting".to_vec()),
        ("config", b"absent".to_vec()),
        ("log_all", Vec::new()),
        ("fail", b"it went wrong".to_vec()),
        ("echo", b"x".to_vec()),
        ("echo", (0..=255u8).cycle().take(1 << 20).collect()),
        ("echo", Vec::new()),
        ("noop", Vec::new()),
        ("greet", b"after an error".to_vec()),
    ]
}

async fn assert_parity(path: &str, wasi: bool, cases: &[(&str, Vec<u8>)]) {
    let engine = support::engine();
    let module = engine
        .load(&fx::bytes(path), support::parity_options("parity"))
        .expect("load");
    let mut ours = module.instantiate().await.expect("instantiate");
    let mut oracle = support::extism_plugin(path, wasi);
    for (export, input) in cases {
        let want = tokio::task::block_in_place(|| extism_call(&mut oracle, export, input));
        let got = buntime_call(&mut ours, export, input).await;
        assert_eq!(
            got,
            want,
            "{path}: `{export}` with {} input bytes differs from the extism crate",
            input.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_rust_basics() {
    assert_parity(fx::BASICS, false, &common_cases()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_rust_basics_on_wasi() {
    assert_parity(fx::BASICS_WASI, true, &common_cases()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_c_basics() {
    assert_parity(fx::C_BASICS, false, &common_cases()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_assemblyscript_basics() {
    assert_parity(fx::AS_BASICS, false, &common_cases()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_host_functions() {
    let cases = vec![
        ("host_reverse", b"abc".to_vec()),
        ("host_reverse", (0..100_000u32).map(|i| i as u8).collect()),
        ("host_stamp", b"ok".to_vec()),
    ];
    assert_parity(fx::BASICS, false, &cases).await;
    assert_parity(fx::BASICS_WASI, true, &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_http_request_allowed_and_denied() {
    let addr = support::http_server().await;
    let cases = vec![
        (
            "http_get",
            format!("http://127.0.0.1:{}/hello", addr.port()).into_bytes(),
        ),
        (
            "http_get",
            format!("http://127.0.0.1:{}/status/418", addr.port()).into_bytes(),
        ),
        (
            "http_get",
            format!("http://127.0.0.1:{}/missing", addr.port()).into_bytes(),
        ),
        // `localhost` is not in the allow-list, even though it is the same server.
        (
            "http_get",
            format!("http://localhost:{}/hello", addr.port()).into_bytes(),
        ),
        ("http_get", b"not a url".to_vec()),
    ];
    // One instance per case: a refused request stops the guest, and extism's
    // plugin and ours must both be fresh for the next case.
    for case in &cases {
        assert_parity(fx::BASICS, false, std::slice::from_ref(case)).await;
    }
}
