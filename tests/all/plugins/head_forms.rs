//! The two forms of the request head (docs/abi.md §14): an export that a
//! module's `buntime_head` custom section declares reads the binary layout
//! gets it, any other JSON, in the same chain, on the same request.

use super::{config, install_plugin};
use crate::attacks::framing::{Act, At, Guest};
use crate::server::{TestServer, get};

/// A guest whose `export` (`on_request` or `handle`) names the form of head
/// it received in the response header `x-head-<name>`: `binary` (first
/// byte 0), `json` (`{`) or `other`; `section` is added to the module.
fn guest(name: &str, export: &str, section: &str) -> String {
    let answer = |form: &str| {
        let header = format!(r#"[["x-head-{name}","{form}"]]"#);
        Act::Output(match export {
            "on_request" => format!(r#"{{"action":"continue","response_headers":{header}}}"#),
            _ => format!(r#"{{"status":200,"headers":{header}}}"#),
        })
    };
    let wat = Guest::default()
        .branches(
            export,
            vec![
                (Some((At::Start(0), 0)), answer("binary")),
                (Some((At::Start(0), b'{')), answer("json")),
                (None, answer("other")),
            ],
        )
        .wat();
    wat.replacen("(module", &format!("(module {section}"), 1)
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
