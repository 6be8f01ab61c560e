//! The two forms of the request head (docs/abi.md §14): an export that a
//! module's `buntime_head` custom section declares reads the binary layout
//! gets it, any other JSON, in the same chain, on the same request.

use super::{config, install_plugin};
use crate::server::{TestServer, get};

/// A guest whose `export` (`on_request` or `handle`) names the form of head
/// it received in the response header `x-head-<name>`: `binary` (tag 0,
/// then flags of the layout's three), `json` (`{`) or `other`.
fn guest(name: &str, export: &str, section: &str) -> String {
    let answer = |form: &str| {
        let header = format!(r#"[["x-head-{name}","{form}"]]"#);
        let text = match export {
            "on_request" => format!(r#"{{"action":"continue","response_headers":{header}}}"#),
            _ => format!(r#"{{"status":200,"headers":{header}}}"#),
        };
        text.replace('"', "\\\"")
    };
    let (binary, json, other) = (answer("binary"), answer("json"), answer("other"));
    let len = |s: &str| s.replace("\\\"", "\"").len();
    let (lb, lj, lo) = (len(&binary), len(&json), len(&other));
    format!(
        r#"(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $out (param i64 i64)))
  (import "extism:host/env" "input_length" (func $input_len (result i64)))
  (import "extism:host/env" "input_load_u8" (func $in8 (param i64) (result i32)))
  {section}
  (memory (export "memory") 1)
  (data (i32.const 0) "{binary}")
  (data (i32.const 512) "{json}")
  (data (i32.const 1024) "{other}")
  (func $answer (param $ptr i32) (param $len i32) (local $h i64) (local $i i32)
    (local.set $h (call $alloc (i64.extend_i32_u (local.get $len))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (call $store8 (i64.add (local.get $h) (i64.extend_i32_u (local.get $i)))
        (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $out (local.get $h) (i64.extend_i32_u (local.get $len))))
  (func (export "{export}") (result i32)
    (if (i64.lt_u (call $input_len) (i64.const 8))
      (then (call $answer (i32.const 1024) (i32.const {lo})) (return (i32.const 0))))
    (if (i32.and
          (i32.eqz (call $in8 (i64.const 0)))
          (i32.eqz (i32.and (call $in8 (i64.const 1)) (i32.const 0xf8))))
      (then (call $answer (i32.const 0) (i32.const {lb})) (return (i32.const 0))))
    (if (i32.eq (call $in8 (i64.const 0)) (i32.const 123))
      (then (call $answer (i32.const 512) (i32.const {lj})) (return (i32.const 0))))
    (call $answer (i32.const 1024) (i32.const {lo}))
    (i32.const 0)))"#
    )
}

#[tokio::test]
async fn an_export_gets_the_binary_head_only_when_its_module_declares_it_there() {
    // Records: export (1 on_request, 2 handle), layout (1).
    let on_request = r#"(@custom "buntime_head" "\01\01")"#;
    let handle = r#"(@custom "buntime_head" "\02\01")"#;
    let server = TestServer::start_plugins(|root| {
        for (name, section) in [
            ("declares", on_request),
            // A layout this host does not write: JSON, which every PDK reads.
            ("future", r#"(@custom "buntime_head" "\01\09")"#),
            // A record for the other export only.
            ("routes", handle),
            ("plain", ""),
        ] {
            let wasm = root.join(format!("{name}.wat"));
            std::fs::write(&wasm, guest(name, "on_request", section)).expect("wat");
            install_plugin(
                root,
                name,
                &format!(r#"{{ "name": "{name}", "version": "1.0.0" }}"#),
                wasm.to_str().expect("utf-8 path"),
            );
        }
        for (name, section) in [("binapp", handle), ("jsonapp", on_request)] {
            let dir = root.join("apps").join(name);
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("app.wasm"), guest(name, "handle", section)).expect("app");
        }
        config(
            root,
            r#"{ plugins: ["plain", "declares", "future", "routes"] }"#,
        );
    })
    .await;
    // Twice: the second request is served from each form's cached head.
    for _ in 0..2 {
        for (app, form) in [("binapp", "binary"), ("jsonapp", "json")] {
            let res = get(&server.url(&format!("/{app}/x?a=1"))).await;
            assert_eq!(res.status(), 200, "{app}");
            let form_of = |name: &str| {
                res.headers()
                    .get(format!("x-head-{name}"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            assert_eq!(form_of(app).as_deref(), Some(form), "{app}");
            assert_eq!(form_of("declares").as_deref(), Some("binary"));
            assert_eq!(form_of("plain").as_deref(), Some("json"));
            assert_eq!(form_of("future").as_deref(), Some("json"));
            assert_eq!(form_of("routes").as_deref(), Some("json"));
        }
    }
    server.stop().await;
}
