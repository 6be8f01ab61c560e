//! Data on disk, through the real `buntime` binary: keyval data survives the
//! process being killed (SIGKILL in the middle of a burst of writes leaves a
//! consistent WAL database holding every acknowledged write), and clients
//! cannot fill the disk with tenants (`RUNTIME_MAX_TENANTS`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{BIN, announced_port};

/// A started server, killed when dropped: a test that fails halfway leaves
/// no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `buntime serve` in `dir` (data in `dir/data`); returns it and its port.
fn serve(dir: &Path) -> (Running, u16) {
    serve_with(dir, &[])
}

/// [`serve`] with extra environment variables.
fn serve_with(dir: &Path, vars: &[(&str, &str)]) -> (Running, u16) {
    std::fs::create_dir_all(dir.join("apps")).expect("mkdir");
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .envs(vars.iter().copied())
        .env("RUNTIME_WORKER_DIRS", dir.join("apps"))
        .env("RUNTIME_DATA_DIR", dir.join("data"))
        .env("RUNTIME_PLUGIN_DIRS", dir.join("plugins"))
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let port = announced_port(&mut child);
    (Running(child), port)
}

/// One HTTP/1.1 request; `None` when the server is gone.
fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

#[test]
fn a_killed_server_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, port) = serve(dir.path());
    let acked = Arc::new(Mutex::new(Vec::<(usize, usize)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let path = format!("/_/keyval/api/keys/burst/{w}/{i}");
                    match request(port, "PUT", &path, &format!("{{\"w\":{w},\"i\":{i}}}")) {
                        Some((200, _)) => acked.lock().expect("lock").push((w, i)),
                        Some((status, body)) => panic!("PUT {path}: {status} {body}"),
                        None => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Let the burst run, then kill the process without warning. Bounded: a
    // writer that panicked on a refused PUT would otherwise leave this
    // waiting for ever.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").len() < 200 {
        if std::time::Instant::now() > deadline || writers.iter().all(|w| w.is_finished()) {
            // `server` is killed as the panic unwinds.
            panic!(
                "the burst stalled at {} acknowledged writes",
                acked.lock().expect("lock").len()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    server.0.kill().expect("SIGKILL");
    server.0.wait().expect("wait");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 200);

    // The file is consistent (SQLite replays its WAL on open).
    let db = rusqlite::Connection::open(dir.path().join("data/default.db")).expect("open");
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    drop(db);

    // A new server sees every acknowledged write.
    let (child, port) = serve(dir.path());
    for chunk in acked.chunks(500) {
        let keys: Vec<String> = chunk
            .iter()
            .map(|(w, i)| format!("[\"burst\",{w},{i}]"))
            .collect();
        let body = format!("{{\"keys\":[{}]}}", keys.join(","));
        let (status, got) =
            request(port, "POST", "/_/keyval/api/keys/batch", &body).expect("batch");
        assert_eq!(status, 200, "{got}");
        let entries: serde_json::Value = serde_json::from_str(&got).expect("json");
        for ((w, i), e) in chunk.iter().zip(entries.as_array().expect("list")) {
            assert_eq!(
                e["value"],
                serde_json::json!({"w": w, "i": i}),
                "acknowledged write burst/{w}/{i} is missing after the kill"
            );
        }
    }
    shut_down(child);
}

/// Stops a server started by [`serve`].
fn shut_down(mut server: Running) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    server.0.wait().expect("wait");
}

#[test]
fn tenants_past_the_limit_are_refused_and_make_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, port) = serve_with(dir.path(), &[("RUNTIME_MAX_TENANTS", "2")]);
    let put = |tenant: &str| {
        request(
            port,
            "PUT",
            &format!("/_/keyval/api/keys/k?tenant={tenant}"),
            "1",
        )
        .expect("answer")
    };
    assert_eq!(put("acme").0, 200);
    assert_eq!(put("globex").0, 200);
    // Known tenants keep working; a third is refused, naming the fix.
    assert_eq!(put("acme").0, 200);
    let (status, body) = put("initech");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("TOO_MANY_TENANTS"), "{body}");
    assert!(body.contains("RUNTIME_MAX_TENANTS"), "{body}");
    // The database plugin's tenant API has the same limit.
    let (status, body) = request(
        port,
        "POST",
        "/_/database/api/tenants",
        r#"{"id": "initech"}"#,
    )
    .expect("answer");
    assert_eq!(status, 429, "{body}");
    let files: Vec<String> = std::fs::read_dir(dir.path().join("data/default.tenants"))
        .expect("tenant dir")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".db"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    // Deleting one makes room.
    let (status, body) =
        request(port, "DELETE", "/_/database/api/tenants/globex", "").expect("answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(put("initech").0, 200);
    // Keyval notices a tenant deleted behind its back: at most one refused
    // request per warm instance, then the tenant is set up again.
    let (status, body) =
        request(port, "DELETE", "/_/database/api/tenants/initech", "").expect("answer");
    assert_eq!(status, 200, "{body}");
    let answers: Vec<(u16, String)> = (0..4).map(|_| put("initech")).collect();
    let refused = answers.iter().take_while(|(s, _)| *s == 404).count();
    assert!(refused < answers.len(), "never set up again: {answers:?}");
    for (status, body) in &answers[..refused] {
        assert!(
            body.contains("NOT_FOUND") && body.contains("tenant `initech`"),
            "{status} {body}"
        );
    }
    // Once set up again, it stays set up.
    for (status, body) in &answers[refused..] {
        assert_eq!(*status, 200, "{answers:?}: {body}");
    }
    shut_down(child);
}
