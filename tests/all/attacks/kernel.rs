//! The Extism kernel's semantics (and, in `limits`, what a guest can make the
//! host keep).
//!
//! Third-party modules are written against Extism, whose kernel (its default,
//! bounds-checking build) answers a load outside its memory with 0 and
//! ignores a store there; guests rely on it (reading their input eight bytes
//! at a time past its end, for one). The same WAT module runs under the
//! `extism` crate and under Buntime, through the inline accessors and the host
//! functions alike, and must produce the same output.

pub(crate) mod limits;

use buntime::wasm::{ARENA_EXPORT, CallError, GuestInstance, GuestModule, GuestOptions};

use crate::support;

/// Imports, a results buffer in the guest's own memory (so that no block is
/// allocated while the probes run) and `$finish`, which copies the results
/// into a block and makes it the output.
const PRELUDE: &str = r#"
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "free" (func $free (param i64)))
    (import "extism:host/env" "length" (func $length (param i64) (result i64)))
    (import "extism:host/env" "load_u8" (func $load8 (param i64) (result i32)))
    (import "extism:host/env" "load_u64" (func $load64 (param i64) (result i64)))
    (import "extism:host/env" "store_u8" (func $store8 (param i64 i32)))
    (import "extism:host/env" "store_u64" (func $store64 (param i64 i64)))
    (import "extism:host/env" "input_length" (func $input_len (result i64)))
    (import "extism:host/env" "input_offset" (func $input_offset (result i64)))
    (import "extism:host/env" "input_load_u8" (func $in8 (param i64) (result i32)))
    (import "extism:host/env" "input_load_u64" (func $in64 (param i64) (result i64)))
    (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
    (import "extism:host/env" "error_set" (func $error_set (param i64)))
    (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
    (import "extism:host/env" "var_get" (func $var_get (param i64) (result i64)))
    (import "extism:host/env" "var_set" (func $var_set (param i64 i64)))
    (import "extism:host/env" "log_info" (func $log_info (param i64)))
    (import "extism:host/env" "reset" (func $reset))
    (memory (export "memory") 1)
    (global $n (mut i32) (i32.const 0))
    (func $rec (param $v i64)
        (i64.store (global.get $n) (local.get $v))
        (global.set $n (i32.add (global.get $n) (i32.const 8))))
    (func $finish (result i32)
        (local $out i64) (local $i i32)
        (local.set $out (call $alloc (i64.extend_i32_u (global.get $n))))
        (block $done (loop $copy
            (br_if $done (i32.ge_u (local.get $i) (global.get $n)))
            (call $store64 (i64.add (local.get $out) (i64.extend_i32_u (local.get $i)))
                (i64.load (local.get $i)))
            (local.set $i (i32.add (local.get $i) (i32.const 8)))
            (br $copy)))
        (call $output_set (local.get $out) (i64.extend_i32_u (global.get $n)))
        (global.set $n (i32.const 0))
        (i32.const 0))
    ;; A block holding `text`'s first `len` bytes (`text` is in guest memory).
    (func $block (param $text i32) (param $len i64) (result i64)
        (local $h i64) (local $i i64)
        (local.set $h (call $alloc (local.get $len)))
        (block $done (loop $copy
            (br_if $done (i64.ge_u (local.get $i) (local.get $len)))
            (call $store8 (i64.add (local.get $h) (local.get $i))
                (i32.load8_u (i32.add (local.get $text) (i32.wrap_i64 (local.get $i)))))
            (local.set $i (i64.add (local.get $i) (i64.const 1)))
            (br $copy)))
        (local.get $h))
    (data (i32.const 60000) "greetingabcoops")
"#;

/// The accessors around the input's end and a block's end. Offsets that
/// only mean something in one host's memory layout (the kernel's block
/// headers, Buntime's arena header) are left out; everything else must match.
const ACCESSORS: &str = r#"
    ;; Every input read from offset 0 to 9 past the end, and far ones.
    (func (export "input_probe") (result i32)
        (local $len i64) (local $d i64)
        (local.set $len (call $input_len))
        (call $rec (local.get $len))
        (block $done (loop $next
            (br_if $done (i64.gt_u (local.get $d) (i64.add (local.get $len) (i64.const 9))))
            (call $rec (call $in64 (local.get $d)))
            (call $rec (i64.extend_i32_u (call $in8 (local.get $d))))
            (local.set $d (i64.add (local.get $d) (i64.const 1)))
            (br $next)))
        (call $rec (call $in64 (i64.const 0x100000000)))
        (call $rec (call $in64 (i64.const -9)))
        (call $rec (i64.extend_i32_u (call $in8 (i64.const -1))))
        (call $finish))

    ;; The input copied into the last block, then every load from its start
    ;; to 9 past its end, and far ones.
    (func (export "block_probe") (result i32)
        (local $len i64) (local $h i64) (local $d i64)
        (drop (call $input_offset))
        (local.set $len (call $input_len))
        (local.set $h (call $alloc (local.get $len)))
        (block $done (loop $copy
            (br_if $done (i64.ge_u (local.get $d) (local.get $len)))
            (call $store8 (i64.add (local.get $h) (local.get $d)) (call $in8 (local.get $d)))
            (local.set $d (i64.add (local.get $d) (i64.const 1)))
            (br $copy)))
        (call $rec (call $length (local.get $h)))
        (local.set $d (i64.const 0))
        (block $done (loop $next
            (br_if $done (i64.gt_u (local.get $d) (i64.add (local.get $len) (i64.const 9))))
            (call $rec (call $load64 (i64.add (local.get $h) (local.get $d))))
            (call $rec (i64.extend_i32_u (call $load8 (i64.add (local.get $h) (local.get $d)))))
            (local.set $d (i64.add (local.get $d) (i64.const 1)))
            (br $next)))
        (call $rec (call $load64 (i64.add (local.get $h) (i64.const 0x100000))))
        (call $rec (call $load64 (i64.const 0x10000000000)))
        (call $rec (call $load64 (i64.const -4)))
        (call $rec (i64.extend_i32_u (call $load8 (i64.const -1))))
        (call $rec (i64.extend_i32_u (call $load8 (i64.const 0))))
        (call $rec (call $load64 (i64.const 1)))
        (call $finish))

    ;; Stores at every offset from the last block's start to 9 past its end
    ;; (each overlapping the one before), stores far out and into the
    ;; header, then every load back.
    (func (export "store_probe") (result i32)
        (local $len i64) (local $h i64) (local $d i64)
        (drop (call $input_offset))
        (local.set $len (call $input_len))
        (local.set $h (call $alloc (local.get $len)))
        (block $done (loop $next
            (br_if $done (i64.gt_u (local.get $d) (i64.add (local.get $len) (i64.const 9))))
            (call $store64 (i64.add (local.get $h) (local.get $d))
                (i64.add (i64.const 0x0102030405060700) (local.get $d)))
            (call $store8 (i64.add (local.get $h) (i64.add (local.get $d) (i64.const 3)))
                (i32.wrap_i64 (local.get $d)))
            (local.set $d (i64.add (local.get $d) (i64.const 1)))
            (br $next)))
        (call $store64 (i64.const 0x10000000000) (i64.const 7))
        (call $store64 (i64.const -4) (i64.const 7))
        (call $store8 (i64.const -1) (i32.const 7))
        (call $store64 (i64.const 8) (i64.const 7))
        (call $store8 (i64.const 0) (i32.const 7))
        (local.set $d (i64.const 0))
        (block $done (loop $next
            (br_if $done (i64.gt_u (local.get $d) (i64.add (local.get $len) (i64.const 20))))
            (call $rec (call $load64 (i64.add (local.get $h) (local.get $d))))
            (local.set $d (i64.add (local.get $d) (i64.const 1)))
            (br $next)))
        (call $rec (call $load64 (i64.const 0x10000000000)))
        (call $rec (call $load64 (i64.const 8)))
        (call $finish))
"#;

/// The other `extism:host/env` functions at their edges.
const EDGES: &str = r#"
    (func (export "output_far") (result i32)
        (local $h i64)
        (local.set $h (call $block (i32.const 60008) (i64.const 3)))
        (call $output_set (local.get $h) (i64.const 3))
        (call $output_set (i64.const 0x10000000000) (i64.const 8))
        (call $output_set (local.get $h) (i64.const 0x10000000000))
        (call $output_set (i64.const 0) (i64.const 0))
        (call $output_set (i64.const 8) (i64.const 8))
        (i32.const 0))
    (func (export "output_past_the_end") (result i32)
        (call $output_set (call $block (i32.const 60008) (i64.const 3)) (i64.const 11))
        (i32.const 0))
    (func (export "output_empty_inside") (result i32)
        (local $h i64)
        (local.set $h (call $block (i32.const 60008) (i64.const 3)))
        (call $output_set (local.get $h) (i64.const 3))
        (call $output_set (i64.add (local.get $h) (i64.const 1)) (i64.const 0))
        (i32.const 0))
    (func (export "error_far") (result i32)
        (call $error_set (i64.const 0x10000000000)) (i32.const 0))
    (func (export "error_inside_a_block") (result i32)
        (call $error_set (i64.add (call $block (i32.const 60011) (i64.const 4)) (i64.const 1)))
        (i32.const 0))
    (func (export "error_cleared") (result i32)
        (call $error_set (call $block (i32.const 60011) (i64.const 4)))
        (call $error_set (i64.const 0))
        (i32.const 0))
    (func (export "error_block") (result i32)
        (call $error_set (call $block (i32.const 60011) (i64.const 4)))
        (i32.const 1))
    (func (export "log_null") (result i32)
        (call $log_info (i64.const 0))
        (call $rec (i64.const 1))
        (call $finish))
    (func (export "log_inside_a_block") (result i32)
        (call $log_info (i64.add (call $block (i32.const 60008) (i64.const 3)) (i64.const 1)))
        (call $rec (i64.const 1))
        (call $finish))
    (func (export "config_null") (result i32)
        (call $rec (call $config_get (i64.const 0)))
        (call $finish))
    (func (export "config_inside_a_block") (result i32)
        (call $rec (call $config_get
            (i64.add (call $block (i32.const 60000) (i64.const 8)) (i64.const 1))))
        (call $finish))
    (func (export "config_found") (result i32)
        (local $v i64)
        (local.set $v (call $config_get (call $block (i32.const 60000) (i64.const 8))))
        (call $output_set (local.get $v) (call $length (local.get $v)))
        (i32.const 0))
    (func (export "var_null_key") (result i32)
        (local $v i64)
        (call $var_set (i64.const 0) (call $block (i32.const 60008) (i64.const 3)))
        (local.set $v (call $var_get (i64.const 0)))
        (call $rec (call $length (local.get $v)))
        (call $rec (call $load64 (local.get $v)))
        (call $var_set (i64.const 0) (i64.const 0))
        (call $rec (call $var_get (i64.const 0)))
        (call $finish))
    (func (export "var_get_inside_a_block") (result i32)
        (call $rec (call $var_get
            (i64.add (call $block (i32.const 60000) (i64.const 8)) (i64.const 1))))
        (call $finish))
    (func (export "log_far") (result i32)
        (call $log_info (i64.const 0x10000000000))
        (call $rec (i64.const 1))
        (call $finish))
    (func (export "var_value_not_a_block") (result i32)
        (call $var_set (call $block (i32.const 60008) (i64.const 1)) (i64.const 12345678))
        (i32.const 0))
    (func (export "length_and_free") (result i32)
        (local $h i64)
        (local.set $h (call $block (i32.const 60000) (i64.const 5)))
        (call $rec (call $length (i64.const 0)))
        (call $rec (call $length (local.get $h)))
        (call $rec (call $length (i64.add (local.get $h) (i64.const 1))))
        (call $rec (call $length (i64.sub (local.get $h) (i64.const 1))))
        (call $rec (call $length (i64.const 0x10000000000)))
        (call $rec (call $length (i64.const -1)))
        (call $free (i64.const 0))
        (call $free (i64.add (local.get $h) (i64.const 1)))
        (call $free (i64.const 0x10000000000))
        (call $free (i64.const -1))
        (call $rec (call $length (local.get $h)))
        (call $free (local.get $h))
        (call $rec (call $length (local.get $h)))
        (call $free (local.get $h))
        (call $rec (call $length (local.get $h)))
        (call $finish))
    (func (export "free_the_input") (result i32)
        (local $i i64)
        (local.set $i (call $input_offset))
        (call $rec (call $input_len))
        (call $rec (call $in64 (i64.const 0)))
        (call $free (local.get $i))
        (call $rec (call $input_len))
        (call $rec (call $in64 (i64.const 0)))
        (call $rec (i64.extend_i32_u (call $in8 (i64.const 1))))
        (call $finish))
    (func (export "reset_forgets_the_input") (result i32)
        (call $reset)
        (call $rec (call $input_len))
        (call $rec (call $in64 (i64.const 0)))
        (call $finish))
"#;

/// The probe module. `host_only` gives it an export under the arena's
/// reserved name, so that the rewrite leaves it alone: every accessor is
/// then a host function (and the arena in host memory), where otherwise
/// accesses inside the blocks run as the rewrite's inline code.
fn probe_wasm(host_only: bool) -> Vec<u8> {
    let squat = if host_only {
        format!(r#"(global (export "{ARENA_EXPORT}") i32 (i32.const 0))"#)
    } else {
        String::new()
    };
    wat::parse_str(format!("(module {PRELUDE} {ACCESSORS} {EDGES} {squat})")).expect("valid WAT")
}

/// What a call produced, reduced to what both hosts can be compared on: a
/// trap's message is each host's own.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok(Vec<u8>),
    Error { rc: i32, message: String },
    Trap,
}

/// The probe under both hosts, a fresh plugin and instance per case.
struct Pair {
    oracle: extism::CompiledPlugin,
    ours: GuestModule,
    host_only: bool,
}

impl Pair {
    /// Both variants of the probe: inline accessors, and host functions only.
    fn both() -> [Self; 2] {
        [Self::new(false), Self::new(true)]
    }

    fn new(host_only: bool) -> Self {
        let wasm = probe_wasm(host_only);
        let manifest = extism::Manifest::new([extism::Wasm::data(wasm.clone())])
            .with_config_key("greeting", "hi there");
        let oracle = extism::CompiledPlugin::new(extism::PluginBuilder::new(manifest))
            .expect("the extism crate compiles the probe");
        let ours = support::engine()
            .load(
                &wasm,
                GuestOptions::new("kernel").config("greeting", "hi there"),
            )
            .expect("load the probe");
        Self {
            oracle,
            ours,
            host_only,
        }
    }

    async fn run(&self, export: &str, input: &[u8]) -> (Outcome, Outcome) {
        let mut plugin = extism::Plugin::new_from_compiled(&self.oracle).expect("extism plugin");
        let mut instance = self.ours.instantiate().await.expect("instantiate");
        Self::run_on(&mut plugin, &mut instance, export, input).await
    }

    /// Runs one case on a given plugin and instance (to see what a call
    /// leaves behind for the next).
    async fn run_on(
        plugin: &mut extism::Plugin,
        instance: &mut GuestInstance,
        export: &str,
        input: &[u8],
    ) -> (Outcome, Outcome) {
        let want = tokio::task::block_in_place(|| {
            match plugin.call_get_error_code::<&[u8], Vec<u8>>(export, input) {
                Ok(out) => Outcome::Ok(out),
                Err((e, rc)) if rc > 0 => Outcome::Error {
                    rc,
                    message: e.root_cause().to_string(),
                },
                Err(_) => Outcome::Trap,
            }
        });
        let got = match instance.call(export, input.to_vec()).await {
            Ok(out) => Outcome::Ok(out.output.to_vec()),
            Err(CallError::Guest { rc, message }) => Outcome::Error { rc, message },
            Err(_) => Outcome::Trap,
        };
        (got, want)
    }

    async fn assert_same(&self, export: &str, input: &[u8]) -> Outcome {
        let (got, want) = self.run(export, input).await;
        assert_eq!(
            got,
            want,
            "`{export}` with {} input bytes differs from the extism crate ({})",
            input.len(),
            self.variant()
        );
        got
    }

    fn variant(&self) -> &'static str {
        if self.host_only {
            "host functions only"
        } else {
            "inline accessors"
        }
    }
}

/// Bytes `1..=len`, so that no input byte is 0 and a 0 read is telling.
fn input(len: usize) -> Vec<u8> {
    (1..=len as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_reads_past_the_end_answer_zero_as_in_extism() {
    for pair in Pair::both() {
        for len in 0..=17 {
            let out = pair.assert_same("input_probe", &input(len)).await;
            let Outcome::Ok(bytes) = out else {
                panic!("input_probe must not fail: {out:?}")
            };
            // The word read at `len - 7` straddles the end: 0, not a trap.
            let word = |i: usize| u64::from_le_bytes(bytes[8 + i * 16..][..8].try_into().unwrap());
            if len >= 7 {
                assert_eq!(word(len - 7), 0, "input of {len}: the straddling word");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_reads_past_the_end_read_zeros_as_in_extism() {
    for pair in Pair::both() {
        for len in 0..=17 {
            let out = pair.assert_same("block_probe", &input(len)).await;
            assert!(matches!(out, Outcome::Ok(_)), "{out:?}");
        }
    }
}

/// One instance for every length, longest first: what an earlier call left
/// past the blocks reads as zeros, as in the kernel's memory (zeroed at
/// each reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_calls_bytes_past_the_blocks_read_as_zeros() {
    for pair in Pair::both() {
        let mut plugin = extism::Plugin::new_from_compiled(&pair.oracle).expect("extism plugin");
        let mut instance = pair.ours.instantiate().await.expect("instantiate");
        for len in (0..=17).rev() {
            let (got, want) =
                Pair::run_on(&mut plugin, &mut instance, "block_probe", &input(len)).await;
            assert_eq!(
                got,
                want,
                "`block_probe` with {len} input bytes, after a longer one ({})",
                pair.variant()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_past_the_end_and_far_out_behave_as_in_extism() {
    for pair in Pair::both() {
        for len in 0..=17 {
            let out = pair.assert_same("store_probe", &input(len)).await;
            assert!(matches!(out, Outcome::Ok(_)), "{out:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_functions_take_odd_handles_as_extism_does() {
    limits::log_counter();
    for pair in Pair::both() {
        for export in [
            "output_far",
            "output_past_the_end",
            "output_empty_inside",
            "error_far",
            "error_inside_a_block",
            "error_cleared",
            "error_block",
            "log_null",
            "log_inside_a_block",
            "config_null",
            "config_inside_a_block",
            "config_found",
            "var_null_key",
            "var_value_not_a_block",
            "var_get_inside_a_block",
            "log_far",
            "length_and_free",
            "free_the_input",
            "reset_forgets_the_input",
        ] {
            pair.assert_same(export, b"0123456789").await;
        }
        // A few answers spelled out, so that agreeing on a wrong one fails too.
        let (got, _) = pair.run("output_past_the_end", b"").await;
        assert_eq!(got, Outcome::Ok(b"abc\0\0\0\0\0\0\0\0".to_vec()));
        let (got, _) = pair.run("output_far", b"").await;
        assert_eq!(got, Outcome::Ok(b"abc".to_vec()));
        let (got, _) = pair.run("error_block", b"").await;
        assert_eq!(
            got,
            Outcome::Error {
                rc: 1,
                message: "oops".into()
            }
        );
        let (got, _) = pair.run("free_the_input", b"0123456789").await;
        let words: Vec<u64> = match got {
            Outcome::Ok(b) => b
                .chunks(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
                .collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(words, [10, u64::from_le_bytes(*b"01234567"), 0, 0, 0]);
        assert_eq!(
            pair.run("config_inside_a_block", b"").await.0,
            Outcome::Trap
        );
    }
}

/// The hostile fixture's out-of-range accesses, which used to stop the
/// guest, answer as under Extism; a handle that is not a block is still an
/// error there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hostile_fixtures_wild_accesses_answer_as_in_extism() {
    let path = buntime_fixtures::HOSTILE;
    let module = support::engine()
        .load(&buntime_fixtures::bytes(path), GuestOptions::new("hostile"))
        .expect("load");
    for (export, want) in [
        ("bad_load", Some(&b"0"[..])),
        ("bad_store", Some(b"")),
        ("bad_output", Some(b"")),
        ("bad_input", Some(b"0")),
        ("bad_handle", None),
    ] {
        let mut oracle = support::extism_plugin(path, false);
        let theirs =
            tokio::task::block_in_place(|| oracle.call::<&[u8], Vec<u8>>(export, b"").ok());
        let mut instance = module.instantiate().await.expect("instantiate");
        let ours = instance
            .call(export, Vec::new())
            .await
            .ok()
            .map(|o| o.output.to_vec());
        assert_eq!(ours, theirs, "`{export}` differs from the extism crate");
        assert_eq!(ours.as_deref(), want, "`{export}`");
    }
}
