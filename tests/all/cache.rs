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
