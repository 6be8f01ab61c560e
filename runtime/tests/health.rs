//! `buntime health [--ready]` against a real `buntime serve`: the exit code a
//! container health check reads.

mod common;

use std::process::{Command, Output, Stdio};

use common::{BIN, SHARED_MODULE_CACHE, announced_port};

fn health(port: u16, host: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("health").args(args).env("PORT", port.to_string());
    match host {
        Some(h) => cmd.env("RUNTIME_HOST", h),
        None => cmd.env_remove("RUNTIME_HOST"),
    };
    cmd.output().expect("run buntime health")
}

/// A `buntime.jsonc` beside `apps` that turns the core plugins off: these
/// tests are about the process, and a debug build compiles plugins slowly.
fn without_core_plugins(apps: &std::path::Path) -> std::path::PathBuf {
    let config = apps.with_extension("jsonc");
    std::fs::write(
        &config,
        r#"{ "plugins": [
            { "name": "@buntime/plugin-database", "enabled": false },
            { "name": "@buntime/plugin-keyval", "enabled": false }
        ] }"#,
    )
    .expect("write buntime.jsonc");
    config
}

/// A server on `host` and a free port, over an empty worker dir; the child is
/// killed when the guard drops.
struct Server {
    child: std::process::Child,
    port: u16,
    apps: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(host: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let apps = dir.path().join("apps");
        std::fs::create_dir_all(&apps).expect("mkdir");
        let mut child = Command::new(BIN)
            .env("RUNTIME_WORKER_DIRS", &apps)
            .env("RUNTIME_CONFIG", without_core_plugins(&apps))
            .env("RUNTIME_CACHE_DIR", SHARED_MODULE_CACHE)
            .env("RUNTIME_PLUGIN_DIRS", apps.join("plugins"))
            .env("RUNTIME_DATA_DIR", apps.with_extension("data"))
            .env("RUNTIME_HOST", host)
            .env("PORT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let port = announced_port(&mut child);
        Self {
            child,
            port,
            apps,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn health_exits_0_while_the_server_is_live_and_ready_and_1_when_it_is_not() {
    let server = Server::start("0.0.0.0");
    let port = server.port;

    // A wildcard listen address is probed on loopback.
    let live = health(port, Some("0.0.0.0"), &[]);
    assert!(live.status.success(), "{live:?}");
    assert!(
        String::from_utf8_lossy(&live.stdout).contains("/_/api/health/live answered 200"),
        "{live:?}"
    );
    let ready = health(port, None, &["--ready"]);
    assert!(ready.status.success(), "{ready:?}");

    // An unreadable worker dir: still live, no longer ready, and the probe
    // says what the server said.
    std::fs::remove_dir_all(&server.apps).expect("remove the worker dir");
    let not_ready = health(port, None, &["--ready"]);
    assert_eq!(not_ready.status.code(), Some(1), "{not_ready:?}");
    let stderr = String::from_utf8_lossy(&not_ready.stderr);
    assert!(stderr.contains("503"), "{stderr}");
    assert!(stderr.contains("not_ready"), "{stderr}");
    assert!(health(port, None, &[]).status.success());
}

#[test]
fn health_follows_an_ipv6_runtime_host() {
    let server = Server::start("::1");
    let out = health(server.port, Some("::1"), &["--ready"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("http://[::1]:"),
        "{out:?}"
    );
}

#[test]
fn health_exits_1_when_nothing_answers() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = health(port, Some("127.0.0.1"), &["--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("unhealthy: no answer from http://127.0.0.1:"),
        "{stderr}"
    );
}

#[test]
fn check_warns_about_a_runtime_variable_it_does_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .arg("check")
        .env("RUNTIME_WORKER_DIRS", dir.path())
        .env("RUNTIME_PLUGIN_DIRS", dir.path().join("plugins"))
        .env(
            "RUNTIME_CONFIG",
            without_core_plugins(&dir.path().join("apps")),
        )
        .env("RUNTIME_WORKERDIRS", "typo")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("warning: RUNTIME_WORKERDIRS is set, but Buntime reads no such variable"),
        "{stdout}"
    );
    assert!(!stdout.contains("warning: RUNTIME_WORKER_DIRS"), "{stdout}");
}
