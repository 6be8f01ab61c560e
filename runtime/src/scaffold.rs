//! `buntime plugin new <name>`: a plugin crate that builds and loads as is.
//!
//! The crate depends on `buntime-pdk` by path when this binary was built from
//! a source tree that is still there (the usual case for contributors), and
//! otherwise by version. It carries its own empty `[workspace]` so it builds
//! even when created inside another Cargo workspace.

use std::path::{Path, PathBuf};

use crate::plugins::valid_plugin_name;

/// Why a plugin could not be scaffolded.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a valid plugin name.
    #[error(
        "`{0}` is not a valid plugin name: use `name` or `@scope/name` with lowercase letters, digits, `-`, `_` and `.`"
    )]
    InvalidName(String),
    /// The target exists.
    #[error("{} already exists; choose another name or --dir", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Creates the plugin crate for `name` in `parent/<last part of name>`;
/// returns the crate's directory.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let created = buntime::scaffold::new_plugin("@acme/hello", dir.path()).unwrap();
/// assert!(created.join("manifest.jsonc").is_file());
/// assert!(buntime::scaffold::new_plugin("Bad Name", dir.path()).is_err());
/// ```
pub fn new_plugin(name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    if !valid_plugin_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_owned()));
    }
    let short = name.rsplit('/').next().unwrap_or(name);
    let base: String = short
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let crate_name = base.replace('-', "_");
    let dir = parent.join(short);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let pdk = local_pdk().map_or_else(
        || format!("buntime-pdk = \"{}\"", env!("CARGO_PKG_VERSION")),
        |p| format!("buntime-pdk = {{ path = {:?} }}", p.display().to_string()),
    );
    let files = [
        ("Cargo.toml", cargo_toml(&crate_name, &pdk)),
        ("src/lib.rs", lib_rs(name)),
        ("manifest.jsonc", manifest(name, &base)),
        ("README.md", readme(name, &crate_name, short, &base)),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| ScaffoldError::Io { path, source })?;
    }
    Ok(dir)
}

/// The PDK's source dir, if this binary was built from a tree that still exists.
fn local_pdk() -> Option<PathBuf> {
    let pdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pdk");
    pdk.join("Cargo.toml")
        .is_file()
        .then(|| pdk.canonicalize().ok())
        .flatten()
}

fn cargo_toml(crate_name: &str, pdk: &str) -> String {
    format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
{pdk}
extism-pdk = {{ version = "1.4", default-features = false }}
serde_json = "1"

# Built on its own, even inside another workspace.
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
"#
    )
}

fn lib_rs(name: &str) -> String {
    format!(
        r#"//! The `{name}` Buntime plugin.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown`.

use buntime_pdk::hooks::{{RequestChanges, RequestDecision, ResponseChanges, ResponseView}};
use buntime_pdk::{{Error, Request, RequestHead, Response}};

/// Runs before every request: here, tag it and let it through.
fn tag_request(req: RequestHead) -> Result<RequestDecision, Error> {{
    let changes = RequestChanges::default().set_header("x-{name_header}", req.path);
    Ok(RequestDecision::Continue(changes))
}}
buntime_pdk::on_request!(tag_request);

/// Runs after the response is ready (in reverse plugin order).
fn tag_response(_res: ResponseView) -> Result<ResponseChanges, Error> {{
    Ok(ResponseChanges::default().set_header("x-{name_header}-seen", "1"))
}}
buntime_pdk::on_response!(tag_response);

/// The plugin's own routes, under `/_/<base>/`.
fn routes(req: Request) -> Result<Response, Error> {{
    match req.path() {{
        "/hello" => Ok(Response::text("hello from {name}")),
        _ => Ok(Response::new(404)),
    }}
}}
buntime_pdk::app!(routes);
"#,
        name_header = name.trim_start_matches('@').replace(['/', '.', '_'], "-"),
    )
}

fn manifest(name: &str, base: &str) -> String {
    format!(
        r#"// The `{name}` plugin. Every field: docs/plugins.md.
{{
  "name": "{name}",
  "version": "0.1.0",
  "base": "{base}",
  "capabilities": {{ "log": true }},
  "limits": {{ "memory": "16mb", "timeout": "100ms" }},
  "onError": "closed"
}}
"#
    )
}

fn readme(name: &str, crate_name: &str, short: &str, base: &str) -> String {
    format!(
        r#"# {name}

A Buntime plugin.

```sh
cargo build --release --target wasm32-unknown-unknown
mkdir -p ../plugins/{short}
cp target/wasm32-unknown-unknown/release/{crate_name}.wasm ../plugins/{short}/plugin.wasm
cp manifest.jsonc ../plugins/{short}/
RUNTIME_PLUGIN_DIRS=../plugins RUNTIME_WORKER_DIRS=../apps buntime
curl localhost:8000/_/{base}/hello
```
"#
    )
}
