//! The Extism ABI's eight-byte accessors, which the load-time rewrite
//! compiles into the guest (`runtime/src/wasm/rewrite.rs`): same results as
//! the host's, the host's (the kernel's) answer for what they do not take,
//! and the arena memory growing when blocks need it. The parity tests run the real PDKs' guests
//! through the same paths.

use buntime::wasm::{ARENA_EXPORT, GuestModule, GuestOptions};

use crate::support;

/// A guest that uses every inlined accessor the way the PDKs do.
const GUEST: &str = r#"(module
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "free" (func $free (param i64)))
    (import "extism:host/env" "load_u8" (func $load8 (param i64) (result i32)))
    (import "extism:host/env" "load_u64" (func $load64 (param i64) (result i64)))
    (import "extism:host/env" "store_u8" (func $store8 (param i64 i32)))
    (import "extism:host/env" "store_u64" (func $store64 (param i64 i64)))
    (import "extism:host/env" "input_length" (func $input_len (result i64)))
    (import "extism:host/env" "input_load_u8" (func $in8 (param i64) (result i32)))
    (import "extism:host/env" "input_load_u64" (func $in64 (param i64) (result i64)))
    (import "extism:host/env" "input_offset" (func $input_offset (result i64)))
    (import "extism:host/env" "output_set" (func $out (param i64 i64)))
    (memory (export "memory") 1)

    ;; Copies the input into a new block eight bytes at a time, the tail byte
    ;; by byte, then reads the block back the same way into a second one.
    (func (export "echo") (result i32)
        (local $len i64) (local $a i64) (local $b i64) (local $i i64)
        (local.set $len (call $input_len))
        (local.set $a (call $alloc (local.get $len)))
        (local.set $b (call $alloc (local.get $len)))
        (block $done (loop $words
            (br_if $done (i64.gt_u (i64.add (local.get $i) (i64.const 8)) (local.get $len)))
            (call $store64 (i64.add (local.get $a) (local.get $i)) (call $in64 (local.get $i)))
            (local.set $i (i64.add (local.get $i) (i64.const 8)))
            (br $words)))
        (block $done (loop $bytes
            (br_if $done (i64.ge_u (local.get $i) (local.get $len)))
            (call $store8 (i64.add (local.get $a) (local.get $i)) (call $in8 (local.get $i)))
            (local.set $i (i64.add (local.get $i) (i64.const 1)))
            (br $bytes)))
        (local.set $i (i64.const 0))
        (block $done (loop $words
            (br_if $done (i64.gt_u (i64.add (local.get $i) (i64.const 8)) (local.get $len)))
            (call $store64 (i64.add (local.get $b) (local.get $i))
                (call $load64 (i64.add (local.get $a) (local.get $i))))
            (local.set $i (i64.add (local.get $i) (i64.const 8)))
            (br $words)))
        (block $done (loop $bytes
            (br_if $done (i64.ge_u (local.get $i) (local.get $len)))
            (call $store8 (i64.add (local.get $b) (local.get $i))
                (call $load8 (i64.add (local.get $a) (local.get $i))))
            (local.set $i (i64.add (local.get $i) (i64.const 1)))
            (br $bytes)))
        (call $out (local.get $b) (local.get $len))
        (i32.const 0))

    ;; Frees the input's copy, lets a new block take its place and overwrites
    ;; it: input reads must not see that block (as in the kernel, a freed
    ;; input is empty and reads answer 0).
    (func (export "input_after_free") (result i32)
        (local $h i64)
        (call $free (call $input_offset))
        (local.set $h (call $alloc (i64.const 10)))
        (call $store64 (local.get $h) (i64.const -1))
        (call $store64 (local.get $h) (call $in64 (i64.const 0)))
        (call $out (local.get $h) (i64.const 8))
        (i32.const 0))

    (func (export "write_header") (result i32)
        (drop (call $alloc (i64.const 64)))
        (call $store64 (i64.const 8) (i64.const 0)) (i32.const 0))
    (func (export "read_header") (result i32)
        (drop (call $alloc (i64.const 64)))
        (drop (call $load8 (i64.const 0))) (i32.const 0))
    (func (export "read_past_the_blocks") (result i32)
        (drop (call $load64 (i64.add (call $alloc (i64.const 8)) (i64.const 1)))) (i32.const 0))
    (func (export "store_at_the_top") (result i32)
        (call $store64 (i64.const -8) (i64.const 0)) (i32.const 0))
    (func (export "read_past_the_input") (result i32)
        (drop (call $in64 (i64.sub (call $input_len) (i64.const 7)))) (i32.const 0)))"#;

fn guest() -> GuestModule {
    support::engine()
        .load(GUEST.as_bytes(), GuestOptions::new("inline"))
        .expect("load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_through_the_inline_accessors_are_exact_and_grow_the_arena() {
    let module = guest();
    assert!(
        module
            .wasmtime_module()
            .exports()
            .any(|e| e.name() == ARENA_EXPORT),
        "the module has its arena memory"
    );
    let mut instance = module.instantiate().await.expect("instantiate");
    // Lengths around the word size, and past one 64 KiB page: the input's
    // copy and two blocks of 100 000 bytes make the arena memory grow.
    for len in [0usize, 1, 7, 8, 9, 1000, 100_000, 13] {
        let input: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let out = instance.call("echo", input.clone()).await.expect("echo");
        assert_eq!(out.output.len(), len, "length for {len}");
        assert!(out.output[..] == input[..], "bytes for an input of {len}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeing_the_input_copy_empties_the_input_and_its_reads() {
    let mut instance = guest().instantiate().await.expect("instantiate");
    let out = instance
        .call("input_after_free", b"ABCDEFGHIJ".to_vec())
        .await
        .expect("call");
    assert_eq!(&out.output[..], [0; 8]);
}

/// What the inline accessors do not take, the host answers as the Extism
/// kernel does: a load outside the arena is 0, a store there is ignored, an
/// input read past the end is 0 — never a trap (this used to stop the guest;
/// guests written against Extism rely on the kernel's answers, see
/// `attacks/kernel.rs` for the parity tests). The header stays the host's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_inline_accessors_do_not_take_the_host_answers_as_the_kernel() {
    let module = guest();
    let mut instance = module.instantiate().await.expect("instantiate");
    for export in [
        "write_header",
        "read_header",
        "read_past_the_blocks",
        "store_at_the_top",
        "read_past_the_input",
    ] {
        instance
            .call(export, b"0123456789".to_vec())
            .await
            .unwrap_or_else(|e| panic!("`{export}` answers like the kernel: {e}"));
        assert!(!instance.is_poisoned());
        // The header was not written: copies through the arena still work.
        let out = instance
            .call("echo", b"intact".to_vec())
            .await
            .expect("echo");
        assert_eq!(&out.output[..], b"intact", "after `{export}`");
    }
}

/// The arena memory has a copy-on-write image like the guest's own: with fuel
/// on, a module's data would otherwise be copied by generated code at
/// instantiation, which runs out of fuel before the guest is even called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arena_memory_keeps_instantiation_free_of_guest_code() {
    let engine = support::engine_with(buntime::wasm::EngineConfig::default().fuel(true));
    let with_data = r#"(module (memory 17) (data (i32.const 1048576) "abc"))"#;
    for (name, wasm) in [
        ("fixture", buntime_fixtures::bytes(buntime_fixtures::BASICS)),
        ("wat", with_data.as_bytes().to_vec()),
    ] {
        let module = engine
            .load(&wasm, GuestOptions::new(name).fuel(1000))
            .expect("load");
        module
            .instantiate()
            .await
            .unwrap_or_else(|e| panic!("`{name}` instantiates with little fuel: {e}"));
    }
}

/// A module that names a memory it does not define is refused at load with
/// the compiler's message; it is never rewritten (the arena memory would
/// otherwise take that index and the guest could reach it).
#[test]
fn a_module_naming_a_memory_it_lacks_does_not_load() {
    let wat = r#"(module (memory 1)
        (func (export "peek") (result i64) (i64.load 1 (i32.const 0))))"#;
    let err = support::engine()
        .load(wat.as_bytes(), GuestOptions::new("peek"))
        .expect_err("an invalid module must not load");
    let text = format!("{err:#}");
    assert!(text.contains("`peek`"), "names the guest: {text}");
    assert!(text.contains("memory"), "says what is wrong: {text}");
}
