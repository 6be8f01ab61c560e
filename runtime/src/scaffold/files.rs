//! The files of a new project: templates (`templates/`) filled with the
//! project's names and the versions this binary carries.

use super::{Kind, Lang};
use buntime_pdk::abi::ABI_VERSION;

/// The Rust PDK's sources, vendored into Rust projects as `pdk/src/`.
/// `tests::every_pdk_source_is_vendored` keeps the list whole.
const PDK_SOURCES: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../../pdk/src/lib.rs")),
    ("abi.rs", include_str!("../../../pdk/src/abi.rs")),
    ("guest.rs", include_str!("../../../pdk/src/guest.rs")),
    (
        "head_binary.rs",
        include_str!("../../../pdk/src/head_binary.rs"),
    ),
    (
        "head_binary_tests.rs",
        include_str!("../../../pdk/src/head_binary_tests.rs"),
    ),
    ("hooks.rs", include_str!("../../../pdk/src/hooks.rs")),
    (
        "hooks_json.rs",
        include_str!("../../../pdk/src/hooks_json.rs"),
    ),
    (
        "hooks_json_tests.rs",
        include_str!("../../../pdk/src/hooks_json_tests.rs"),
    ),
    ("http.rs", include_str!("../../../pdk/src/http.rs")),
    ("http_ref.rs", include_str!("../../../pdk/src/http_ref.rs")),
    ("io.rs", include_str!("../../../pdk/src/io.rs")),
    (
        "json_scan.rs",
        include_str!("../../../pdk/src/json_scan.rs"),
    ),
    ("plugin.rs", include_str!("../../../pdk/src/plugin.rs")),
    (
        "plugin/fs.rs",
        include_str!("../../../pdk/src/plugin/fs.rs"),
    ),
    (
        "plugin/input.rs",
        include_str!("../../../pdk/src/plugin/input.rs"),
    ),
    (
        "plugin/metrics.rs",
        include_str!("../../../pdk/src/plugin/metrics.rs"),
    ),
    (
        "plugin/sql.rs",
        include_str!("../../../pdk/src/plugin/sql.rs"),
    ),
    ("vars.rs", include_str!("../../../pdk/src/vars.rs")),
];

/// The registry packages the vendored PDK needs, pinned (see `build.rs`).
const LOCK_PACKAGES: &str = include_str!(concat!(env!("OUT_DIR"), "/scaffold_lock.toml"));

/// The project's files, as (path relative to the project, contents).
pub(super) fn project(kind: Kind, name: &str, lang: Lang) -> Vec<(String, String)> {
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
    let header = name.trim_start_matches('@').replace(['/', '.', '_'], "-");
    let module = kind.noun();
    let (lang_name, needs, build_cmd) = match lang {
        Lang::Rust => (
            "Rust",
            "rustup (the toolchain and wasm target pinned in `rust-toolchain.toml` install on the first build)",
            "cargo build --release",
        ),
        Lang::C => (
            "C",
            "clang and wasm-ld (Debian/Ubuntu: `apt-get install clang lld`)",
            "./build.sh",
        ),
        Lang::AssemblyScript => (
            "AssemblyScript",
            "node and npm (the first build runs `npm ci`, which installs the versions pinned in `package-lock.json`)",
            "npm run build",
        ),
    };
    let fill = |template: &str| -> String {
        [
            ("{{name}}", name),
            ("{{short}}", short),
            ("{{base}}", &base),
            ("{{crate}}", &crate_name),
            ("{{header}}", &header),
            ("{{module}}", module),
            ("{{lang_name}}", lang_name),
            ("{{needs}}", needs),
            ("{{build_cmd}}", build_cmd),
            ("{{abi}}", &ABI_VERSION.to_string()),
            ("{{pdk_version}}", env!("CARGO_PKG_VERSION")),
            ("{{buntime_version}}", env!("CARGO_PKG_VERSION")),
            ("{{rust_channel}}", env!("BUNTIME_RUST_CHANNEL")),
        ]
        .iter()
        .fold(template.to_owned(), |text, (key, value)| {
            text.replace(key, value)
        })
    };

    let mut files = vec![(
        ".gitignore".to_owned(),
        "/target\n/build\n/dist\n/node_modules\n".to_owned(),
    )];
    match kind {
        Kind::Plugin => {
            files.push((
                "manifest.jsonc".into(),
                fill(include_str!("templates/manifest.jsonc.txt")),
            ));
            files.push((
                "README.md".into(),
                fill(include_str!("templates/README-plugin.md.txt")),
            ));
        }
        Kind::App => {
            files.push((
                "worker.jsonc".into(),
                fill(include_str!("templates/worker.jsonc.txt")),
            ));
            files.push((
                "README.md".into(),
                fill(include_str!("templates/README-app.md.txt")),
            ));
        }
    }
    let source = |plugin: &str, app: &str| match kind {
        Kind::Plugin => fill(plugin),
        Kind::App => fill(app),
    };
    match lang {
        Lang::Rust => {
            files.push((
                "Cargo.toml".into(),
                fill(include_str!("templates/Cargo.toml.txt")),
            ));
            files.push(("Cargo.lock".into(), lockfile(&crate_name)));
            files.push((
                "rust-toolchain.toml".into(),
                fill(include_str!("templates/rust-toolchain.toml.txt")),
            ));
            files.push((
                ".cargo/config.toml".into(),
                fill(include_str!("templates/cargo-config.toml.txt")),
            ));
            files.push((
                "src/lib.rs".into(),
                source(
                    include_str!("templates/plugin.rs.txt"),
                    include_str!("templates/app.rs.txt"),
                ),
            ));
            files.push((
                "pdk/Cargo.toml".into(),
                fill(include_str!("templates/pdk-Cargo.toml.txt")),
            ));
            for (file, text) in PDK_SOURCES {
                files.push((format!("pdk/src/{file}"), (*text).to_owned()));
            }
        }
        Lang::C => {
            files.push((
                "build.sh".into(),
                fill(include_str!("templates/build.sh.txt")),
            ));
            files.push((
                format!("src/{module}.c"),
                source(
                    include_str!("templates/plugin.c.txt"),
                    include_str!("templates/app.c.txt"),
                ),
            ));
            files.push((
                "src/buntime.h".into(),
                include_str!("../../../pdk/c/buntime.h").to_owned(),
            ));
        }
        Lang::AssemblyScript => {
            let (package, lock) = npm_files(&base, kind);
            files.push(("package.json".into(), package));
            files.push(("package-lock.json".into(), lock));
            files.push((
                "buntime-abi.mjs".into(),
                fill(include_str!("templates/buntime-abi.mjs.txt")),
            ));
            files.push((
                "assembly/index.ts".into(),
                source(
                    include_str!("templates/plugin.ts.txt"),
                    include_str!("templates/app.ts.txt"),
                ),
            ));
        }
    }
    files
}

/// The lockfile the AssemblyScript guests here are built with: the project
/// pins the same `assemblyscript` and `@extism/as-pdk`, so `npm ci` installs
/// them from an npm cache that built this repository.
const NPM_LOCK: &str = include_str!("../../../fixtures/assemblyscript/package-lock.json");

/// `package.json` and `package-lock.json` of an AssemblyScript project.
fn npm_files(name: &str, kind: Kind) -> (String, String) {
    let mut lock: serde_json::Value =
        serde_json::from_str(NPM_LOCK).expect("fixtures/assemblyscript/package-lock.json is JSON");
    lock["name"] = name.into();
    lock["version"] = "0.1.0".into();
    lock["packages"][""]["name"] = name.into();
    lock["packages"][""]["version"] = "0.1.0".into();
    let module = kind.noun();
    let package = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "private": true,
        "description": format!("A Buntime {module} (ABI version {ABI_VERSION}) in AssemblyScript"),
        "scripts": {
            "build": format!(
                "asc assembly/index.ts --outFile build/{module}.wasm -O3 --noAssert --use abort=assembly/index/myAbort --transform ./buntime-abi.mjs"
            )
        },
        "devDependencies": lock["packages"][""]["devDependencies"].clone(),
    });
    let pretty = |v: &serde_json::Value| {
        serde_json::to_string_pretty(v).expect("JSON values serialize") + "\n"
    };
    (pretty(&package), pretty(&lock))
}

/// The project's `Cargo.lock`: the project and the vendored PDK beside the
/// pinned registry packages, in cargo's own order and format, so the first
/// build resolves nothing and rewrites nothing.
fn lockfile(crate_name: &str) -> String {
    let pdk = format!(
        "[[package]]\nname = \"buntime-pdk\"\nversion = \"{}\"\ndependencies = [\n \"extism-pdk\",\n \"serde\",\n \"serde_json\",\n]\n\n",
        env!("CARGO_PKG_VERSION")
    );
    let project = format!(
        "[[package]]\nname = \"{crate_name}\"\nversion = \"0.1.0\"\ndependencies = [\n \"buntime-pdk\",\n \"extism-pdk\",\n \"serde_json\",\n]\n\n"
    );
    // Entries start `[[package]]\nname = "…"\nversion = "…"`, so sorting
    // the texts sorts by name, then version, as cargo does.
    let mut entries: Vec<&str> = LOCK_PACKAGES
        .split_inclusive("\n\n")
        .chain([pdk.as_str(), project.as_str()])
        .collect();
    entries.sort_unstable();
    let mut lock = String::from(
        "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 4\n\n",
    );
    lock.extend(entries);
    lock.truncate(lock.trim_end().len());
    lock.push('\n');
    lock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pdk_source_is_vendored() {
        fn walk(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("pdk/src") {
                let entry = entry.expect("entry");
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if entry.file_type().expect("file type").is_dir() {
                    walk(&entry.path(), &format!("{name}/"), out);
                } else {
                    out.push(name);
                }
            }
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pdk/src");
        let mut on_disk = Vec::new();
        walk(&dir, "", &mut on_disk);
        on_disk.sort();
        let mut vendored: Vec<String> = PDK_SOURCES.iter().map(|(f, _)| (*f).to_owned()).collect();
        vendored.sort();
        assert_eq!(vendored, on_disk, "add the new file to PDK_SOURCES");
    }
}
