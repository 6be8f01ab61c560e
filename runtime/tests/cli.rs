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
        Some(r#"{ env: { GREETING: "Hey" } }"#),
    );
    let mut child = Command::new(BIN)
        .env("RUNTIME_WORKER_DIRS", dir.path())
        .env("RUNTIME_CACHE_DIR", "off")
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a first line").expect("utf-8");
    let port: u16 = first
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));

    let body = http_get(port, "/hello@1/");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("Hey! You asked for GET /"), "{body}");

    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "exit status {exit:?}");
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}
