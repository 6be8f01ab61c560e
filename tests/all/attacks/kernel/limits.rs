//! What a guest can make the host keep, and the log: block bookkeeping counts
//! against the memory limit, allocation stays cheap with many free blocks,
//! a guest logging in a loop is held to its instance's rate, and a guest's
//! line cannot forge others.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use buntime::wasm::{BLOCK_COST, GuestOptions};
use tracing::level_filters::LevelFilter;

use crate::support;

/// Guest log lines seen by the process's subscriber, by guest name.
#[derive(Default)]
pub(crate) struct LogCounter {
    lines: Mutex<HashMap<String, Vec<String>>>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for &'static LogCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "buntime::guest" {
            return;
        }
        #[derive(Default)]
        struct Fields {
            guest: Option<String>,
            message: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "guest" {
                    self.guest = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.message = format!("{value:?}");
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (Some(guest), Ok(mut lines)) = (fields.guest, self.lines.lock()) {
            lines.entry(guest).or_default().push(fields.message);
        }
    }
}

/// Installs (once) a process-wide subscriber that records guest log lines at
/// `info` and above. Panics if another subscriber was installed first: the
/// tests that read the lines would otherwise pass without checking them.
pub(crate) fn log_counter() -> &'static LogCounter {
    static COUNTER: OnceLock<Option<&'static LogCounter>> = OnceLock::new();
    let installed = *COUNTER.get_or_init(|| {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        let counter: &'static LogCounter = Box::leak(Box::default());
        let subscriber =
            tracing_subscriber::registry().with(counter.with_filter(LevelFilter::INFO));
        tracing::subscriber::set_global_default(subscriber)
            .ok()
            .map(|()| counter)
    });
    installed
        .expect("another global tracing subscriber was installed before the guest line recorder")
}

impl LogCounter {
    /// Every guest's lines that contain `needle`.
    pub(crate) fn lines_containing(&self, needle: &str) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| {
                l.values()
                    .flatten()
                    .filter(|m| m.contains(needle))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn lines_of(guest: &str) -> Vec<String> {
    log_counter()
        .lines
        .lock()
        .expect("lines")
        .get(guest)
        .cloned()
        .unwrap_or_default()
}

const LOGGER: &str = r#"(module
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "store_u8" (func $store8 (param i64 i32)))
    (import "extism:host/env" "input_length" (func $input_len (result i64)))
    (import "extism:host/env" "input_load_u64" (func $in64 (param i64) (result i64)))
    (import "extism:host/env" "log_info" (func $log_info (param i64)))
    ;; Logs "x" as many times as the input's first word says.
    (func (export "flood") (result i32)
        (local $n i64) (local $h i64)
        (local.set $n (call $in64 (i64.const 0)))
        (block $done (loop $next
            (br_if $done (i64.eqz (local.get $n)))
            (local.set $h (call $alloc (i64.const 1)))
            (call $store8 (local.get $h) (i32.const 120))
            (call $log_info (local.get $h))
            (local.set $n (i64.sub (local.get $n) (i64.const 1)))
            (br $next)))
        (i32.const 0)))"#;

fn times(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_logging_in_a_loop_is_held_to_its_rate_and_its_calls_succeed() {
    log_counter();
    assert!(
        LevelFilter::current() >= LevelFilter::INFO,
        "this test needs guest `info` lines enabled"
    );
    let engine = support::engine();
    let module = engine
        .load(LOGGER.as_bytes(), GuestOptions::new("flood-default"))
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let started = std::time::Instant::now();
    instance
        .call("flood", times(20_000))
        .await
        .expect("a flood of log lines is still a successful call");
    let refilled = (100.0 * started.elapsed().as_secs_f64()).ceil() as u64;
    let (written, dropped) = (
        engine.stats().guest_log_lines.get(),
        engine.stats().guest_log_dropped.get(),
    );
    assert_eq!(written + dropped, 20_000);
    // The default burst, and what the default rate refilled while it ran.
    assert!(
        written >= 200 && written <= 200 + refilled,
        "{written} lines written of 20 000 ({refilled} refilled)"
    );
    // Each line that gets through after some were dropped is preceded by
    // one saying how many: at most twice the lines, still bounded.
    let lines = lines_of("flood-default");
    let (summaries, own): (Vec<_>, Vec<_>) =
        lines.iter().partition(|l| l.contains("log lines dropped"));
    assert_eq!(own.len() as u64, written);
    assert!(summaries.len() <= own.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_resumes_with_one_line_counting_what_was_dropped() {
    log_counter();
    let engine = support::engine();
    // A slow refill (one line per 200 ms): the flood of 60 fills its burst
    // of 10 and would need 10 s to be let through whole, however slowly a
    // loaded machine runs it.
    let module = engine
        .load(
            LOGGER.as_bytes(),
            GuestOptions::new("flood-resumes").log_rate(5, 10),
        )
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let started = std::time::Instant::now();
    instance.call("flood", times(60)).await.expect("flood");
    let refilled = (5.0 * started.elapsed().as_secs_f64()).ceil() as u64;
    let written = engine.stats().guest_log_lines.get();
    assert!(
        written <= 10 + refilled && written < 60,
        "{written} lines written with a burst of 10"
    );
    let dropped = 60 - written;
    assert_eq!(engine.stats().guest_log_dropped.get(), dropped);
    // The bucket refills; log until a line gets through.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while engine.stats().guest_log_lines.get() == written {
        assert!(
            std::time::Instant::now() < deadline,
            "logging never resumed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        instance.call("flood", times(1)).await.expect("one line");
    }
    // The line that got through is preceded by one counting what was
    // dropped since the last line that did. (A machine that stalled the
    // flood for a refill let a line through in its middle, with a count of
    // its own before it: the counts add up either way.)
    let lines = lines_of("flood-resumes");
    let is_summary = |l: &String| l.contains("log lines dropped");
    let count = |l: &String| -> u64 {
        l.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {l:?}"))
    };
    let [.., before, last] = &lines[..] else {
        panic!("{lines:?}")
    };
    assert!(is_summary(before) && !is_summary(last), "{lines:?}");
    assert!(
        lines
            .windows(2)
            .all(|w| !(is_summary(&w[0]) && is_summary(&w[1]))),
        "one count per run of dropped lines: {lines:?}"
    );
    let total = engine.stats().guest_log_dropped.get();
    let counted: u64 = lines.iter().filter(|l| is_summary(l)).map(count).sum();
    assert_eq!(counted, total, "{lines:?}");
}

/// A guest that allocates one-byte blocks until the arena refuses: each
/// costs the host a table entry, which must count against the limit.
const ALLOCATOR: &str = r#"(module
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "free" (func $free (param i64)))
    (import "extism:host/env" "store_u64" (func $store64 (param i64 i64)))
    (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
    (func (export "exhaust") (result i32)
        (local $n i64) (local $out i64)
        (local.set $out (call $alloc (i64.const 8)))
        (block $full (loop $next
            (br_if $full (i64.eqz (call $alloc (i64.const 1))))
            (local.set $n (i64.add (local.get $n) (i64.const 1)))
            (br $next)))
        (call $store64 (local.get $out) (local.get $n))
        (call $output_set (local.get $out) (i64.const 8))
        (i32.const 0))
    ;; 20 000 small blocks freed, then 20 000 larger ones, none of which
    ;; fits a freed block.
    (func (export "churn") (result i32)
        (local $i i32)
        (block $done (loop $next
            (br_if $done (i32.ge_u (local.get $i) (i32.const 160000)))
            (i64.store (local.get $i) (call $alloc (i64.const 8)))
            (local.set $i (i32.add (local.get $i) (i32.const 8)))
            (br $next)))
        (local.set $i (i32.const 0))
        (block $done (loop $next
            (br_if $done (i32.ge_u (local.get $i) (i32.const 160000)))
            (call $free (i64.load (local.get $i)))
            (local.set $i (i32.add (local.get $i) (i32.const 8)))
            (br $next)))
        (local.set $i (i32.const 0))
        (block $done (loop $next
            (br_if $done (i32.ge_u (local.get $i) (i32.const 160000)))
            (if (i64.eqz (call $alloc (i64.const 16))) (then unreachable))
            (local.set $i (i32.add (local.get $i) (i32.const 8)))
            (br $next)))
        (i32.const 0))
    (memory (export "memory") 3))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_bookkeeping_of_blocks_counts_against_the_memory_limit() {
    let limit = 1 << 20;
    let module = support::engine()
        .load(
            ALLOCATOR.as_bytes(),
            GuestOptions::new("exhaust").memory_limit(limit),
        )
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let out = instance.call("exhaust", Vec::new()).await.expect("exhaust");
    let blocks = u64::from_le_bytes(out.output[..].try_into().expect("8 bytes"));
    // Without the charge the arena holds a block per byte of its limit, and
    // the host tens of bytes of bookkeeping for each.
    assert!(blocks > 1000, "{blocks} blocks");
    assert!(
        blocks as usize <= limit / (1 + BLOCK_COST) && blocks as usize <= limit / 33,
        "{blocks} one-byte blocks in a {limit}-byte limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_free_blocks_do_not_make_allocation_slow() {
    // Looking through every free block on each allocation made this call
    // 400 million steps; it must finish well within its deadline.
    let module = support::engine()
        .load(
            ALLOCATOR.as_bytes(),
            GuestOptions::new("churn")
                .memory_limit(32 << 20)
                .timeout(Duration::from_secs(3)),
        )
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    instance.call("churn", Vec::new()).await.expect("churn");
}

/// An app, through the real server: reads its input eight bytes at a time
/// past the end (as some Extism guests do) and logs 5 000 lines per request.
const FLOOD_APP: &str = r#"(module
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "store_u8" (func $store8 (param i64 i32)))
    (import "extism:host/env" "input_length" (func $input_len (result i64)))
    (import "extism:host/env" "input_load_u64" (func $in64 (param i64) (result i64)))
    (import "extism:host/env" "load_u64" (func $load64 (param i64) (result i64)))
    (import "extism:host/env" "log_info" (func $log_info (param i64)))
    (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
    (memory (export "memory") 1)
    (data (i32.const 0) "{\"status\":200,\"body\":\"zero\"}")
    (data (i32.const 64) "{\"status\":200,\"body\":\"nonzero\"}")
    (func $block (param $at i32) (param $len i32) (result i64)
        (local $h i64) (local $i i32)
        (local.set $h (call $alloc (i64.extend_i32_u (local.get $len))))
        (block $done (loop $copy
            (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
            (call $store8 (i64.add (local.get $h) (i64.extend_i32_u (local.get $i)))
                (i32.load8_u (i32.add (local.get $at) (local.get $i))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $copy)))
        (local.get $h))
    (func (export "handle") (result i32)
        (local $i i32) (local $h i64) (local $w i64)
        ;; The last word straddles the input's end; far out is outside the arena.
        (local.set $w (i64.or
            (call $in64 (i64.sub (call $input_len) (i64.const 3)))
            (call $load64 (i64.const 0x10000000000))))
        (block $done (loop $next
            (br_if $done (i32.ge_u (local.get $i) (i32.const 5000)))
            (local.set $h (call $alloc (i64.const 1)))
            (call $store8 (local.get $h) (i32.const 120))
            (call $log_info (local.get $h))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (if (i64.eqz (local.get $w))
            (then (call $output_set (call $block (i32.const 0) (i32.const 28)) (i64.const 28)))
            (else (call $output_set (call $block (i32.const 64) (i32.const 31)) (i64.const 31))))
        (i32.const 0)))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_over_reading_its_input_and_flooding_the_log_is_served_and_held_to_its_rate() {
    use crate::server::{TestServer, get};
    let counter = log_counter();
    let server = TestServer::start(|root| {
        let dir = root.join("kernel-flood").join("1.0.0");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("app.wasm"), FLOOD_APP).expect("write app");
    })
    .await;
    let started = std::time::Instant::now();
    for _ in 0..2 {
        let res = get(&server.url("/kernel-flood/")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.expect("body"), "zero");
    }
    let refilled = (100.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    let written: usize = counter
        .lines
        .lock()
        .expect("lines")
        .iter()
        .filter(|(guest, _)| guest.contains("kernel-flood"))
        .flat_map(|(_, l)| l)
        .filter(|l| !l.contains("log lines dropped"))
        .count();
    // At most two instances served the requests, each with its own bucket.
    assert!(written >= 200, "{written} lines");
    assert!(written <= 2 * (200 + refilled), "{written} of 10 000 lines");
    server.stop().await;
}

/// Logs its input as one message.
const ECHO_LOGGER: &str = r#"(module
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "store_u8" (func $store8 (param i64 i32)))
    (import "extism:host/env" "input_length" (func $input_len (result i64)))
    (import "extism:host/env" "input_load_u8" (func $in8 (param i64) (result i32)))
    (import "extism:host/env" "log_info" (func $log_info (param i64)))
    (func (export "say") (result i32)
        (local $n i64) (local $i i64) (local $h i64)
        (local.set $n (call $input_len))
        (local.set $h (call $alloc (local.get $n)))
        (block $done (loop $next
            (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
            (call $store8 (i64.add (local.get $h) (local.get $i)) (call $in8 (local.get $i)))
            (local.set $i (i64.add (local.get $i) (i64.const 1)))
            (br $next)))
        (call $log_info (local.get $h))
        (i32.const 0)))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_line_cannot_forge_log_lines_or_terminal_escapes() {
    log_counter();
    let engine = support::engine();
    let module = engine
        .load(ECHO_LOGGER.as_bytes(), GuestOptions::new("forger"))
        .expect("load");
    let mut instance = module.instantiate().await.expect("instantiate");
    let forged = "ok\n2026-01-01T00:00:00Z  INFO buntime: admin key accepted\r\n\u{1b}[2Jtab\there";
    instance
        .call("say", forged.as_bytes().to_vec())
        .await
        .expect("call");
    let lines = lines_of("forger");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        !line.contains(['\n', '\r', '\u{1b}']),
        "raw control characters reached the log: {line:?}"
    );
    assert_eq!(
        line,
        "ok\\n2026-01-01T00:00:00Z  INFO buntime: admin key accepted\\r\\n\\u{1b}[2Jtab\there"
    );
}
