//! The `buntime` binary itself: `check` exit codes and messages, and `serve`
//! answering HTTP and exiting 0 on SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{BIN, SHARED_MODULE_CACHE, announced_port, http_get, http_get_at};

fn install(root: &Path, rel: &str, worker: Option<&str>) {
    let dir = root.join(rel);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(buntime_fixtures::APP_HELLO, dir.join("app.wasm")).expect("copy");
    if let Some(w) = worker {
        std::fs::write(dir.join("worker.jsonc"), w).expect("write");
    }
}

/// Runs `buntime check` over `dir`.
fn check(dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("check")
        .env("RUNTIME_WORKER_DIRS", dir)
        .env("RUNTIME_CACHE_DIR", SHARED_MODULE_CACHE)
        .output()
        .expect("run")
}

#[test]
fn check_accepts_good_apps_and_names_every_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    install(dir.path(), "good/1.0.0", Some(r#"{ ttl: "1m" }"#));
    let out = check(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("good@1.0.0") && stdout.contains("ttl 60s"),
        "{stdout}"
    );

    install(dir.path(), "typo/1.0.0", Some(r#"{ tll: 1 }"#));
    install(
        dir.path(),
        "short/2.0.0",
        Some(r#"{ ttl: "1s", timeout: "5s" }"#),
    );
    let out = check(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("typo/1.0.0/worker.jsonc") && stdout.contains("unknown field `tll`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("short/2.0.0/worker.jsonc: `ttl`: must be at least `timeout`"),
        "{stdout}"
    );
    assert!(stdout.contains("2 error(s)"), "{stdout}");
}

#[test]
#[cfg(unix)]
fn check_names_an_app_over_the_ceiling_and_an_entrypoint_leading_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let apps = dir.path().join("apps");
    install(&apps, "busy/1.0.0", Some("{ maxQueue: 20000 }"));
    install(
        &apps,
        "linked/1.0.0",
        Some(r#"{ entrypoint: "main.wasm" }"#),
    );
    std::os::unix::fs::symlink(
        "../../busy/1.0.0/app.wasm",
        apps.join("linked/1.0.0/main.wasm"),
    )
    .expect("symlink");
    let config = dir.path().join("buntime.jsonc");
    std::fs::write(&config, "{}").expect("write");
    let run = || {
        Command::new(BIN)
            .arg("check")
            .env("RUNTIME_WORKER_DIRS", &apps)
            .env("RUNTIME_CONFIG", &config)
            .env("RUNTIME_CACHE_DIR", SHARED_MODULE_CACHE)
            .output()
            .expect("run")
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("busy/1.0.0/worker.jsonc: `maxQueue`: asks for 20000, above the operator's ceiling of 10000 (raise `apps.ceiling.maxQueue` in buntime.jsonc"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "linked/1.0.0/worker.jsonc: `entrypoint`: `main.wasm` leads outside the app directory"
        ),
        "{stdout}"
    );
    std::fs::write(&config, "{ apps: { ceiling: { maxQueue: 20000 } } }").expect("write");
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("busy@1.0.0"), "{stdout}");
    assert!(!stdout.contains("maxQueue"), "{stdout}");
    assert!(stdout.contains("1 error(s)"), "{stdout}");
}

#[test]
fn check_prints_the_access_settings_without_the_key() {
    use buntime::access::{KeyStore, NewKey, Permissions, Role};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("check")
            .env("RUNTIME_WORKER_DIRS", dir.path())
            .env("RUNTIME_DATA_DIR", &data)
            .env("RUNTIME_CACHE_DIR", SHARED_MODULE_CACHE)
            .env_remove("RUNTIME_MASTER_KEY")
            .env_remove("BUNTIME_MASTER_KEY")
            .env_remove("RUNTIME_TRUSTED_PROXIES")
            .env_remove("RUNTIME_METRICS_PUBLIC");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stdout = run(&[]);
    assert!(
        stdout.contains("access: master key not set, 0 generated key(s) (0 expired), metrics need a key, trusted proxies none"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: no API key is configured"),
        "{stdout}"
    );

    let store = KeyStore::open(Some(&data)).expect("store");
    store
        .create(NewKey {
            name: "ci".into(),
            role: Role::Viewer,
            permissions: Permissions::of_role(Role::Viewer),
            permission_names: Vec::new(),
            description: None,
            expires_at: None,
        })
        .expect("create");
    drop(store);
    let secret = "a-master-key-nobody-may-print-0001";
    let stdout = run(&[
        ("RUNTIME_MASTER_KEY", secret),
        ("RUNTIME_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
        ("RUNTIME_METRICS_PUBLIC", "true"),
    ]);
    assert!(
        stdout.contains("access: master key set, 1 generated key(s) (0 expired), metrics public, trusted proxies 10.0.0.0/8, ::1/128"),
        "{stdout}"
    );
    assert!(!stdout.contains(secret), "{stdout}");
    assert!(!stdout.contains("warning: no API key"), "{stdout}");
}

#[test]
fn check_without_worker_dirs_says_what_to_set() {
    let out = Command::new(BIN)
        .arg("check")
        .env_remove("RUNTIME_WORKER_DIRS")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RUNTIME_WORKER_DIRS: is required"),
        "{stderr}"
    );
}

#[test]
fn serve_answers_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    install(
        dir.path(),
        "hello/1.0.0",
        Some(r#"{ ttl: "1m", env: { GREETING: "Hey" } }"#),
    );
    let mut child = Command::new(BIN)
        .env("RUNTIME_WORKER_DIRS", dir.path())
        .env("RUNTIME_CACHE_DIR", SHARED_MODULE_CACHE)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let port = announced_port(&mut child);

    let body = http_get(port, "/hello@1/");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("Hey! You asked for GET /"), "{body}");
    // The warm instance keeps its count in an Extism var.
    let again = http_get(port, "/hello@1/");
    assert!(again.contains("has served 2 request(s)"), "{again}");

    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "exit status {exit:?}");
}

/// SIGTERM with a request still running: the process answers on the IPv6
/// address it was given, and exits within its shutdown timeout.
#[test]
fn serve_listens_on_runtime_host_and_exits_within_its_shutdown_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("spin");
    std::fs::create_dir_all(&app).expect("mkdir");
    // `handle` spins until stopped; importing `http_request` puts it on a
    // fiber, so it runs for its whole 60 s timeout unless cut.
    std::fs::write(
        app.join("app.wasm"),
        r#"(module
  (import "extism:host/env" "http_request" (func $http (param i64 i64) (result i64)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32) (loop $spin (br $spin)) (i32.const 0)))"#,
    )
    .expect("app");
    std::fs::write(app.join("worker.jsonc"), r#"{ timeout: "60s" }"#).expect("worker");
    let mut child = Command::new(BIN)
        .env("RUNTIME_WORKER_DIRS", dir.path())
        .env("RUNTIME_CACHE_DIR", SHARED_MODULE_CACHE)
        .env("RUNTIME_PLUGIN_DIRS", dir.path().join("plugins"))
        .env("RUNTIME_DATA_DIR", dir.path().join("data"))
        .env("RUNTIME_HOST", "::1")
        .env("RUNTIME_SHUTDOWN_TIMEOUT", "1s")
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let port = announced_port(&mut child);
    let mut spinning = std::net::TcpStream::connect(("::1", port)).expect("connect over IPv6");
    {
        use std::io::Write;
        write!(spinning, "GET /spin/ HTTP/1.1\r\nhost: x\r\n\r\n").expect("write");
    }
    // The call is running once the server says so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = http_get_at("::1", port, "/_/stats");
        if stats.contains(r#""active":1"#) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the call never started: {stats}"
        );
    }
    let started = std::time::Instant::now();
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            assert!(exit.success(), "exit status {exit:?}");
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running 10 s after SIGTERM with a 1 s shutdown timeout");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
