//! Guest code always runs under a deadline that fires, and no number of
//! requests to a guest that never returns can take every worker thread:
//! start functions, first calls and later calls alike; and a shutdown ends
//! in its grace period whatever is still running.
//!
//! The server runs on its own two-worker runtime (the size of the machines
//! Buntime is measured on) and the clients on plain threads, so a wedged
//! server fails these tests rather than hanging them.

use std::path::Path;
use std::time::{Duration, Instant};

use buntime::server::ConnectionLimits;

use super::guests;
use super::raw_http::{self, addr};
use crate::server::TestServer;

/// A server on a runtime of its own.
struct Isolated {
    runtime: tokio::runtime::Runtime,
    server: Option<TestServer>,
    addr: String,
}

/// The `timeout` of the apps that never return.
const GUEST_TIMEOUT: Duration = Duration::from_secs(6);

/// How long the health route may take while the flood runs: a server whose
/// workers were all held until the guests' deadline fires would answer only
/// after `GUEST_TIMEOUT`. The margin below it is wide because these tests
/// share the machine's two cores with the rest of the suite.
const HEALTH_BUDGET: Duration = Duration::from_secs(4);

/// These tests keep both cores busy with spinning guests; one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Isolated {
    fn start(limits: ConnectionLimits, setup: impl FnOnce(&Path)) -> Self {
        // The binary's runtime, with the two workers of a two-core machine.
        let runtime = buntime::server::runtime_builder()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let server = runtime.block_on(TestServer::start_full(16, limits, setup));
        let addr = addr(&server.base);
        Self {
            runtime,
            server: Some(server),
            addr,
        }
    }

    /// Stops the server; how long that took.
    fn stop(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
        started.elapsed()
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failed test may have left the server wedged: abandon it
            // rather than wait for it.
            std::mem::forget(self.server.take());
            let runtime = std::mem::replace(
                &mut self.runtime,
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime"),
            );
            runtime.shutdown_background();
        } else {
            self.stop();
        }
    }
}

fn install(root: &Path, name: &str, wat: &str, worker: &str) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("app.wasm"), wat).expect("app");
    std::fs::write(dir.join("worker.jsonc"), worker).expect("worker.jsonc");
}

/// Sends `n` requests to `path` at once while polling the health route;
/// returns each request's status and time, and fails if the health route
/// ever stopped answering meanwhile.
fn flood_while_checking_health(addr: &str, path: &str, n: usize) -> Vec<(u16, Duration)> {
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let (addr, path) = (addr.to_owned(), path.to_owned());
            std::thread::spawn(move || {
                let started = Instant::now();
                let res = raw_http::get(&addr, &path, Duration::from_secs(20));
                (res.map(|r| r.status).unwrap_or(0), started.elapsed())
            })
        })
        .collect();
    let mut health_checks = 0;
    while requests.iter().any(|r| !r.is_finished()) {
        let res = raw_http::get(addr, "/_/api/health", HEALTH_BUDGET)
            .unwrap_or_else(|e| panic!("the health route stopped answering: {e}"));
        assert_eq!(res.status, 200, "{}", res.body);
        health_checks += 1;
    }
    assert!(health_checks > 0);
    requests
        .into_iter()
        .map(|r| r.join().expect("client thread"))
        .collect()
}

fn assert_all_failed_in_time(results: &[(u16, Duration)], timeout: Duration) {
    for (status, took) in results {
        assert!(
            matches!(status, 503 | 504),
            "each request must fail with 503 (preempted) or 504 (timeout), got {status}: {results:?}"
        );
        assert!(
            *took < timeout + Duration::from_secs(3),
            "answered after {took:?}, timeout {timeout:?}: {results:?}"
        );
    }
}

#[test]
fn a_start_function_that_never_returns_costs_only_its_own_requests() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = Isolated::start(ConnectionLimits::default(), |root| {
        install(
            root,
            "wedge",
            &guests::app(u64::MAX, true, false),
            &format!(
                "{{ timeout: \"{}s\", maxConcurrency: 8 }}",
                GUEST_TIMEOUT.as_secs()
            ),
        );
        std::fs::create_dir_all(root.join("site")).expect("mkdir");
        std::fs::write(root.join("site/index.html"), "<p>static</p>").expect("write");
    });
    // One more request than the runtime has workers.
    let results = flood_while_checking_health(&server.addr, "/wedge/", 3);
    assert_all_failed_in_time(&results, GUEST_TIMEOUT);
    // A static site still answers.
    let site = raw_http::get(&server.addr, "/site/", Duration::from_secs(2)).expect("static");
    assert_eq!(site.status, 200);
    assert!(server.stop() < Duration::from_secs(10));
}

#[test]
fn a_call_that_never_returns_cannot_take_every_worker() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Fast calls first (the module is known to be fast and runs without a
    // fiber), then many concurrent calls that spin.
    let mut server = Isolated::start(ConnectionLimits::default(), |root| {
        install(
            root,
            "spin",
            &guests::app(1000, false, false),
            &format!(
                "{{ timeout: \"{}s\", ttl: \"1m\", maxConcurrency: 16, maxQueue: 16 }}",
                GUEST_TIMEOUT.as_secs()
            ),
        );
    });
    for _ in 0..3 {
        let ok = raw_http::get(&server.addr, "/spin/", Duration::from_secs(5)).expect("warm");
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(ok.body, "ok");
    }
    let results = flood_while_checking_health(&server.addr, &guests::long_path("/spin/", 1200), 3);
    assert_all_failed_in_time(&results, GUEST_TIMEOUT);
    // The app itself still serves its short requests.
    let ok = raw_http::get(&server.addr, "/spin/", Duration::from_secs(5)).expect("after");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(server.stop() < Duration::from_secs(10));
}

#[test]
fn shutdown_cuts_what_is_still_running_when_its_grace_ends() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let limits = ConnectionLimits {
        shutdown_timeout: Duration::from_millis(500),
        ..ConnectionLimits::default()
    };
    let mut server = Isolated::start(limits, |root| {
        // Runs on a fiber, for up to a minute.
        install(
            root,
            "slow",
            &guests::app(1000, false, true),
            r#"{ timeout: "60s" }"#,
        );
    });
    let addr = server.addr.clone();
    let in_flight = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = raw_http::get(
            &addr,
            &guests::long_path("/slow/", 1200),
            Duration::from_secs(30),
        );
        (answer, started.elapsed())
    });
    // Wait until the call is running.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = raw_http::get(&server.addr, "/_/stats", Duration::from_secs(2)).expect("stats");
        if stats.body.contains(r#""active":1"#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow call never started: {}",
            stats.body
        );
        std::thread::yield_now();
    }
    let took = server.stop();
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?} with a 500 ms grace period"
    );
    let (answer, waited) = in_flight.join().expect("client");
    assert!(
        answer.is_err(),
        "the request in flight must be cut, not answered: {answer:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "its connection stayed open for {waited:?}"
    );
}
