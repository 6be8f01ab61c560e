//! Keyval over HTTP next to raw rusqlite doing the same work, in one run.
//!
//! Part 1 — throughput and tail latency: the real server on loopback (the
//! embedded keyval plugin on a SQLite file) under 16 concurrent keep-alive
//! clients (hyper's HTTP/1 client on a thread of its own) for `set`, `get`, `list(100)` and an atomic commit (one check,
//! two sums); then the same operations written directly against rusqlite
//! (same schema, WAL, one connection per thread, two threads). Each row
//! prints ops/s, p50 and p99 and the HTTP/raw throughput ratio.
//!
//! Part 2 — the `sql` capability's own cost per statement: a plugin route
//! that runs one `SELECT` through `sql_query`, minus the same request with
//! the host call skipped (`op: none`), minus rusqlite running that `SELECT`
//! — all in process (no sockets), medians of many calls.
//!
//! Run with `RUST_LIB_BACKTRACE=0 cargo bench -p buntime-benches --bench keyval`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use buntime::plugins::PluginSources;
use buntime::server::{AppState, ConnectionLimits, host_functions, serve_with, service};
use buntime::wasm::{Engine, EngineConfig};
use buntime_fixtures as fx;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

const CLIENTS: usize = 16;
const RUN: Duration = Duration::from_secs(3);
const KEYS: u64 = 1000;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        host_functions: host_functions(),
        ..EngineConfig::default()
    })
    .expect("engine")
}

async fn state(root: &Path, embedded: bool) -> AppState {
    std::fs::create_dir_all(root.join("apps")).expect("mkdir");
    let sources = PluginSources {
        dirs: vec![root.join("plugins")],
        embedded: if embedded {
            buntime::plugins::embedded()
        } else {
            Vec::new()
        },
        config_file: Some((root.join("buntime.jsonc"), false)),
        data_dir: Some(root.join("data")),
        max_tenants: None,
    };
    AppState::build(engine(), vec![root.join("apps")], 16, sources)
        .await
        .expect("state")
}

/// Latencies in µs → (ops/s, p50, p99).
fn summary(mut lat: Vec<u64>, elapsed: Duration) -> (f64, u64, u64) {
    lat.sort_unstable();
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    (
        lat.len() as f64 / elapsed.as_secs_f64(),
        pick(0.5),
        pick(0.99),
    )
}

#[derive(Clone, Copy)]
enum Op {
    Set,
    Get,
    List,
    Atomic,
}

const OPS: [(Op, &str); 4] = [
    (Op::Set, "set"),
    (Op::Get, "get"),
    (Op::List, "list(100)"),
    (Op::Atomic, "atomic commit"),
];

/// One keep-alive HTTP/1.1 connection, driven by hyper's client directly:
/// the load generator shares the machine with the server, so it should cost
/// as little as it can (what wrk does for `benches/load.sh`).
async fn connect(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

fn request(addr: std::net::SocketAddr, op: Op, i: u64) -> hyper::Request<Full<Bytes>> {
    let base = "/_/keyval/api";
    let (method, path, body) = match op {
        Op::Set => (
            "PUT",
            format!("{base}/keys/bench/{i}"),
            format!("{{\"n\":{i},\"name\":\"item {i}\"}}"),
        ),
        Op::Get => ("GET", format!("{base}/keys/bench/{i}"), String::new()),
        Op::List => (
            "GET",
            format!("{base}/keys?prefix=bench&limit=100"),
            String::new(),
        ),
        Op::Atomic => (
            "POST",
            format!("{base}/atomic"),
            format!(
                r#"{{"checks":[{{"key":["absent",{i}],"versionstamp":null}}],"mutations":[{{"type":"sum","key":["ctr",{a}],"value":1}},{{"type":"sum","key":["ctr",{b}],"value":1}}]}}"#,
                a = i % 16,
                b = (i + 1) % 16
            ),
        ),
    };
    hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

/// `CLIENTS` connections for `RUN`, on a thread of their own (like wrk),
/// while the server keeps its two workers.
fn http_run(addr: std::net::SocketAddr, op: Op) -> (f64, u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async move {
        let counter = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut send = connect(addr).await;
                    let mut lat = Vec::new();
                    while start.elapsed() < RUN {
                        let i = counter.fetch_add(1, Ordering::Relaxed) % KEYS;
                        let t = Instant::now();
                        send.ready().await.expect("connection");
                        let res = send
                            .send_request(request(addr, op, i))
                            .await
                            .expect("response");
                        let status = res.status();
                        let body = res.into_body().collect().await.expect("body").to_bytes();
                        assert!(
                            status.is_success(),
                            "{status}: {}",
                            String::from_utf8_lossy(&body)
                        );
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("client"));
        }
        summary(all, start.elapsed())
    })
}

const RAW_SCHEMA: &str = "
    PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS kv_entries (key BLOB PRIMARY KEY, value TEXT NOT NULL, versionstamp INTEGER NOT NULL, expires_at INTEGER) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS kv_meta (id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
    INSERT OR IGNORE INTO kv_meta VALUES (1, 0);";

fn key(prefix: &str, i: u64) -> Vec<u8> {
    let mut k = vec![0x02];
    k.extend_from_slice(prefix.as_bytes());
    k.push(0);
    k.push(0x03);
    k.extend_from_slice(&((i as f64).to_bits() ^ (1 << 63)).to_be_bytes());
    k
}

fn raw_op(conn: &mut rusqlite::Connection, op: Op, i: u64) -> rusqlite::Result<()> {
    match op {
        Op::Set => {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute("UPDATE kv_meta SET version = version + 1 WHERE id = 1", [])?;
            tx.prepare_cached("INSERT INTO kv_entries VALUES (?1, ?2, (SELECT version FROM kv_meta WHERE id = 1), NULL) ON CONFLICT(key) DO UPDATE SET value = excluded.value, versionstamp = excluded.versionstamp")?
                .execute(rusqlite::params![key("bench", i), format!("{{\"n\":{i},\"name\":\"item {i}\"}}")])?;
            tx.commit()
        }
        Op::Get => conn
            .prepare_cached("SELECT value, versionstamp FROM kv_entries WHERE key = ? AND (expires_at IS NULL OR expires_at > 0)")?
            .query_row([key("bench", i)], |r| r.get::<_, String>(0))
            .map(drop),
        Op::List => {
            let mut st = conn.prepare_cached("SELECT key, value, versionstamp FROM kv_entries WHERE key > ? AND key < ? ORDER BY key LIMIT 100")?;
            let rows: Vec<String> = st
                .query_map([vec![0x02u8, b'b'], vec![0x02u8, b'c']], |r| r.get(1))?
                .collect::<Result<_, _>>()?;
            std::hint::black_box(rows);
            Ok(())
        }
        Op::Atomic => {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let exists: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM kv_entries WHERE key = ?)", [key("absent", i)], |r| r.get(0))?;
            assert!(!exists);
            tx.execute("UPDATE kv_meta SET version = version + 1 WHERE id = 1", [])?;
            for c in [i % 16, (i + 1) % 16] {
                tx.prepare_cached("INSERT INTO kv_entries VALUES (?1, '1', (SELECT version FROM kv_meta WHERE id = 1), NULL) ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT), versionstamp = excluded.versionstamp")?
                    .execute([key("ctr", c)])?;
            }
            tx.commit()
        }
    }
}

fn raw_run(db: &Path, op: Op) -> (f64, u64, u64) {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (db, counter) = (db.to_owned(), counter.clone());
            std::thread::spawn(move || {
                let mut conn = rusqlite::Connection::open(&db).expect("open");
                conn.busy_timeout(Duration::from_secs(5)).expect("busy");
                let mut lat = Vec::new();
                while start.elapsed() < RUN {
                    let i = counter.fetch_add(1, Ordering::Relaxed) % KEYS;
                    let t = Instant::now();
                    raw_op(&mut conn, op, i).expect("raw op");
                    lat.push(t.elapsed().as_micros() as u64);
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().expect("thread"));
    }
    summary(all, start.elapsed())
}

/// Median wall time of `f` over `n` runs, in µs.
async fn median<F: std::future::Future<Output = ()>>(n: usize, mut f: impl FnMut() -> F) -> f64 {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

async fn sql_overhead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let plugin = root.join("plugins/kit");
    std::fs::create_dir_all(&plugin).expect("mkdir");
    std::fs::write(
        plugin.join("manifest.jsonc"),
        r#"{ "name": "kit", "version": "1.0.0", "base": "kit", "capabilities": { "sql": ["default"] } }"#,
    )
    .expect("manifest");
    std::fs::copy(fx::PLUGIN_KIT, plugin.join("plugin.wasm")).expect("wasm");
    let state = state(root, false).await;
    let app = service(state);
    let call = |body: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::post("/_/kit/sql")
                .body(Body::from(body))
                .expect("request");
            let res = app.oneshot(req).await.expect("response");
            assert!(res.status().is_success(), "{}", res.status());
        }
    };
    let stmt =
        r#"{"op":"query","db":"default","sql":"SELECT value FROM t WHERE id = ?","params":[7]}"#;
    // The same request that skips only the host call.
    let none =
        r#"{"op":"none","db":"default","sql":"SELECT value FROM t WHERE id = ?","params":[7]}"#;
    call(r#"{"op":"execute","db":"default","sql":"CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, value TEXT)"}"#).await;
    call(r#"{"op":"execute","db":"default","sql":"INSERT OR REPLACE INTO t VALUES (7, 'seven')"}"#)
        .await;
    for _ in 0..200 {
        call(stmt).await;
        call(none).await;
    }
    let with_sql = median(3000, || call(stmt)).await;
    let without = median(3000, || call(none)).await;
    let conn = rusqlite::Connection::open(root.join("data/default.db")).expect("open");
    let raw = median(3000, || {
        let v: String = conn
            .prepare_cached("SELECT value FROM t WHERE id = ?")
            .and_then(|mut s| s.query_row([7], |r| r.get(0)))
            .expect("raw");
        std::hint::black_box(v);
        async {}
    })
    .await;
    let overhead = with_sql - without - raw;
    println!();
    println!("sql capability, one SELECT by primary key (medians of 3000 in-process calls):");
    println!("  plugin route with the statement   {with_sql:8.1} µs");
    println!("  the same request, no host call    {without:8.1} µs");
    println!("  raw rusqlite, the statement       {raw:8.1} µs");
    println!("  => the capability's own cost      {overhead:8.1} µs per statement (target ≤ 20)");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // `cargo bench --bench keyval -- sql` runs only part 2.
    let only_sql = std::env::args().skip(1).any(|a| a == "sql");
    rt.block_on(async {
        if only_sql {
            sql_overhead().await;
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let state = state(dir.path(), true).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with(
            listener,
            state,
            async move {
                let _ = stopped.await;
            },
            ConnectionLimits::default(),
        ));

        let raw_dir = tempfile::tempdir().expect("tempdir");
        let raw_db = raw_dir.path().join("raw.db");
        rusqlite::Connection::open(&raw_db)
            .and_then(|c| c.execute_batch(RAW_SCHEMA))
            .expect("raw schema");

        println!("keyval over HTTP ({CLIENTS} keep-alive clients, {RUN:?} each) next to raw rusqlite (2 threads)");
        println!("{:<14} {:>10} {:>8} {:>8}   {:>10} {:>8} {:>8}   {:>7}", "op", "http op/s", "p50 µs", "p99 µs", "raw op/s", "p50 µs", "p99 µs", "ratio");
        for (op, name) in OPS {
            let (h_ops, h50, h99) = tokio::task::spawn_blocking(move || http_run(addr, op)).await.expect("clients");
            let db = raw_db.clone();
            let (r_ops, r50, r99) = tokio::task::spawn_blocking(move || raw_run(&db, op)).await.expect("raw");
            println!(
                "{name:<14} {h_ops:>10.0} {h50:>8} {h99:>8}   {r_ops:>10.0} {r50:>8} {r99:>8}   {:>6.1}%",
                100.0 * h_ops / r_ops
            );
        }
        let _ = stop.send(());
        let _ = server.await;
        sql_overhead().await;
    });
}
