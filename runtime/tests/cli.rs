//! The `buntime` binary itself: `check` exit codes and messages, and `serve`
//! answering HTTP and exiting 0 on SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_buntime");

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
        .env("RUNTIME_CACHE_DIR", "off")
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
            .env("RUNTIME_CACHE_DIR", "off")
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
        .env("RUNTIME_CACHE_DIR", "off")
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
        .env("RUNTIME_CACHE_DIR", "off")
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

/// The port `buntime serve` announces on the first line of its stdout.
fn announced_port(child: &mut std::process::Child) -> u16 {
    let stdout = child.stdout.take().expect("stdout");
    let first = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a first line")
        .expect("utf-8");
    first
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"))
}

fn http_get(port: u16, path: &str) -> String {
    http_get_at("127.0.0.1", port, path)
}

fn http_get_at(host: &str, port: u16, path: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect((host, port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn plugin_new_scaffolds_a_crate_that_builds_and_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["plugin", "new", "@acme/greeter", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = dir.path().join("greeter");

    // Build it for real, as its README says (sharing the guests' target dir
    // so dependencies are compiled once across runs).
    let target_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm-guests/scaffold");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&krate)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-unknown-unknown",
            "--target-dir",
        ])
        .arg(&target_dir);
    for var in [
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo.status().expect("cargo");
    assert!(status.success(), "the scaffolded crate does not build");

    let plugin_dir = dir.path().join("plugins/greeter");
    std::fs::create_dir_all(&plugin_dir).expect("mkdir");
    std::fs::copy(
        target_dir.join("wasm32-unknown-unknown/release/greeter.wasm"),
        plugin_dir.join("plugin.wasm"),
    )
    .expect("copy wasm");
    std::fs::copy(
        krate.join("manifest.jsonc"),
        plugin_dir.join("manifest.jsonc"),
    )
    .expect("copy manifest");
    let apps = dir.path().join("apps");
    install(&apps, "hello/1.0.0", None);

    let out = Command::new(BIN)
        .arg("check")
        .env("RUNTIME_WORKER_DIRS", &apps)
        .env("RUNTIME_PLUGIN_DIRS", dir.path().join("plugins"))
        .env("RUNTIME_CACHE_DIR", "off")
        .current_dir(dir.path())
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("plugin @acme/greeter")
            && stdout.contains("hooks [on_request, on_response, handle]"),
        "{stdout}"
    );

    let mut child = Command::new(BIN)
        .env("RUNTIME_WORKER_DIRS", &apps)
        .env("RUNTIME_PLUGIN_DIRS", dir.path().join("plugins"))
        .env("RUNTIME_CACHE_DIR", "off")
        .env("PORT", "0")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let port = announced_port(&mut child);
    let routes = http_get(port, "/_/greeter/hello");
    assert!(
        routes.starts_with("HTTP/1.1 200") && routes.ends_with("hello from @acme/greeter"),
        "{routes}"
    );
    let app = http_get(port, "/hello@1/");
    assert!(app.contains("x-acme-greeter-seen: 1"), "{app}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().expect("wait").success());
}
