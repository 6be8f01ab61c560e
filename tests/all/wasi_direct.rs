//! WASI guests and the fiber: a guest whose WASI imports are all plain
//! functions (clocks, randomness, environment, exit, `fd_write` to the
//! discarding standard streams) is called without a fiber and gets WASI's
//! answers; one that imports a WASI function that may wait runs on a fiber.
//! The `sql` capability's functions never wait (a statement runs on the
//! calling thread), so their guests run without a fiber too.

use std::time::Duration;

use buntime::wasm::{GuestModule, GuestOptions};

use crate::support;

const TIMEOUT: Duration = Duration::from_millis(500);

/// Imports every WASI function Buntime links as a plain function; `run`
/// calls each and returns 0 if every answer is WASI's, else the number of
/// the first wrong one. Memory: an iovec at 0 (5 bytes at 64), `nwritten`
/// at 16, sizes at 24 and 28, a timestamp at 128, random bytes at 200.
const SYNC_WASI: &str = r#"
(module
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "proc_raise" (func $proc_raise (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $sched_yield (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\40\00\00\00\05\00\00\00")
  (data (i32.const 64) "hello")
  (func $expect (param $got i32) (param $want i32) (param $n i32)
    (if (i32.ne (local.get $got) (local.get $want)) (then (unreachable))))
  (func (export "run") (result i32)
    ;; stdout and stderr take the whole buffer.
    (call $expect (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)) (i32.const 0) (i32.const 1))
    (call $expect (i32.load (i32.const 16)) (i32.const 5) (i32.const 2))
    (i32.store (i32.const 16) (i32.const 0))
    (call $expect (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 16)) (i32.const 0) (i32.const 3))
    (call $expect (i32.load (i32.const 16)) (i32.const 5) (i32.const 4))
    ;; stdin and unknown descriptors are EBADF; an iovec or nwritten
    ;; outside memory is EFAULT.
    (call $expect (call $fd_write (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)) (i32.const 8) (i32.const 5))
    (call $expect (call $fd_write (i32.const 9) (i32.const 0) (i32.const 1) (i32.const 16)) (i32.const 8) (i32.const 6))
    (call $expect (call $fd_write (i32.const 1) (i32.const 65532) (i32.const 1) (i32.const 16)) (i32.const 21) (i32.const 7))
    (call $expect (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 65534)) (i32.const 21) (i32.const 8))
    ;; No arguments, no environment.
    (call $expect (call $args_sizes_get (i32.const 24) (i32.const 28)) (i32.const 0) (i32.const 9))
    (call $expect (i32.load (i32.const 24)) (i32.const 0) (i32.const 10))
    (call $expect (call $args_get (i32.const 32) (i32.const 48)) (i32.const 0) (i32.const 11))
    (call $expect (call $environ_sizes_get (i32.const 24) (i32.const 28)) (i32.const 0) (i32.const 12))
    (call $expect (i32.load (i32.const 24)) (i32.const 0) (i32.const 13))
    (call $expect (call $environ_get (i32.const 32) (i32.const 48)) (i32.const 0) (i32.const 14))
    ;; Clocks and randomness work.
    (call $expect (call $clock_res_get (i32.const 1) (i32.const 128)) (i32.const 0) (i32.const 15))
    (call $expect (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 128)) (i32.const 0) (i32.const 16))
    (call $expect (i64.gt_u (i64.load (i32.const 128)) (i64.const 0)) (i32.const 1) (i32.const 17))
    (call $expect (call $random_get (i32.const 200) (i32.const 16)) (i32.const 0) (i32.const 18))
    (call $expect (call $sched_yield) (i32.const 0) (i32.const 19))
    (call $expect (i32.eqz (call $proc_raise (i32.const 1))) (i32.const 0) (i32.const 20))
    (i32.const 0))
  (func (export "exit") (result i32)
    (call $proc_exit (i32.const 3))
    (i32.const 0)))
"#;

/// The same kind of guest importing `fd_read`, which wasmtime links as an
/// async function: `run` reads stdin (empty) and returns.
const WAITING_WASI: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\40\00\00\00\05\00\00\00")
  (func (export "run") (result i32)
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
    (if (i32.ne (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)) (i32.const 0))
      (then (unreachable)))
    (i32.const 0)))
"#;

fn load(engine: &buntime::wasm::Engine, wat: &str, name: &str) -> GuestModule {
    engine
        .load(wat.as_bytes(), GuestOptions::new(name).timeout(TIMEOUT))
        .expect("load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_importing_only_plain_wasi_functions_runs_without_a_fiber() {
    let engine = support::engine();
    let module = load(&engine, SYNC_WASI, "sync-wasi");
    let stats = engine.stats();
    let counts = || (stats.direct_calls.get(), stats.fiber_calls.get());
    let mut instance = module.instantiate().await.expect("instantiate");
    for _ in 0..2 {
        instance.call("run", Vec::new()).await.expect("run");
    }
    assert_eq!(counts(), (2, 0));
    // `proc_exit` ends the call, also without a fiber.
    let mut exiting = module.instantiate().await.expect("instantiate");
    exiting.call("exit", Vec::new()).await.expect_err("exits");
    assert_eq!(counts(), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_importing_a_waiting_wasi_function_runs_on_a_fiber() {
    let engine = support::engine();
    let module = load(&engine, WAITING_WASI, "waiting-wasi");
    let stats = engine.stats();
    let counts = || (stats.direct_calls.get(), stats.fiber_calls.get());
    let mut instance = module.instantiate().await.expect("instantiate");
    instance.call("run", Vec::new()).await.expect("run");
    assert_eq!(counts(), (0, 1));
}

/// Imports the `sql` capability's functions (as the keyval, database and
/// proxy plugins do); `run` calls none of them.
const SQL_IMPORTS: &str = r#"
(module
  (import "extism:host/user" "sql_query" (func (param i64) (result i64)))
  (import "extism:host/user" "sql_execute" (func (param i64) (result i64)))
  (import "extism:host/user" "sql_batch" (func (param i64) (result i64)))
  (import "extism:host/user" "sql_databases" (func (result i64)))
  (memory (export "memory") 1)
  (func (export "run") (result i32) (i32.const 0)))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_importing_the_sql_functions_runs_without_a_fiber() {
    let mut config = buntime::wasm::EngineConfig::default();
    config
        .host_functions
        .extend(buntime::capabilities::host_functions());
    let engine = support::engine_with(config);
    let module = load(&engine, SQL_IMPORTS, "sql-imports");
    let stats = engine.stats();
    let mut instance = module.instantiate().await.expect("instantiate");
    instance.call("run", Vec::new()).await.expect("run");
    assert_eq!((stats.direct_calls.get(), stats.fiber_calls.get()), (1, 0));
}
