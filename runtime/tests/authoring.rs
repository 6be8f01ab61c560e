//! Authoring from the binary alone, as a new user would: `buntime plugin
//! new` and `app new` in each language into a temporary directory outside
//! the repository, built with the command their README gives (nothing copied
//! from the checkout, a clean `CARGO_TARGET_DIR`, no registry: cargo and npm
//! run offline, from the caches that building this repository filled), then
//! loaded into a server and tried over HTTP. Also `plugin inspect` on good
//! and broken modules, and the refusal of a module built for a newer ABI.
//! The Rust run also builds the guest samples of `docs/` in copies of its
//! scaffold (`build_doc_samples`).
//!
//! The three build tests are this crate's slowest (the Rust one compiles the
//! PDK's dependencies); each builds one plugin and one app and checks both
//! on one server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

mod common;
use common::{BIN, SHARED_MODULE_CACHE, announced_port, http_get};

/// `buntime ARGS` in `dir` with a new user's environment: nothing of this
/// build's cargo or rustup settings, cargo and npm offline, and the Rust
/// target dir `target` (clean: inside the test's temp dir).
fn buntime(dir: &Path, args: &[&str], target: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let ours = (key.starts_with("CARGO") && key != "CARGO_HOME")
            || (key.starts_with("RUST") && key != "RUSTUP_HOME");
        if ours {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TARGET_DIR", target)
        .env("npm_config_offline", "true")
        .output()
        .expect("run buntime")
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Writes `root/buntime.jsonc` loading `plugins` with the core plugins
/// turned off (their compilation would be most of a test's time).
fn only_plugins(root: &Path, plugins: &[&str]) {
    let mut list: Vec<serde_json::Value> = plugins.iter().map(|p| (*p).into()).collect();
    for core in ["@buntime/plugin-database", "@buntime/plugin-keyval"] {
        list.push(serde_json::json!({ "name": core, "enabled": false }));
    }
    let file = serde_json::json!({ "plugins": list });
    std::fs::write(root.join("buntime.jsonc"), file.to_string()).expect("buntime.jsonc");
}

/// A running `buntime serve`, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(root: &Path, plugins: &Path, apps: &Path) -> Self {
        let log = root.join("server.log");
        let mut child = Command::new(BIN)
            .env("RUNTIME_PLUGIN_DIRS", plugins)
            .env("RUNTIME_WORKER_DIRS", apps)
            .env("RUNTIME_DATA_DIR", root.join("data"))
            .env("RUNTIME_CACHE_DIR", SHARED_MODULE_CACHE)
            .env("PORT", "0")
            .current_dir(root)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn buntime");
        // The banner comes once every plugin is loaded.
        let port = announced_port(&mut child);
        Server { child, port, log }
    }

    /// Stops the server; returns its log.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `plugin new` and `app new` in `lang`, built as their READMEs say,
/// inspected, served and tried.
fn author(lang: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let target = root.join("target");
    ok(
        &buntime(
            root,
            &["plugin", "new", "@acme/hello", "--lang", lang],
            &target,
        ),
        "plugin new",
    );
    ok(
        &buntime(root, &["app", "new", "greet", "--lang", lang], &target),
        "app new",
    );
    let plugin = root.join("hello");
    let app = root.join("greet");
    let readme = std::fs::read_to_string(plugin.join("README.md")).expect("README");
    assert!(
        readme.contains("buntime plugin build") && readme.contains("RUNTIME_PLUGIN_DIRS=dist"),
        "{readme}"
    );
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the checkout");
    for file in walk(root) {
        let text = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        assert!(
            !text.contains(&*checkout.to_string_lossy()),
            "{} names the checkout",
            file.display()
        );
    }
    let lock = (lang == "rust").then(|| std::fs::read(plugin.join("Cargo.lock")).expect("lock"));

    ok(
        &buntime(&plugin, &["plugin", "build"], &target),
        "plugin build",
    );
    ok(&buntime(&app, &["app", "build"], &target), "app build");
    if let Some(lock) = lock {
        assert!(
            std::fs::read(plugin.join("Cargo.lock")).expect("lock") == lock,
            "cargo had to change the scaffold's Cargo.lock"
        );
    }

    let inspect = ok(
        &buntime(root, &["plugin", "inspect", "hello/dist/hello"], &target),
        "plugin inspect",
    );
    // The Rust PDK's macros declare the binary head; `buntime.h` and the
    // AssemblyScript template read JSON.
    let heads = match lang {
        "rust" => "heads     binary: on_request, handle",
        _ => "heads     JSON",
    };
    for line in [
        "abi       version 2 (this host: 2)",
        "hooks     on_init, on_request, on_response, handle",
        heads,
        "grants    log",
        "loads     yes",
    ] {
        assert!(inspect.contains(line), "no {line:?} in:\n{inspect}");
    }

    only_plugins(root, &["@acme/hello"]);
    let server = Server::start(root, &plugin.join("dist"), &app.join("dist"));
    let route = http_get(server.port, "/_/hello/hello");
    assert!(
        route.starts_with("HTTP/1.1 200") && route.ends_with("hello from @acme/hello"),
        "{route}"
    );
    let answer = http_get(server.port, "/greet@0.1/");
    assert!(
        answer.starts_with("HTTP/1.1 200")
            && answer.contains("x-acme-hello-seen: 1")
            && answer.contains("hello from greet"),
        "{answer}"
    );
    let log = server.stop();
    assert!(log.contains("@acme/hello ready"), "{log}");
    if lang == "rust" {
        build_doc_samples(root, &plugin, &app, &target);
    }
}

/// The Rust guest samples of `docs/` — abi.md's app, plugins.md's worked
/// example and keyval.md's `kv` service call — each built in a copy of the
/// scaffold, as a reader would, so the documents cannot drift from the PDK.
fn build_doc_samples(root: &Path, plugin: &Path, app: &Path, target: &Path) {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let sample = |file: &str, first_line: &str| -> String {
        let text = std::fs::read_to_string(docs.join(file)).expect("read the doc");
        let fence = format!("```rust\n{first_line}");
        let start = text
            .find(&fence)
            .unwrap_or_else(|| panic!("docs/{file}: no Rust sample starting {first_line:?}"))
            + "```rust\n".len();
        let end = start + text[start..].find("```").expect("the end of the sample");
        text[start..end].to_owned()
    };

    let doc_app = root.join("doc-app");
    copy_sources(app, &doc_app);
    std::fs::write(
        doc_app.join("src/lib.rs"),
        sample("abi.md", "// src/lib.rs"),
    )
    .expect("write the app sample");
    ok(
        &buntime(&doc_app, &["app", "build"], target),
        "building docs/abi.md's app sample",
    );

    // keyval.md's sample is statements: they go in a function of their own,
    // beside plugins.md's plugin.
    let kv = sample(
        "plugins/keyval.md",
        "use buntime_pdk::plugin::services::call_service;",
    );
    let (uses, body): (Vec<&str>, Vec<&str>) = kv.lines().partition(|l| l.starts_with("use "));
    let lib = format!(
        "{}\n/// docs/plugins/keyval.md §12.\n#[allow(dead_code, unused_variables)]\nmod kv_sample {{\n{}\nfn call() -> Result<(), buntime_pdk::Error> {{\n{}\nOk(())\n}}\n}}\n",
        sample("plugins.md", "//! `@acme/ratelimit`"),
        uses.join("\n"),
        body.join("\n")
    );
    let doc_plugin = root.join("doc-plugin");
    copy_sources(plugin, &doc_plugin);
    std::fs::write(doc_plugin.join("src/lib.rs"), lib).expect("write the plugin sample");
    ok(
        &buntime(&doc_plugin, &["plugin", "build"], target),
        "building docs/plugins.md's and docs/plugins/keyval.md's plugin samples",
    );
}

/// Copies a scaffolded project without its build outputs.
fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let (path, dest) = (entry.path(), to.join(entry.file_name()));
        if path.is_dir() {
            if !path.ends_with("dist") && !path.ends_with("target") {
                copy_sources(&path, &dest);
            }
        } else {
            std::fs::copy(&path, &dest).expect("copy");
        }
    }
}

/// Every file under `dir`, build outputs and installed packages aside.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("node_modules") && !path.ends_with("target") {
                files.extend(walk(&path));
            }
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn rust_plugin_and_app_build_from_the_binary_alone_and_answer() {
    author("rust");
}

#[test]
fn c_plugin_and_app_build_from_the_binary_alone_and_answer() {
    author("c");
}

#[test]
fn assemblyscript_plugin_and_app_build_from_the_binary_alone_and_answer() {
    author("as");
}

/// A plugin dir with `manifest.jsonc` and the module `wat` declaring ABI
/// version `abi` (none if `None`).
fn plugin_dir(root: &Path, name: &str, abi: Option<u32>) -> PathBuf {
    let section = abi.map_or(String::new(), |v| {
        let bytes: String = v
            .to_le_bytes()
            .iter()
            .map(|b| format!("\\{b:02x}"))
            .collect();
        format!(r#"(@custom "buntime_abi" "{bytes}")"#)
    });
    let wat =
        format!(r#"(module {section} (func (export "on_request") (result i32) i32.const 0))"#);
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("plugin.wasm"), wat::parse_str(&wat).expect("wat")).expect("write");
    std::fs::write(
        dir.join("manifest.jsonc"),
        format!(r#"{{ "name": "{name}", "version": "1.0.0" }}"#),
    )
    .expect("write");
    dir
}

#[test]
fn inspect_tells_a_good_module_from_a_broken_one_and_a_newer_abi_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    let target = tmp.path().join("target");

    // `plugin inspect PATH`: its exit code and report.
    let inspect = |path: &Path| {
        let out = buntime(
            tmp.path(),
            &["plugin", "inspect", &path.to_string_lossy()],
            &target,
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let out = buntime(tmp.path(), &["plugin", "inspect"], &target);
    assert!(!out.status.success(), "inspect without a path");

    let (code, report) = inspect(&plugin_dir(&plugins, "good", Some(1)));
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("abi       version 1")
            && report.contains("hooks     on_request")
            && report.contains("loads     yes"),
        "{report}"
    );

    let broken = tmp.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x01\0\0\0\x01\xff").expect("write");
    let (code, report) = inspect(&broken);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("loads     no:"), "{report}");

    let (code, report) = inspect(&plugin_dir(&plugins, "newer", Some(3)));
    assert_eq!(code, Some(1), "{report}");
    let refusal = "built for Buntime ABI version 3, but this host speaks ABI version 2";
    assert!(
        report.contains("abi       version 3 (this host: 2)") && report.contains(refusal),
        "{report}"
    );

    // The server's own load refuses it with the same words; the good one loads.
    only_plugins(tmp.path(), &["good", "newer"]);
    let out = Command::new(BIN)
        .current_dir(tmp.path())
        .arg("check")
        .env("RUNTIME_PLUGIN_DIRS", &plugins)
        .env("RUNTIME_WORKER_DIRS", tmp.path().join("apps"))
        .env("RUNTIME_CACHE_DIR", SHARED_MODULE_CACHE)
        .output()
        .expect("check");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("plugin good")
            && report.contains("error: plugin `newer`")
            && report.contains(refusal),
        "{report}"
    );
}
