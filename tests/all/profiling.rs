//! `EngineConfig::perf_map` (`RUNTIME_WASM_PERF_MAP=1`): compiled guest code
//! is named for `perf`.

use buntime::wasm::{EngineConfig, GuestOptions};
use buntime_fixtures as fx;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_perf_map_names_the_compiled_guest_functions() {
    let engine = support::engine_with(EngineConfig {
        perf_map: true,
        ..Default::default()
    });
    let module = engine
        .load(&fx::bytes(fx::HOSTILE), GuestOptions::new("hostile"))
        .expect("load hostile");
    let mut instance = module.instantiate().await.expect("instantiate");
    instance.call("ok", Vec::new()).await.expect("ok");
    // perf's convention: `/tmp/perf-<pid>.map`, one `<addr> <size> <name>` per line.
    let path = format!("/tmp/perf-{}.map", std::process::id());
    let map = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(
        map.lines()
            .any(|l| l.split_whitespace().count() >= 3 && l.contains("wasm")),
        "no guest function in {path}:\n{}",
        map.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    let _ = std::fs::remove_file(&path);
}
