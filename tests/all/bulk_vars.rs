//! `buntime:host/memory`'s `config_read`, `var_read` and `var_write`: the
//! same config and vars as the Extism functions, one call each, and every
//! bad argument a trap naming the function.

use buntime::wasm::{GuestInstance, GuestModule, GuestOptions};

use crate::support;

/// Keys at fixed addresses: `greeting` at 0, `served` at 16, an invalid
/// UTF-8 byte at 24; the value `42` at 32. Each export writes what it read
/// at 64 and outputs it; `*_len` exports output the returned length as
/// eight little-endian bytes.
const WAT: &str = r#"(module
    (import "extism:host/env" "output_set" (func $out (param i64 i64)))
    (import "extism:host/env" "var_get" (func $var_get (param i64) (result i64)))
    (import "extism:host/env" "length" (func $length (param i64) (result i64)))
    (import "buntime:host/memory" "block_write" (func $write (param i64 i64) (result i64)))
    (import "buntime:host/memory" "config_read" (func $config_read (param i64 i64 i64 i64) (result i64)))
    (import "buntime:host/memory" "var_read" (func $var_read (param i64 i64 i64 i64) (result i64)))
    (import "buntime:host/memory" "var_write" (func $var_write (param i64 i64 i64 i64)))
    (memory (export "memory") 1)
    (data (i32.const 0) "greeting")
    (data (i32.const 16) "served")
    (data (i32.const 24) "\ff")
    (data (i32.const 32) "42")
    ;; Outputs `len` bytes at 64, or nothing when `len` is -1.
    (func $emit (param $len i64)
        (if (i64.ge_s (local.get $len) (i64.const 0))
            (then (call $out (call $write (i64.const 64) (local.get $len)) (local.get $len)))))
    (func $emit_len (param $len i64)
        (i64.store (i32.const 200) (local.get $len))
        (call $out (call $write (i64.const 200) (i64.const 8)) (i64.const 8)))
    (func (export "config") (result i32)
        (call $emit (call $config_read (i64.const 0) (i64.const 8) (i64.const 64) (i64.const 64)))
        (i32.const 0))
    (func (export "config_too_small_len") (result i32)
        (call $emit_len (call $config_read (i64.const 0) (i64.const 8) (i64.const 64) (i64.const 4)))
        (i32.const 0))
    (func (export "config_missing_len") (result i32)
        ;; `served` is a var, not a config key.
        (call $emit_len (call $config_read (i64.const 16) (i64.const 6) (i64.const 64) (i64.const 64)))
        (i32.const 0))
    (func (export "var_set_then_read") (result i32)
        (call $var_write (i64.const 16) (i64.const 6) (i64.const 32) (i64.const 2))
        (call $emit (call $var_read (i64.const 16) (i64.const 6) (i64.const 64) (i64.const 64)))
        (i32.const 0))
    (func (export "var_read_len") (result i32)
        (call $emit_len (call $var_read (i64.const 16) (i64.const 6) (i64.const 64) (i64.const 64)))
        (i32.const 0))
    (func (export "var_delete") (result i32)
        (call $var_write (i64.const 16) (i64.const 6) (i64.const 0) (i64.const 0))
        (i32.const 0))
    ;; The Extism function sees what `var_write` stored.
    (func (export "var_get_extism") (result i32)
        (local $h i64)
        (local.set $h (call $var_get (call $write (i64.const 16) (i64.const 6))))
        (call $out (local.get $h) (call $length (local.get $h)))
        (i32.const 0))
    (func (export "key_outside_memory") (result i32)
        (drop (call $config_read (i64.const 65530) (i64.const 8) (i64.const 64) (i64.const 64)))
        (i32.const 0))
    (func (export "empty_key") (result i32)
        (drop (call $var_read (i64.const 0) (i64.const 0) (i64.const 64) (i64.const 64)))
        (i32.const 0))
    (func (export "key_not_utf8") (result i32)
        (call $var_write (i64.const 24) (i64.const 1) (i64.const 32) (i64.const 2))
        (i32.const 0))
    (func (export "value_outside_memory") (result i32)
        (call $var_write (i64.const 16) (i64.const 6) (i64.const 65000) (i64.const 4096))
        (i32.const 0))
    (func (export "dest_outside_memory") (result i32)
        (drop (call $config_read (i64.const 0) (i64.const 8) (i64.const 65530) (i64.const 64)))
        (i32.const 0))
    (func (export "negative_capacity") (result i32)
        (drop (call $config_read (i64.const 0) (i64.const 8) (i64.const 64) (i64.const -1)))
        (i32.const 0))
    (func (export "big_var") (result i32)
        ;; 4 KiB from address 0 as the value of `served`.
        (call $var_write (i64.const 16) (i64.const 6) (i64.const 0) (i64.const 4096))
        (i32.const 0)))"#;

fn module(options: GuestOptions) -> GuestModule {
    support::engine()
        .load(WAT.as_bytes(), options.config("greeting", "hello world"))
        .expect("load")
}

async fn output(instance: &mut GuestInstance, export: &str) -> Vec<u8> {
    let out = instance.call(export, Vec::new()).await;
    out.unwrap_or_else(|e| panic!("{export}: {e}"))
        .output
        .to_vec()
}

fn len(bytes: &[u8]) -> i64 {
    i64::from_le_bytes(bytes.try_into().expect("eight bytes"))
}

async fn trap(module: &GuestModule, export: &str) -> String {
    let mut instance = module.instantiate().await.expect("instantiate");
    let err = instance
        .call(export, Vec::new())
        .await
        .expect_err(export)
        .to_string();
    assert!(err.contains("buntime:host/memory::"), "{export}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_vars_are_read_and_written_in_one_call() {
    let module = module(GuestOptions::new("bulk-vars"));
    let mut instance = module.instantiate().await.expect("instantiate");
    assert_eq!(output(&mut instance, "config").await, b"hello world");
    // Too small a buffer: nothing copied, the length says how much to ask for.
    assert_eq!(
        len(&output(&mut instance, "config_too_small_len").await),
        11
    );
    assert_eq!(len(&output(&mut instance, "config_missing_len").await), -1);
    assert_eq!(len(&output(&mut instance, "var_read_len").await), -1);
    assert_eq!(output(&mut instance, "var_set_then_read").await, b"42");
    // The var lives on in the instance, and the Extism functions see it.
    assert_eq!(len(&output(&mut instance, "var_read_len").await), 2);
    assert_eq!(output(&mut instance, "var_get_extism").await, b"42");
    // Writing an empty value deletes it.
    output(&mut instance, "var_delete").await;
    assert_eq!(len(&output(&mut instance, "var_read_len").await), -1);
    // Another instance has its own vars.
    let mut other = module.instantiate().await.expect("instantiate");
    assert_eq!(len(&output(&mut other, "var_read_len").await), -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_traps_that_say_what_is_wrong() {
    let module = module(GuestOptions::new("bulk-vars"));
    for (export, want) in [
        (
            "key_outside_memory",
            "8 bytes at 65530 are outside the guest's",
        ),
        ("empty_key", "var_read: the key is empty"),
        ("key_not_utf8", "var_write: the key is not valid UTF-8"),
        ("value_outside_memory", "4096 bytes at 65000 are outside"),
        ("dest_outside_memory", "11 bytes at 65530 are outside"),
        ("negative_capacity", "config_read: a negative length (-1)"),
    ] {
        let err = trap(&module, export).await;
        assert!(err.contains(want), "{export}: {err} should contain {want}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn var_write_keeps_the_limits_of_var_set() {
    let disabled = module(GuestOptions::new("no-vars").max_var_bytes(0));
    let err = trap(&disabled, "var_set_then_read").await;
    assert!(
        err.contains("var_write: vars are disabled for this guest"),
        "{err}"
    );

    let small = module(GuestOptions::new("small-vars").max_var_bytes(1024));
    let err = trap(&small, "big_var").await;
    assert!(
        err.contains("var_write: the variable store is full (1024 bytes at most)"),
        "{err}"
    );
    // A write that fits still works.
    let mut instance = small.instantiate().await.expect("instantiate");
    assert_eq!(output(&mut instance, "var_set_then_read").await, b"42");
}
