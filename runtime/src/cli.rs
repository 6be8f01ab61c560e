//! The command line: `buntime serve` (the default) runs the server;
//! `buntime call` runs one export of any Extism-ABI module; `buntime plugin`
//! and `buntime app` create, build and inspect projects (`crate::scaffold`);
//! `buntime deploy` uploads an app version to a server.
//!
//! ```text
//! RUNTIME_WORKER_DIRS=./apps buntime
//! buntime call greet.wasm greet --input world
//! buntime call plugin.wasm fetch --allow-host api.example.com --timeout 2s
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::capabilities::Grants;
use crate::scaffold::Kind;
use crate::wasm::{CallError, Engine, EngineConfig, GuestOptions, abi::body_functions};

mod deploy;
mod health;
mod logging;

pub use logging::init_logging;

/// Buntime: a serverless WASM application runtime.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the apps in `RUNTIME_WORKER_DIRS` on `PORT` (the default command).
    Serve,
    /// Validate the environment and every app's `worker.jsonc` and module, print
    /// the effective apps, versions and settings; exit non-zero on any error.
    Check,
    /// Call one export of an Extism-ABI module (any Extism PDK) and print its output.
    Call(CallArgs),
    /// Probe the server on this machine (`PORT`, `RUNTIME_HOST`): exit 0 when it
    /// is live (with `--ready`: ready), 1 otherwise. For container health checks.
    Health {
        /// Probe readiness (`/_/api/health/ready`) instead of liveness.
        #[arg(long)]
        ready: bool,
        /// Probe this URL instead of the local server's health route.
        #[arg(long)]
        url: Option<String>,
        /// Give up after this long, e.g. `2s`.
        #[arg(long, default_value = "3s", value_parser = crate::config::parse_duration)]
        timeout: Duration,
    },
    /// Upload an app dir or archive to a server's deployments plugin and print
    /// the URL of the new version.
    Deploy(deploy::DeployArgs),
    /// Create, build and inspect plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Create and build apps.
    #[command(subcommand)]
    App(AppCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Create a plugin project that builds from this binary alone.
    New(NewArgs),
    /// Build the plugin project in `--dir` and lay out `dist/<name>/`
    /// (`manifest.jsonc` + `plugin.wasm` + `ui/`) for `RUNTIME_PLUGIN_DIRS`.
    Build(BuildArgs),
    /// Show a plugin's exports, imports, hooks, grants and ABI version, and
    /// whether it would load here (the load's checks, without running it).
    Inspect {
        /// A plugin dir (`manifest.jsonc` + `plugin.wasm`) or a `.wasm` module.
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// Create an app project that builds from this binary alone.
    New(NewArgs),
    /// Build the app project in `--dir` and lay out `dist/<name>/<version>/`
    /// (`worker.jsonc` + `app.wasm`) for `RUNTIME_WORKER_DIRS`.
    Build {
        #[command(flatten)]
        build: BuildArgs,
        /// The version dir to lay out.
        #[arg(long = "app-version", default_value = "0.1.0")]
        version: String,
    },
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    /// The name: `name` (or, for plugins, `@scope/name`).
    name: String,
    /// The language of the project.
    #[arg(long, value_enum, default_value = "rust")]
    lang: crate::scaffold::Lang,
    /// Where to create the project dir.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct BuildArgs {
    /// The project dir.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Where to lay out the result (default: `dist` in the project dir).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CallArgs {
    /// The `.wasm` module.
    module: PathBuf,
    /// The export to call.
    function: String,
    /// Input bytes (UTF-8); empty by default.
    #[arg(long, default_value = "")]
    input: String,
    /// A config entry the guest can read, as KEY=VALUE (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// A host name (glob) the guest may reach over HTTP (repeatable).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Stop the call after this long, e.g. `500ms`, `2s`.
    #[arg(long, value_parser = crate::config::parse_duration)]
    timeout: Option<Duration>,
    /// Cap on the guest's memory, in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
    /// Where compiled modules are cached (none by default).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Check => check().await,
        Command::Call(args) => call(args).await,
        Command::Health {
            ready,
            url,
            timeout,
        } => Ok(health::run(ready, url, timeout).await),
        Command::Deploy(args) => deploy::run(args).await,
        Command::Plugin(PluginCommand::New(args)) => new_project(Kind::Plugin, args),
        Command::App(AppCommand::New(args)) => new_project(Kind::App, args),
        Command::Plugin(PluginCommand::Build(args)) => build_project(Kind::Plugin, args, "0.1.0"),
        Command::App(AppCommand::Build { build, version }) => {
            build_project(Kind::App, build, &version)
        }
        Command::Plugin(PluginCommand::Inspect { path }) => crate::scaffold::inspect::run(&path),
    }
}

fn new_project(kind: Kind, args: NewArgs) -> anyhow::Result<ExitCode> {
    let created = crate::scaffold::new_project(kind, &args.name, args.lang, &args.dir)?;
    println!("created {}", created.display());
    println!(
        "build it:  cd {} && buntime {} build",
        created.display(),
        kind.noun()
    );
    println!("then follow README.md there to load and try it");
    Ok(ExitCode::SUCCESS)
}

fn build_project(kind: Kind, args: BuildArgs, version: &str) -> anyhow::Result<ExitCode> {
    let out = args.out.unwrap_or_else(|| args.dir.join("dist"));
    let laid_out = crate::scaffold::build_project(kind, &args.dir, &out, version)?;
    println!("built {}", laid_out.display());
    let var = match kind {
        Kind::Plugin => "RUNTIME_PLUGIN_DIRS",
        Kind::App => "RUNTIME_WORKER_DIRS",
    };
    println!("serve it:  {var}={} buntime", out.display());
    Ok(ExitCode::SUCCESS)
}

async fn serve() -> anyhow::Result<ExitCode> {
    let env = crate::config::RuntimeEnv::from_process()?;
    let config = EngineConfig {
        cache_dir: env.cache_dir.clone(),
        guard_pages: env.guard_pages,
        perf_map: env.perf_map,
        host_functions: crate::server::host_functions(),
        ..EngineConfig::default()
    };
    let engine = Engine::new(config)?;
    for dir in &env.worker_dirs {
        if !dir.is_dir() {
            tracing::warn!(dir = %dir.display(), "worker dir does not exist (yet); apps deployed there will be picked up");
        }
    }
    let sources = crate::plugins::PluginSources {
        dirs: env.plugin_dirs.clone(),
        embedded: crate::plugins::embedded(),
        config_file: Some((env.config_file.clone(), env.config_file_explicit)),
        data_dir: Some(env.data_dir.clone()),
        max_tenants: Some(env.max_tenants),
    };
    let policy = crate::access::AccessPolicy {
        master_key: env.master_key.clone(),
        trusted_proxies: env.trusted_proxies.clone(),
        metrics_public: env.metrics_public,
        key_attempts: env.key_attempts,
    };
    let state = crate::server::AppState::build_with_access(
        engine,
        env.worker_dirs.clone(),
        env.pool_size,
        sources,
        policy,
    )
    .await
    .context("cannot start the plugins")?
    .with_error_detail(crate::server::ErrorDetail::for_environment(env.environment))
    .with_telemetry(crate::telemetry::Telemetry::start(env.traces.as_ref())?)
    .with_cost_header(env.cost_header);
    if env.cost_header {
        tracing::warn!(
            "RUNTIME_COST_HEADER is on: every response shows its plugins and their timings in Server-Timing; turn it off outside debugging"
        );
    }
    if !state.access.configured() {
        tracing::warn!(
            "no API key is configured: the core API and plugin routes answer only clients on this machine; to serve them over the network set RUNTIME_MASTER_KEY (e.g. `openssl rand -base64 32`), or create a key from this machine: curl -X POST localhost:{}/_/api/keys -H 'content-type: application/json' -d '{{\"name\":\"admin\",\"role\":\"admin\"}}'",
            env.port
        );
    }
    state
        .plugins
        .services()
        .events
        .set_stream_limits(env.stream_limits);
    let listener = tokio::net::TcpListener::bind((env.host.as_str(), env.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (set RUNTIME_HOST to an address of this machine, PORT to a free port)",
                env.host, env.port
            )
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, dirs = ?env.worker_dirs, pool = env.pool_size, "buntime listening");
    let apps = state.catalog.all();
    // The banner is a courtesy: written in one go, and a closed stdout (a
    // supervisor that stopped reading) must not stop the server, so a write
    // error is ignored where `println!` would panic.
    let port = addr.port();
    let mut banner = format!(
        "Buntime {} on http://localhost:{port}\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, versions) in &apps {
        for v in versions {
            let label = v
                .version
                .as_ref()
                .map_or("latest".to_owned(), |x| x.to_string());
            banner.push_str(&format!("  http://localhost:{port}/{name}@{label}/\n"));
        }
    }
    banner.push_str(&format!(
        "  http://localhost:{port}/_/api/apps   (the list, as JSON)\n"
    ));
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }
    let limits = crate::server::ConnectionLimits {
        header_read_timeout: env.header_timeout,
        max_headers: env.max_headers,
        max_head_bytes: env.max_header_bytes,
        idle_timeout: env.idle_timeout,
        body_read_timeout: env.body_timeout,
        max_connections: env.max_connections,
        shutdown_timeout: env.shutdown_timeout,
    };
    crate::server::serve_with(listener, state, shutdown_signal(), limits).await?;
    Ok(ExitCode::SUCCESS)
}

async fn check() -> anyhow::Result<ExitCode> {
    use crate::server::{AppKind, load_settings};
    let env = crate::config::RuntimeEnv::from_process()?;
    println!(
        "port {}, pool size {}, environment {:?}",
        env.port, env.pool_size, env.environment
    );
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    print_access(&env);
    for name in crate::config::unknown_variables(names.iter().map(String::as_str)) {
        println!(
            "warning: {name} is set, but Buntime reads no such variable (docs/configuration.md lists them)"
        );
    }
    // The cache `serve` uses: a module found there was compiled and verified
    // before, and one compiled here is ready for the next `serve`.
    let engine = Engine::new(EngineConfig {
        host_functions: crate::server::host_functions(),
        cache_dir: env.cache_dir.clone(),
        ..EngineConfig::default()
    })?;
    let mut errors = 0;
    for dir in &env.worker_dirs {
        if !dir.is_dir() {
            println!(
                "error: worker dir {} does not exist or is not a directory",
                dir.display()
            );
            errors += 1;
        }
    }
    // The operator's ceiling over apps; a broken file is reported by the
    // plugin check below, and apps are then held to the defaults.
    let ceiling = crate::config::RuntimeFile::load(&env.config_file, env.config_file_explicit)
        .map(|f| f.apps)
        .unwrap_or_default();
    let catalog = crate::routing::Catalog::new(env.worker_dirs.clone());
    for (_, versions) in catalog.all() {
        for app in versions {
            let (config, kind) = match load_settings(&app, &ceiling) {
                Ok(c) => c,
                Err(e) => {
                    println!("error: {}: {e}", app.key());
                    errors += 1;
                    continue;
                }
            };
            match kind {
                Some(AppKind::Static(entry)) => {
                    println!(
                        "{:<28} static  entry {entry}  {}",
                        app.key(),
                        app.dir.display()
                    );
                }
                Some(AppKind::Wasm(file)) => {
                    let options = GuestOptions::new(app.key()).memory_limit(config.memory as usize);
                    let loaded = match app.open_dir().and_then(|dir| dir.read(&file)) {
                        Ok(bytes) => engine.load(&bytes, options).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match loaded {
                        Ok(m) if m.has_export("handle") => println!(
                            "{:<28} wasm    timeout {:?}, ttl {:?}, maxRequests {}, maxConcurrency {}, memory {} MiB  {}",
                            app.key(),
                            config.timeout,
                            config.ttl,
                            config.max_requests,
                            config.max_concurrency,
                            config.memory >> 20,
                            app.dir.join(&file).display()
                        ),
                        Ok(_) => {
                            println!(
                                "error: {}: {} does not export `handle`",
                                app.key(),
                                app.dir.join(&file).display()
                            );
                            errors += 1;
                        }
                        Err(e) => {
                            println!("error: {}: {e}", app.key());
                            errors += 1;
                        }
                    }
                }
                None => {
                    println!(
                        "error: {}: no index.html and no .wasm module in {}",
                        app.key(),
                        app.dir.display()
                    );
                    errors += 1;
                }
            }
        }
    }
    errors += check_plugins(&env, engine).await;
    if errors > 0 {
        println!("{errors} error(s)");
        return Ok(ExitCode::FAILURE);
    }
    println!("ok");
    Ok(ExitCode::SUCCESS)
}

/// The access settings `serve` would apply (never a key itself): whether
/// the master key is set, the generated keys in the store under
/// `RUNTIME_DATA_DIR`, whether metrics are public, the trusted proxies.
fn print_access(env: &crate::config::RuntimeEnv) {
    let store = crate::access::KeyStore::open(Some(&env.data_dir));
    let keys = match &store {
        Ok(store) => {
            let keys = store.list();
            let now = crate::access::now();
            let expired = keys
                .iter()
                .filter(|k| k.expires_at.is_some_and(|e| e <= now))
                .count();
            format!("{} generated key(s) ({expired} expired)", keys.len())
        }
        Err(e) => format!("generated keys unreadable ({e})"),
    };
    println!(
        "access: master key {}, {keys}, metrics {}, trusted proxies {}",
        if env.master_key.is_some() {
            "set"
        } else {
            "not set"
        },
        if env.metrics_public {
            "public"
        } else {
            "need a key"
        },
        env.trusted_proxies
    );
    if env.master_key.is_none() && store.as_ref().is_ok_and(|s| !s.any()) {
        println!(
            "warning: no API key is configured: the core API and plugin routes will answer only clients on this machine (set RUNTIME_MASTER_KEY)"
        );
    }
}

/// Resolves on SIGINT or SIGTERM.
/// Loads the plugin chain as `serve` would, prints it; returns the error count.
async fn check_plugins(env: &crate::config::RuntimeEnv, engine: Engine) -> usize {
    let sources = crate::plugins::PluginSources {
        dirs: env.plugin_dirs.clone(),
        embedded: crate::plugins::embedded(),
        config_file: Some((env.config_file.clone(), env.config_file_explicit)),
        data_dir: None,
        max_tenants: None,
    };
    let host = crate::plugins::PluginHost::new(
        engine,
        crate::capabilities::HostServices::new(None, None),
        sources,
    );
    let chain = match host.start().await {
        Ok(c) => c,
        Err(e) => {
            println!("error: {e}");
            return 1;
        }
    };
    for p in &chain.plugins {
        println!(
            "plugin {:<26} {}  base {}  hooks [{}]  grants [{}]  {}",
            p.manifest.name,
            p.manifest.version,
            p.manifest
                .base
                .as_deref()
                .map_or("-".to_owned(), |b| format!("/_/{b}")),
            p.hooks.names().join(", "),
            p.grants.names().collect::<Vec<_>>().join(", "),
            p.source
        );
    }
    let mut errors = 0;
    for n in &chain.not_loaded {
        if n.state == crate::plugins::NotLoadedState::Disabled {
            println!("plugin {:<26} disabled: {}", n.name, n.reason);
        } else {
            println!("error: plugin `{}` {}: {}", n.name, n.state, n.reason);
            errors += 1;
        }
    }
    for p in &chain.problems {
        println!("error: {}", p.message);
        errors += 1;
    }
    // The host waits for every user of the chain to let go before it shuts
    // plugins down; this listing is one.
    drop(chain);
    host.shutdown().await;
    errors
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let config = EngineConfig {
        cache_dir: args.cache_dir,
        host_functions: body_functions(),
        ..EngineConfig::default()
    };
    let engine = Engine::new(config)?;

    let mut grants = Grants::default();
    for host in &args.allow_hosts {
        grants = grants.allow_host(host).context("--allow-host")?;
    }
    let name = args
        .module
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "guest".into());
    let mut options = GuestOptions::new(name)
        .grants(grants)
        .memory_limit(args.memory_mib.saturating_mul(1 << 20));
    if let Some(t) = args.timeout {
        options = options.timeout(t);
    }
    for entry in &args.config {
        let Some((k, v)) = entry.split_once('=') else {
            bail!("--config `{entry}`: expected KEY=VALUE");
        };
        options = options.config(k, v);
    }
    let module = engine.load_file(&args.module, options)?;
    if !module.has_export(&args.function) {
        let exports: Vec<&str> = module.exports().collect();
        bail!(
            "`{}` has no export `{}`; it exports: {}",
            args.module.display(),
            args.function,
            exports.join(", ")
        );
    }
    let mut instance = module.instantiate().await?;
    match instance.call(&args.function, args.input.into_bytes()).await {
        Ok(out) => {
            use std::io::Write;
            std::io::stdout().write_all(&out.output)?;
            if !out.output.ends_with(b"\n") {
                println!();
            }
            Ok(ExitCode::from(u8::try_from(out.rc).unwrap_or(1)))
        }
        Err(CallError::Guest { rc, message }) => {
            eprintln!("error (return code {rc}): {message}");
            Ok(ExitCode::from(
                u8::try_from(rc).ok().filter(|c| *c != 0).unwrap_or(1),
            ))
        }
        Err(e) => bail!("{e}"),
    }
}
