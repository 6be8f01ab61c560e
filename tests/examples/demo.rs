//! A tour of the engine on the fixtures built from source: the same plugin in
//! Rust, C and AssemblyScript; vars kept across calls; a denied host call with
//! its hint; a runaway loop stopped at its deadline while the host carries on.
//!
//! Run with `./x demo` (`cargo run -p buntime-tests --example demo`).

use std::time::{Duration, Instant};

use buntime::wasm::{Engine, EngineConfig, GuestOptions};
use buntime_fixtures as fx;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = EngineConfig::default();
    config
        .host_functions
        .extend(buntime_tests::test_host_functions());
    let engine = Engine::new(config)?;
    println!("engine: {:?}\n", engine.allocation());

    for (lang, path) in [
        ("Rust", fx::BASICS),
        ("C", fx::C_BASICS),
        ("AssemblyScript", fx::AS_BASICS),
    ] {
        let started = Instant::now();
        let module = engine.load_file(
            path.as_ref(),
            GuestOptions::new(lang).config("greeting", "hi"),
        )?;
        let loaded = started.elapsed();
        let started = Instant::now();
        let mut instance = module.instantiate().await?;
        let instantiated = started.elapsed();
        let out = instance.call("greet", lang).await?;
        let counts: Vec<String> = three_counts(&mut instance).await?;
        println!(
            "{lang:>15}: greet -> {:?}, count x3 -> {}  (compiled in {loaded:.1?}, instantiated in {instantiated:.1?})",
            String::from_utf8_lossy(&out.output),
            counts.join(",")
        );
    }

    let module = engine.load_file(fx::BASICS.as_ref(), GuestOptions::new("no-grants"))?;
    let mut instance = module.instantiate().await?;
    let err = instance
        .call("http_get", "http://169.254.169.254/latest/meta-data")
        .await
        .unwrap_err();
    println!("\n  denied request: {err}");

    let hostile = engine.load_file(
        fx::HOSTILE.as_ref(),
        GuestOptions::new("hostile").timeout(Duration::from_millis(100)),
    )?;
    let mut looping = hostile.instantiate().await?;
    let started = Instant::now();
    let err = looping.call("spin", "").await.unwrap_err();
    println!("  infinite loop: {err} (after {:.0?})", started.elapsed());
    let mut fresh = hostile.instantiate().await?;
    let out = fresh.call("ok", "").await?;
    println!(
        "  next instance: {:?}",
        String::from_utf8_lossy(&out.output)
    );
    Ok(())
}

async fn three_counts(instance: &mut buntime::wasm::GuestInstance) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for _ in 0..3 {
        let o = instance.call("count", "").await?;
        out.push(String::from_utf8_lossy(&o.output).into_owned());
    }
    Ok(out)
}
