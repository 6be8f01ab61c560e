//! Hostile guests as WAT text (the engine compiles WAT like a binary).

/// An app whose `handle` answers `{"status":200,"body":"ok"}` — unless its
/// input (the request head) is longer than `spin_over` bytes, then it spins
/// until stopped. With `start_spins`, its start function never returns.
/// With `awaits`, it imports `http_request` (never called), which puts its
/// calls on a fiber from the first one.
pub(crate) fn app(spin_over: u64, start_spins: bool, awaits: bool) -> String {
    let answer = r#"{\"status\":200,\"body\":\"ok\"}"#;
    let len = answer.len() - answer.matches('\\').count();
    let start = if start_spins {
        "(func $forever (loop $l (br $l))) (start $forever)"
    } else {
        ""
    };
    let http = if awaits {
        r#"(import "extism:host/env" "http_request" (func $http (param i64 i64) (result i64)))"#
    } else {
        ""
    };
    format!(
        r#"(module
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  {http}
  (memory (export "memory") 1)
  (data (i32.const 0) "{answer}")
  {start}
  (func $answer (local $h i64) (local $i i32)
    (local.set $h (call $alloc (i64.const {len})))
    (loop $copy
      (call $store_u8 (i64.add (local.get $h) (i64.extend_i32_u (local.get $i)))
                      (i32.load8_u (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $copy (i32.lt_u (local.get $i) (i32.const {len}))))
    (call $output_set (local.get $h) (i64.const {len})))
  (func (export "handle") (result i32)
    (if (i64.gt_u (call $input_length) (i64.const {spin_over}))
      (then (loop $spin (br $spin))))
    (call $answer)
    (i32.const 0)))"#
    )
}

/// A plugin whose `on_request` passes every request on — unless its input
/// (the request head) is longer than `spin_over` bytes, then it spins until
/// stopped. It imports `http_request` (never called), so its calls run on
/// a fiber and can be cancelled.
pub(crate) fn plugin(spin_over: u64) -> String {
    format!(
        r#"(module
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "http_request" (func $http (param i64 i64) (result i64)))
  (memory (export "memory") 1)
  (func (export "on_request") (result i32)
    (if (i64.gt_u (call $input_length) (i64.const {spin_over}))
      (then (loop $spin (br $spin))))
    (i32.const 0)))"#
    )
}

/// A path that makes a request head longer than `n` bytes.
pub(crate) fn long_path(prefix: &str, n: usize) -> String {
    format!("{prefix}{}", "x".repeat(n))
}
