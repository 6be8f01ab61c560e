//! The compiled-module cache: a restart does not recompile, and a damaged
//! cache file is detected and replaced rather than trusted.

use buntime::wasm::{EngineConfig, GuestOptions, ModuleOrigin};
use buntime_fixtures as fx;

use crate::support;

fn cached_engine(dir: &std::path::Path) -> buntime::wasm::Engine {
    support::engine_with(EngineConfig::default().cache_dir(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_load_skips_compilation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = fx::bytes(fx::BASICS);

    let first = cached_engine(dir.path());
    let m1 = first
        .load(&wasm, GuestOptions::new("basics"))
        .expect("load");
    assert_eq!(m1.origin(), ModuleOrigin::Compiled);
    assert_eq!(first.stats().compiled.get(), 1);

    // A new engine is what a restart looks like.
    let second = cached_engine(dir.path());
    let m2 = second
        .load(&wasm, GuestOptions::new("basics"))
        .expect("load");
    assert_eq!(m2.origin(), ModuleOrigin::DiskCache);
    assert_eq!(second.stats().compiled.get(), 0);
    assert_eq!(second.stats().cache_hits.get(), 1);

    let mut instance = m2.instantiate().await.expect("instantiate");
    let out = instance.call("greet", "cache").await.expect("call");
    assert_eq!(&out.output[..], b"Hello, cache!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_cache_file_is_recompiled_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = fx::bytes(fx::BASICS);
    cached_engine(dir.path())
        .load(&wasm, GuestOptions::new("basics"))
        .expect("load");

    let entry = std::fs::read_dir(dir.path())
        .expect("read cache dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a cache entry was written");
    let mut bytes = std::fs::read(&entry).expect("read entry");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).expect("corrupt entry");

    let engine = cached_engine(dir.path());
    let module = engine
        .load(&wasm, GuestOptions::new("basics"))
        .expect("load");
    assert_eq!(module.origin(), ModuleOrigin::Compiled);
    assert_eq!(engine.stats().cache_rejected.get(), 1);
    let mut instance = module.instantiate().await.expect("instantiate");
    assert!(instance.call("noop", Vec::new()).await.is_ok());

    // The rewritten entry is good again.
    let again = cached_engine(dir.path());
    let module = again
        .load(&wasm, GuestOptions::new("basics"))
        .expect("load");
    assert_eq!(module.origin(), ModuleOrigin::DiskCache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_cache_file_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = fx::bytes(fx::BASICS);
    cached_engine(dir.path())
        .load(&wasm, GuestOptions::new("b"))
        .expect("load");
    for entry in std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
    {
        std::fs::write(entry.path(), b"BUNTIME1short").expect("truncate");
    }
    let engine = cached_engine(dir.path());
    let module = engine.load(&wasm, GuestOptions::new("b")).expect("load");
    assert_eq!(module.origin(), ModuleOrigin::Compiled);
    assert_eq!(engine.stats().cache_rejected.get(), 1);
}

/// Identical bytes loaded twice (two apps shipping the same module) share
/// one compiled copy, each with its own options; the code is freed with the
/// last module that uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_modules_share_their_compiled_code_until_the_last_is_dropped() {
    let engine = support::engine_with(EngineConfig::default());
    let wasm = fx::bytes(fx::BASICS);
    let first = engine
        .load(&wasm, GuestOptions::new("first").config("greeting", "one"))
        .expect("load first");
    let second = engine
        .load(&wasm, GuestOptions::new("second").config("greeting", "two"))
        .expect("load second");
    assert_eq!(first.origin(), ModuleOrigin::Compiled);
    assert_eq!(second.origin(), ModuleOrigin::Shared);
    assert_eq!(engine.stats().compiled.get(), 1);
    assert_eq!(engine.stats().shared.get(), 1);
    assert_eq!(engine.compiled_modules(), 1);

    // Each keeps what is its own: its name and its configuration.
    for (module, greeting) in [(&first, "one"), (&second, "two")] {
        let mut instance = module.instantiate().await.expect("instantiate");
        let out = instance
            .call("greet", module.name().to_owned())
            .await
            .expect("call");
        assert_eq!(out.output, format!("Hello, {}!", module.name()).as_bytes());
        let out = instance.call("config", "greeting").await.expect("call");
        assert_eq!(out.output, greeting.as_bytes());
    }

    // Other bytes are compiled apart.
    let other = engine
        .load(&fx::bytes(fx::HOSTILE), GuestOptions::new("other"))
        .expect("load other");
    assert_eq!(other.origin(), ModuleOrigin::Compiled);
    assert_eq!(engine.compiled_modules(), 2);

    // Once no module uses the code, a new load compiles it again.
    drop((first, second));
    assert_eq!(engine.compiled_modules(), 1);
    let again = engine
        .load(&wasm, GuestOptions::new("again"))
        .expect("load again");
    assert_eq!(again.origin(), ModuleOrigin::Compiled);
    assert_eq!(engine.stats().compiled.get(), 3);
}
