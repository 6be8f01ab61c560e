//! `state_incr_into` and `state_take_into`, the state functions that read
//! their key from and write their answer to the guest's memory, called by
//! hand-written guests: the answers land where asked, and an address outside
//! the memory, a key that is not UTF-8 or a missing grant is an error the
//! guest reads (nothing traps in the host, nothing changes).

use super::{config, echo, install_plugin};
use crate::server::{TestServer, get};

/// The prefix of an `invalid_argument` error envelope (35 bytes).
const INVALID: &str = r#"{\"error\":{\"code\":\"invalid_argument\""#;
/// The prefix of a denial (36 bytes).
const DENIED: &str = r#"{\"error\":{\"code\":\"capability_denied\""#;

/// The imports and the check both guests use: `$expect_error` traps unless
/// `h` is an error block starting with the `len` bytes at `prefix`.
fn module(body: &str) -> String {
    format!(
        r#"(module
  (import "extism:host/user" "state_incr_into" (func $incr (param i64 i64 i64 i64 i64) (result i64)))
  (import "extism:host/user" "state_take_into" (func $take (param i64 i64 i64 i64 i64 i64) (result i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "buntime:host/memory" "block_read" (func $block_read (param i64 i64)))
  (import "buntime:host/memory" "block_write" (func $block_write (param i64 i64) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "hits")
  (data (i32.const 16) "\ff\fe")
  (data (i32.const 32) "bucket")
  (data (i32.const 1024) "{INVALID}")
  (data (i32.const 1280) "{DENIED}")
  (data (i32.const 1536) "{{\"action\":\"respond\",\"response\":{{\"status\":429}}}}")
  (func $expect_error (param $h i64) (param $prefix i32) (param $len i32)
    (local $i i32)
    (if (i64.eqz (local.get $h)) (then unreachable))
    (if (i64.lt_u (call $length (local.get $h)) (i64.extend_i32_u (local.get $len)))
      (then unreachable))
    (call $block_read (local.get $h) (i64.const 4096))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (if (i32.ne (i32.load8_u (i32.add (i32.const 4096) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $prefix) (local.get $i))))
          (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))
  (func (export "on_request") (result i32)
    (local $v i64)
{body}
    (i32.const 0)))"#
    )
}

/// Granted `state`: counts by 7 (the value must stay a multiple of 7, so
/// a refused call that still counted shows), tries three bad calls, then
/// takes a token from a bucket of 3 and answers 429 when there is none.
fn granted() -> String {
    module(
        r#"
    (if (i64.ne (call $incr (i64.const 0) (i64.const 4) (i64.const 7) (i64.const 0) (i64.const 256))
                (i64.const 0))
      (then unreachable))
    (local.set $v (i64.load (i32.const 256)))
    (if (i64.le_s (local.get $v) (i64.const 0)) (then unreachable))
    (if (i64.ne (i64.rem_u (local.get $v) (i64.const 7)) (i64.const 0)) (then unreachable))
    ;; a key outside the memory, or at a negative address
    (call $expect_error
      (call $incr (i64.const 70000) (i64.const 4) (i64.const 1) (i64.const 0) (i64.const 256))
      (i32.const 1024) (i32.const 35))
    (call $expect_error
      (call $incr (i64.const -1) (i64.const 4) (i64.const 1) (i64.const 0) (i64.const 256))
      (i32.const 1024) (i32.const 35))
    ;; a key that is not UTF-8
    (call $expect_error
      (call $incr (i64.const 16) (i64.const 2) (i64.const 1) (i64.const 0) (i64.const 256))
      (i32.const 1024) (i32.const 35))
    ;; an answer that would end past the memory (checked before counting)
    (call $expect_error
      (call $incr (i64.const 0) (i64.const 4) (i64.const 1) (i64.const 0) (i64.const 65530))
      (i32.const 1024) (i32.const 35))
    (call $expect_error
      (call $take (i64.const 32) (i64.const 6) (i64.const 3) (i64.const 3600000) (i64.const 1) (i64.const 65520))
      (i32.const 1024) (i32.const 35))
    (if (i64.ne (call $take (i64.const 32) (i64.const 6) (i64.const 3) (i64.const 3600000) (i64.const 1) (i64.const 256))
                (i64.const 0))
      (then unreachable))
    ;; remaining: 2, 1, 0 for the allowed takes
    (if (i64.gt_u (i64.load (i32.const 264)) (i64.const 2)) (then unreachable))
    (if (i64.eqz (i64.load (i32.const 256)))
      (then
        ;; refused: no tokens left, and a retry time
        (if (i64.eqz (i64.load (i32.const 280))) (then unreachable))
        (call $output_set (call $block_write (i64.const 1536) (i64.const 46)) (i64.const 46))))"#,
    )
}

/// Not granted `state`: both functions answer a denial.
fn refused() -> String {
    module(
        r#"
    (call $expect_error
      (call $incr (i64.const 0) (i64.const 4) (i64.const 1) (i64.const 0) (i64.const 256))
      (i32.const 1280) (i32.const 36))
    (call $expect_error
      (call $take (i64.const 32) (i64.const 6) (i64.const 3) (i64.const 1000) (i64.const 1) (i64.const 256))
      (i32.const 1280) (i32.const 36))"#,
    )
}

#[tokio::test]
async fn counters_and_buckets_answer_in_memory_and_refuse_bad_addresses() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        for (name, wat, extra) in [
            (
                "granted",
                granted(),
                r#", "capabilities": { "state": true }"#,
            ),
            ("refused", refused(), ""),
        ] {
            let wasm = root.join(format!("{name}.wat"));
            std::fs::write(&wasm, wat).expect("wat");
            install_plugin(
                root,
                name,
                &format!(r#"{{ "name": "{name}", "version": "1.0.0"{extra} }}"#),
                wasm.to_str().expect("utf-8 path"),
            );
        }
        config(root, r#"{ plugins: ["refused", "granted"] }"#);
    })
    .await;
    // Any check failing in a guest traps it: a 5xx, not these.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&server.url("/echo/x")).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    server.stop().await;
}
