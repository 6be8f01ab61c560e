//! The server end to end: a real listener on loopback, real HTTP, apps on disk.

mod apps;
mod cost;
mod lifecycle;
pub(crate) mod metrics;
mod routing;
mod static_files;
mod trace_export;
mod traces;

use std::path::{Path, PathBuf};
use std::time::Duration;

use buntime::plugins::PluginSources;
use buntime::server::{AppState, ConnectionLimits, host_functions, serve_with};
use buntime::wasm::{Engine, EngineConfig};
use buntime_fixtures as fx;

/// The compiled-module cache the plugin servers of this test run share
/// (`target/tmp/module-cache`): the core plugins are compiled once per test
/// build, not once per server, as `RUNTIME_CACHE_DIR` does for `buntime
/// serve`. The cache's own behaviour is tested with fresh directories
/// (`crate::cache`, `crate::attacks::cache`).
pub(crate) fn shared_module_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("module-cache")
}

/// A running server over a temporary worker dir.
pub(crate) struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(setup: impl FnOnce(&Path)) -> Self {
        Self::start_with_pool(16, setup).await
    }

    /// Like [`TestServer::start`] with `pool_size` app versions kept warm.
    pub async fn start_with_pool(pool_size: usize, setup: impl FnOnce(&Path)) -> Self {
        Self::start_full(pool_size, ConnectionLimits::default(), setup).await
    }

    /// Full control: pool size and connection limits.
    pub async fn start_full(
        pool_size: usize,
        limits: ConnectionLimits,
        setup: impl FnOnce(&Path),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        setup(dir.path());
        let engine = Engine::new(EngineConfig {
            host_functions: host_functions(),
            ..EngineConfig::default()
        })
        .expect("engine");
        let state = AppState::build(
            engine,
            vec![dir.path().to_owned()],
            pool_size,
            PluginSources::default(),
        )
        .await
        .expect("state");
        Self::serve(dir, state, limits).await
    }

    /// A server over `dir/apps`, `dir/plugins` and `dir/buntime.jsonc`
    /// (written by `setup`), plus `embedded` plugins.
    pub async fn try_start_plugins(
        embedded: Vec<buntime::plugins::EmbeddedPlugin>,
        setup: impl FnOnce(&Path),
    ) -> Result<Self, buntime::plugins::PluginError> {
        Self::try_start_plugins_configured(embedded, setup, |_| {}).await
    }

    /// [`TestServer::try_start_plugins`], with `configure` applied to the
    /// state before it serves (what the environment sets in `buntime serve`).
    pub async fn try_start_plugins_configured(
        embedded: Vec<buntime::plugins::EmbeddedPlugin>,
        setup: impl FnOnce(&Path),
        configure: impl FnOnce(&AppState),
    ) -> Result<Self, buntime::plugins::PluginError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("apps")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("plugins")).expect("mkdir");
        setup(dir.path());
        let finish = |state: AppState| {
            configure(&state);
            state
        };
        Self::plugins_in(dir, embedded, Default::default(), finish).await
    }

    /// A server over `dir/apps`, `dir/plugins` and `dir/buntime.jsonc`
    /// (written by `setup`) whose state `finish` completes (what `buntime
    /// serve` sets from the environment, such as tracing).
    pub async fn start_plugins_with(
        setup: impl FnOnce(&Path),
        finish: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        Self::start_embedded_with(Vec::new(), setup, finish).await
    }

    /// [`TestServer::start_plugins_with`], plus `embedded` plugins.
    pub async fn start_embedded_with(
        embedded: Vec<buntime::plugins::EmbeddedPlugin>,
        setup: impl FnOnce(&Path),
        finish: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("apps")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("plugins")).expect("mkdir");
        setup(dir.path());
        Self::plugins_in(dir, embedded, Default::default(), finish)
            .await
            .expect("server with plugins")
    }

    /// [`TestServer::try_start_plugins`] over an existing dir (a restart).
    pub async fn try_start_plugins_in(
        dir: tempfile::TempDir,
        embedded: Vec<buntime::plugins::EmbeddedPlugin>,
    ) -> Result<Self, buntime::plugins::PluginError> {
        Self::plugins_in(dir, embedded, Default::default(), |s| s).await
    }

    /// [`TestServer::try_start_plugins_in`] under the operator's access
    /// settings (master key, trusted proxies, public metrics).
    pub async fn try_start_with_access(
        dir: tempfile::TempDir,
        embedded: Vec<buntime::plugins::EmbeddedPlugin>,
        policy: buntime::access::AccessPolicy,
    ) -> Result<Self, buntime::plugins::PluginError> {
        Self::plugins_in(dir, embedded, policy, |s| s).await
    }

    /// [`TestServer::try_start_with_access`] with `finish` given the state
    /// before it serves (to keep a handle on its engine, for one).
    pub(crate) async fn plugins_in(
        dir: tempfile::TempDir,
        embedded: Vec<buntime::plugins::EmbeddedPlugin>,
        policy: buntime::access::AccessPolicy,
        finish: impl FnOnce(AppState) -> AppState,
    ) -> Result<Self, buntime::plugins::PluginError> {
        Self::plugins_limited(dir, embedded, policy, finish, ConnectionLimits::default()).await
    }

    /// [`TestServer::plugins_in`] under connection `limits`.
    pub(crate) async fn plugins_limited(
        dir: tempfile::TempDir,
        embedded: Vec<buntime::plugins::EmbeddedPlugin>,
        policy: buntime::access::AccessPolicy,
        finish: impl FnOnce(AppState) -> AppState,
        limits: ConnectionLimits,
    ) -> Result<Self, buntime::plugins::PluginError> {
        let engine = Engine::new(EngineConfig {
            host_functions: host_functions(),
            cache_dir: Some(shared_module_cache()),
            ..EngineConfig::default()
        })
        .expect("engine");
        let sources = PluginSources {
            dirs: vec![dir.path().join("plugins")],
            embedded,
            config_file: Some((dir.path().join("buntime.jsonc"), false)),
            data_dir: Some(dir.path().join("data")),
            max_tenants: None,
        };
        let state =
            AppState::build_with_access(engine, vec![dir.path().join("apps")], 16, sources, policy)
                .await?;
        let state = finish(state);
        Ok(Self::serve(dir, state, limits).await)
    }

    /// [`TestServer::try_start_plugins`] that must succeed.
    pub async fn start_plugins(setup: impl FnOnce(&Path)) -> Self {
        Self::try_start_plugins(Vec::new(), setup)
            .await
            .expect("server with plugins")
    }

    async fn serve(dir: tempfile::TempDir, state: AppState, limits: ConnectionLimits) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(
            listener,
            state,
            async move {
                let _ = rx.await;
            },
            limits,
        ));
        Self {
            base,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signals shutdown, waits for the server to finish and hands back its
    /// dir (to start another server over the same data).
    pub async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("serve");
        }
        self.dir
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("serve");
        }
    }
}

/// Installs the echo app at `dir/<rel>/app.wasm` with an optional worker.jsonc.
pub(crate) fn install_echo(root: &Path, rel: &str, worker: Option<&str>) -> PathBuf {
    let dir = root.join(rel);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(fx::APP_ECHO, dir.join("app.wasm")).expect("copy wasm");
    if let Some(w) = worker {
        std::fs::write(dir.join("worker.jsonc"), w).expect("worker.jsonc");
    }
    dir
}

pub(super) fn install_site(root: &Path) {
    let site = root.join("site");
    std::fs::create_dir_all(site.join("assets")).expect("mkdir");
    std::fs::write(
        site.join("index.html"),
        "<html><head><title>t</title></head><body>spa</body></html>",
    )
    .expect("write");
    std::fs::write(site.join("assets/app.js"), "console.log('hi')").expect("write");
    std::fs::write(root.join("secret.txt"), "top secret").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("secret.txt"), site.join("leak.txt")).expect("symlink");
}

pub(crate) async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("request")
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Waits until `n` requests of the first warm app are being worked on.
pub(super) async fn wait_until_active(server: &TestServer, n: u64) -> bool {
    // By deadline, not by count: on a loaded machine the first call compiles
    // the module first, and each poll itself takes a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let stats: serde_json::Value = get(&server.url("/_/stats"))
            .await
            .json()
            .await
            .expect("json");
        if stats["workers"][0]["active"] == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}
