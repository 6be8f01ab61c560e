//! The cost of the plugin chain: one request through the server's router
//! (in process, no sockets, so the figures are the request path itself) to
//! the warm hello app, through 0, 1 and 5 no-op plugins — all in one run.
//!
//! A no-op plugin exports `on_request` (continue) and `on_response` (no
//! changes): the difference between `1_noop` and `0_plugins` is what one
//! plugin adds to a request; `5_noop` against `0_plugins` is the throughput a
//! five-plugin chain costs. `benches/README.md` lists the latest figures.
//!
//! `authz_decision` puts the authz core plugin with 100 policies in front of
//! the same app, next to the same chain without it: the difference is one
//! authorization decision (with its policy-version check) per request.
//!
//! `authn_jwt` does the same with the authn plugin checking a bearer JWT
//! (EdDSA, its key set fetched once from a loopback server and cached).
//!
//! `gateway_check` does the same with the gateway plugin, once with only a
//! rate limit and once with only CORS.

#[path = "plugins/authn.rs"]
mod authn;
#[path = "plugins/gateway.rs"]
mod gateway;

use std::path::Path;

use axum::body::Body;
use axum::http::Request;
use buntime::plugins::PluginSources;
use buntime::server::{AppState, host_functions, service};
use buntime::wasm::{Engine, EngineConfig};
use buntime_fixtures as fx;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use tower::ServiceExt;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A server state over one warm hello app and `plugins` no-op plugins.
fn state(rt: &tokio::runtime::Runtime, root: &Path, plugins: usize) -> AppState {
    let apps = root.join("apps");
    write(
        &apps.join("hello/1.0.0/worker.jsonc"),
        r#"{ ttl: "10m", maxRequests: 0 }"#,
    );
    std::fs::copy(fx::APP_HELLO, apps.join("hello/1.0.0/app.wasm")).expect("copy app");
    let mut names = Vec::new();
    for i in 0..plugins {
        let dir = root.join(format!("plugins/noop{i}"));
        write(
            &dir.join("manifest.jsonc"),
            &format!(r#"{{ "name": "noop{i}", "version": "1.0.0" }}"#),
        );
        std::fs::copy(fx::PLUGIN_NOOP, dir.join("plugin.wasm")).expect("copy plugin");
        names.push(format!("\"noop{i}\""));
    }
    write(
        &root.join("buntime.jsonc"),
        &format!("{{ plugins: [{}] }}", names.join(", ")),
    );
    let engine = Engine::new(EngineConfig {
        host_functions: host_functions(),
        // Names the guests' functions for `perf`, as the server's own
        // `RUNTIME_WASM_PERF_MAP=1` does.
        perf_map: std::env::var_os("RUNTIME_WASM_PERF_MAP").is_some(),
        // `BENCH_MODULE_CACHE=<dir>`: compiled modules kept across server
        // states and runs, so only a changed plugin is compiled again.
        cache_dir: std::env::var_os("BENCH_MODULE_CACHE").map(Into::into),
        ..EngineConfig::default()
    })
    .expect("engine");
    let sources = PluginSources {
        dirs: vec![root.join("plugins")],
        embedded: Vec::new(),
        config_file: Some((root.join("buntime.jsonc"), true)),
        data_dir: None,
        max_tenants: None,
    };
    rt.block_on(AppState::build(engine, vec![apps], 16, sources))
        .expect("state")
}

fn chain(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("plugin_chain");
    for (label, n) in [("0_plugins", 0), ("1_noop", 1), ("5_noop", 5)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = state(&rt, dir.path(), n);
        let app = service(state.clone());
        let request = || {
            Request::get("/hello/")
                .header("host", "localhost")
                .header("user-agent", "bench")
                .body(Body::empty())
                .expect("request")
        };
        let status = rt
            .block_on(app.clone().oneshot(request()))
            .expect("call")
            .status();
        assert_eq!(status, 200, "{label}: the hello app must answer");
        group.bench_function(label, |b| {
            b.iter(|| rt.block_on(app.clone().oneshot(request())).expect("call"))
        });
        if n == 1 {
            // The hook alone, without the HTTP plumbing around it.
            let plugin = state.plugins.current().plugins[0].clone();
            let head = bytes::Bytes::from_static(
                br#"{"method":"GET","path":"/hello/","headers":[["host","localhost"],["user-agent","bench"]]}"#,
            );
            group.bench_function("on_request_hook_only", |b| {
                b.iter(|| {
                    rt.block_on(plugin.call("on_request", head.clone(), Default::default()))
                        .0
                        .expect("hook")
                })
            });
            // The same export on a bare instance: the plugin layer's own cost
            // is the difference.
            let mut instance = rt
                .block_on(plugin.instances.module().instantiate())
                .expect("instance");
            group.bench_function("on_request_bare_instance", |b| {
                b.iter(|| {
                    rt.block_on(instance.call("on_request", head.clone()))
                        .expect("call")
                })
            });
        }
    }
    group.finish();
}

/// 99 policies that do not apply to an anonymous `GET /hello/` (other roles,
/// apps, paths and methods, an address condition), and one that permits it,
/// evaluated last.
fn authz_policies() -> String {
    let mut policies: Vec<String> = (0..99)
        .map(|i| {
            format!(
                r#"{{ "id": "p{i}", "effect": "{}", "priority": {i},
                   "subjects": [{{ "role": "role-{i}:*" }}, {{ "group": "g{i}" }}],
                   "resources": [{{ "app": "app{i}", "path": "/app{i}/api/*/items/**" }}],
                   "actions": [{{ "method": "POST" }}],
                   "conditions": [{{ "type": "ip", "allowlist": ["10.0.0.0/8"] }}] }}"#,
                if i % 2 == 0 { "permit" } else { "deny" }
            )
        })
        .collect();
    policies.push(
        r#"{ "id": "hello", "effect": "permit", "priority": -1, "subjects": [],
             "resources": [{ "path": "/hello/**" }], "actions": [{ "method": "GET" }] }"#
            .into(),
    );
    policies.join(",")
}

/// The warm hello app behind the embedded core plugins, configured by the
/// `plugins` list of `buntime.jsonc`.
fn core_plugin_state(rt: &tokio::runtime::Runtime, root: &Path, plugins: &str) -> AppState {
    let apps = root.join("apps");
    write(
        &apps.join("hello/1.0.0/worker.jsonc"),
        r#"{ ttl: "10m", maxRequests: 0 }"#,
    );
    std::fs::copy(fx::APP_HELLO, apps.join("hello/1.0.0/app.wasm")).expect("copy app");
    write(
        &root.join("buntime.jsonc"),
        &format!(r#"{{ "plugins": [{plugins}] }}"#),
    );
    let engine = Engine::new(EngineConfig {
        host_functions: host_functions(),
        // Names the guests' functions for `perf`, as the server's own
        // `RUNTIME_WASM_PERF_MAP=1` does.
        perf_map: std::env::var_os("RUNTIME_WASM_PERF_MAP").is_some(),
        // `BENCH_MODULE_CACHE=<dir>`: compiled modules kept across server
        // states and runs, so only a changed plugin is compiled again.
        cache_dir: std::env::var_os("BENCH_MODULE_CACHE").map(Into::into),
        ..EngineConfig::default()
    })
    .expect("engine");
    let sources = PluginSources {
        dirs: Vec::new(),
        embedded: buntime::plugins::embedded(),
        config_file: Some((root.join("buntime.jsonc"), true)),
        data_dir: Some(root.join("data")),
        max_tenants: None,
    };
    rt.block_on(AppState::build(engine, vec![apps], 16, sources))
        .expect("state")
}

/// Benchmarks `GET /hello/` with `headers` on the warm hello app behind the
/// core plugin `plugin`, configured by the `buntime.jsonc` entry `entry`, or
/// turned off when `entry` is `None`. Checks first that the plugin is loaded
/// exactly when on and that the request is answered 200.
pub(crate) fn bench_core_plugin(
    rt: &tokio::runtime::Runtime,
    group: &mut BenchmarkGroup<'_, WallTime>,
    label: &str,
    plugin: &str,
    entry: Option<&str>,
    headers: &[(&str, &str)],
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let off = format!(r#"{{ "name": "{plugin}", "enabled": false }}"#);
    let state = core_plugin_state(rt, dir.path(), entry.unwrap_or(&off));
    let loaded = state
        .plugins
        .current()
        .plugins
        .iter()
        .any(|p| p.manifest.name == plugin);
    assert_eq!(
        loaded,
        entry.is_some(),
        "{label}: {plugin} must be loaded exactly when on"
    );
    let app = service(state.clone());
    let request = || {
        let mut req = Request::get("/hello/").header("host", "localhost");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(Body::empty()).expect("request")
    };
    let status = rt
        .block_on(app.clone().oneshot(request()))
        .expect("call")
        .status();
    assert_eq!(status, 200, "{label}: the hello app must answer");
    group.bench_function(label, |b| {
        b.iter(|| rt.block_on(app.clone().oneshot(request())).expect("call"))
    });
}

fn authz(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let on = format!(
        r#"["@buntime/plugin-authz", {{ "policySeed": {{ "policies": [{}] }} }}]"#,
        authz_policies()
    );
    let mut group = c.benchmark_group("authz_decision");
    for (label, entry) in [
        ("without_authz", None),
        ("authz_100_policies", Some(on.as_str())),
    ] {
        bench_core_plugin(&rt, &mut group, label, "@buntime/plugin-authz", entry, &[]);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = chain, authz, authn::authn, gateway::gateway
}
criterion_main!(benches);
