//! Buntime's native Extism-ABI host next to the `extism` crate, on the same
//! fixture, in the same run. Each group has an `extism` and a `buntime` entry;
//! `benches/README.md` lists the latest figures and their ratios.
//!
//! Run with `./x bench` (sets `RUST_LIB_BACKTRACE=0`: with backtraces on,
//! wasmtime captures one per trap and error, which distorts both sides).
//!
//! With `ENGINE_COUNT=<case>:<iterations>` the binary times nothing: it runs
//! one of Buntime's cases that many times inside [`counted`], for
//! `benches/engine_instructions.sh` to count the instructions per iteration
//! under callgrind (repeatable where timings on a shared machine are not).

use std::time::{Duration, Instant};

use buntime::wasm::{Engine, EngineConfig, GuestInstance, GuestModule};
use buntime_fixtures as fx;
use criterion::{Criterion, criterion_group};

struct Setup {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    module: GuestModule,
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    Setup { rt, engine, module }
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

/// The 1 KiB JSON document the echo cases send.
fn json_1k() -> Vec<u8> {
    let mut v = br#"{"items":["#.to_vec();
    while v.len() < 1000 {
        v.extend_from_slice(br#""abcdefghij","#);
    }
    v.extend_from_slice(br#""end"]}"#);
    v.truncate(1024);
    v
}

/// `iters` new instances of the fixture, each called once when `call`.
async fn instances(module: &GuestModule, iters: u64, call: bool) {
    for _ in 0..iters {
        let mut i = module.instantiate().await.expect("instantiate");
        if call {
            std::hint::black_box(i.call("noop", bytes::Bytes::new()).await.expect("call"));
        }
        std::hint::black_box(i);
    }
}

fn calls(c: &mut Criterion) {
    let s = setup();
    let compiled = extism_compiled();
    let json_1k = json_1k();
    let cases: [(&str, &str, &[u8]); 3] = [
        ("call_noop", "noop", b""),
        ("echo_1k_json", "echo", &json_1k),
        ("host_fn_roundtrip", "host_reverse", b"0123456789abcdef"),
    ];
    for (group, export, input) in cases {
        let mut g = c.benchmark_group(group);
        let mut plugin = extism::Plugin::new_from_compiled(&compiled).expect("plugin");
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
    let pdk_echo = load_pdk_echo(&s);
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

fn load_pdk_echo(s: &Setup) -> GuestModule {
    s.engine
        .load(
            &fx::bytes(fx::PDK_ECHO),
            buntime::wasm::GuestOptions::new("pdk-echo").timeout(Duration::from_secs(30)),
        )
        .expect("load pdk-echo")
}

fn instantiate(c: &mut Criterion) {
    let s = setup();
    let compiled = extism_compiled();
    let mut g = c.benchmark_group("instantiate");
    // Extism instantiates lazily on the first call, so both sides are timed
    // as "new instance + one no-op call"; ours is also timed alone.
    g.bench_function("extism", |b| {
        b.iter(|| {
            let mut p = extism::Plugin::new_from_compiled(&compiled).expect("plugin");
            let out: Vec<u8> = p.call("noop", &b""[..]).expect("call");
            std::hint::black_box(out)
        })
    });
    for (name, call) in [("buntime", true), ("buntime_instantiate_only", false)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                s.rt.block_on(async {
                    let start = Instant::now();
                    instances(&s.module, iters, call).await;
                    start.elapsed()
                })
            })
        });
    }
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

fn main() {
    if let Ok(spec) = std::env::var("ENGINE_COUNT") {
        return count(&spec);
    }
    engine();
    Criterion::default().configure_from_args().final_summary();
}

/// Runs the case `spec` names (`<case>:<iterations>`) a hundred times to
/// warm it, then the given number of times inside [`counted`].
fn count(spec: &str) {
    let usage = "ENGINE_COUNT=<call_noop|echo_1k_json|host_fn_roundtrip|\
                 echo_1k_json_buntime_pdk|instantiate|instantiate_only>:<iterations>";
    let (case, iters) = spec.split_once(':').expect(usage);
    let iters: u64 = iters.parse().expect(usage);
    let s = setup();
    let json_1k = json_1k();
    let call = |module: &GuestModule, export: &str, input: &[u8]| {
        let mut instance = s.rt.block_on(module.instantiate()).expect("instantiate");
        ours(&s, &mut instance, export, input, 100);
        counted(|| {
            ours(&s, &mut instance, export, input, iters);
        });
    };
    let new = |call: bool| {
        s.rt.block_on(instances(&s.module, 100, call));
        counted(|| s.rt.block_on(instances(&s.module, iters, call)));
    };
    match case {
        "call_noop" => call(&s.module, "noop", b""),
        "echo_1k_json" => call(&s.module, "echo", &json_1k),
        "host_fn_roundtrip" => call(&s.module, "host_reverse", b"0123456789abcdef"),
        "echo_1k_json_buntime_pdk" => call(&load_pdk_echo(&s), "echo", &json_1k),
        "instantiate" => new(true),
        "instantiate_only" => new(false),
        _ => panic!("unknown case `{case}`: {usage}"),
    }
}

/// What callgrind counts (`--toggle-collect=engine::counted*`).
#[inline(never)]
fn counted(f: impl FnOnce()) {
    f();
}
