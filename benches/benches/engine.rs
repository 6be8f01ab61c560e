//! Buntime's native Extism-ABI host next to the `extism` crate, on the same
//! fixture, in the same run. Each group has an `extism` and a `buntime` entry;
//! `benches/README.md` lists the latest figures and their ratios.
//!
//! Run with `./x bench` (sets `RUST_LIB_BACKTRACE=0`: with backtraces on,
//! wasmtime captures one per trap and error, which distorts both sides).

use std::time::{Duration, Instant};

use buntime::wasm::{Engine, EngineConfig, GuestInstance, GuestModule};
use buntime_fixtures as fx;
use criterion::{Criterion, criterion_group, criterion_main};

struct Setup {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    module: GuestModule,
    compiled: extism::CompiledPlugin,
}

fn setup() -> Setup {
    let mut config = EngineConfig::default();
    config.host_functions.extend(buntime_tests_host_functions());
    let engine = Engine::new(config).expect("engine");
    let module = engine
        .load(
            &fx::bytes(fx::BASICS),
            buntime::wasm::GuestOptions::new("bench")
                .grants(
                    buntime::capabilities::Grants::default()
                        .with(buntime::capabilities::Capability::new("reverse"))
                        .with(buntime::capabilities::Capability::new("stamp")),
                )
                .timeout(Duration::from_secs(30)),
        )
        .expect("load");
    let compiled = extism_compiled();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    Setup {
        rt,
        engine,
        module,
        compiled,
    }
}

fn buntime_tests_host_functions() -> Vec<buntime::wasm::HostFunction> {
    buntime_tests::test_host_functions()
}

fn extism_compiled() -> extism::CompiledPlugin {
    use extism::{Manifest, PTR, PluginBuilder, UserData, Wasm};
    let manifest = Manifest::new([Wasm::file(fx::BASICS)]).with_timeout(Duration::from_secs(30));
    PluginBuilder::new(manifest)
        .with_function("reverse", [PTR], [PTR], UserData::new(()), |p, i, o, _| {
            let b: Vec<u8> = p.memory_get_val(&i[0])?;
            p.memory_set_val(&mut o[0], b.into_iter().rev().collect::<Vec<u8>>())
        })
        .with_function("stamp", [PTR], [PTR], UserData::new(()), |p, i, o, _| {
            let s: String = p.memory_get_val(&i[0])?;
            p.memory_set_val(&mut o[0], format!("{{\"ok\":\"{s}!\"}}"))
        })
        .compile()
        .expect("extism compile")
}

/// Times `iters` calls of `export` on one warm instance of ours.
fn ours(
    s: &Setup,
    instance: &mut GuestInstance,
    export: &str,
    input: &[u8],
    iters: u64,
) -> Duration {
    s.rt.block_on(async {
        let input = bytes::Bytes::copy_from_slice(input);
        let start = Instant::now();
        for _ in 0..iters {
            let out = instance.call(export, input.clone()).await.expect("call");
            std::hint::black_box(out);
        }
        start.elapsed()
    })
}

fn calls(c: &mut Criterion) {
    let s = setup();
    let json_1k = {
        let mut v = br#"{"items":["#.to_vec();
        while v.len() < 1000 {
            v.extend_from_slice(br#""abcdefghij","#);
        }
        v.extend_from_slice(br#""end"]}"#);
        v.truncate(1024);
        v
    };
    let cases: [(&str, &str, &[u8]); 3] = [
        ("call_noop", "noop", b""),
        ("echo_1k_json", "echo", &json_1k),
        ("host_fn_roundtrip", "host_reverse", b"0123456789abcdef"),
    ];
    for (group, export, input) in cases {
        let mut g = c.benchmark_group(group);
        let mut plugin = extism::Plugin::new_from_compiled(&s.compiled).expect("plugin");
        g.bench_function("extism", |b| {
            b.iter(|| {
                let out: Vec<u8> = plugin.call(export, input).expect("extism call");
                std::hint::black_box(out)
            })
        });
        let mut instance = s.rt.block_on(s.module.instantiate()).expect("instantiate");
        g.bench_function("buntime", |b| {
            b.iter_custom(|iters| ours(&s, &mut instance, export, input, iters))
        });
        g.finish();
    }
    // The same 1 KiB echo written with buntime-pdk, whose input and output
    // are one host call each (`buntime:host/memory`) instead of eight bytes
    // per call. A different fixture (the extism crate cannot run it), so this
    // group has no extism entry: compare it with `echo_1k_json/extism` above.
    let mut g = c.benchmark_group("echo_1k_json_buntime_pdk");
    let pdk_echo = s
        .engine
        .load(
            &fx::bytes(fx::PDK_ECHO),
            buntime::wasm::GuestOptions::new("pdk-echo").timeout(Duration::from_secs(30)),
        )
        .expect("load pdk-echo");
    let mut instance = s.rt.block_on(pdk_echo.instantiate()).expect("instantiate");
    assert_eq!(
        &s.rt
            .block_on(instance.call("echo", bytes::Bytes::copy_from_slice(&json_1k)))
            .expect("echo")
            .output[..],
        &json_1k[..]
    );
    g.bench_function("buntime", |b| {
        b.iter_custom(|iters| ours(&s, &mut instance, "echo", &json_1k, iters))
    });
    g.finish();
}

fn instantiate(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("instantiate");
    // Extism instantiates lazily on the first call, so both sides are timed
    // as "new instance + one no-op call"; ours is also timed alone.
    g.bench_function("extism", |b| {
        b.iter(|| {
            let mut p = extism::Plugin::new_from_compiled(&s.compiled).expect("plugin");
            let out: Vec<u8> = p.call("noop", &b""[..]).expect("call");
            std::hint::black_box(out)
        })
    });
    g.bench_function("buntime", |b| {
        b.iter_custom(|iters| {
            s.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut i = s.module.instantiate().await.expect("instantiate");
                    std::hint::black_box(i.call("noop", bytes::Bytes::new()).await.expect("call"));
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("buntime_instantiate_only", |b| {
        b.iter_custom(|iters| {
            s.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(s.module.instantiate().await.expect("instantiate"));
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = engine;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = calls, instantiate
}
criterion_main!(engine);
