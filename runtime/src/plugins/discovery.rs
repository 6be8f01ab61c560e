//! Finding plugins: embedded in the binary, and in the plugin dirs.
//!
//! A plugin dir holds `name/manifest.jsonc` + `name/plugin.wasm` (+ `ui/`),
//! or scoped `@scope/name/...`. Entries starting with `.` are skipped. A
//! plugin found in a dir replaces an embedded one of the same name (so an
//! operator can ship a newer core plugin without a new binary); between dirs,
//! the first dir wins and later copies are reported as shadowed.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::manifest::{MANIFEST_FILE, Manifest};

/// The module file of a plugin dir.
pub const PLUGIN_WASM_FILE: &str = "plugin.wasm";

/// The files of an embedded plugin's `ui/` dir: `(path inside ui/, bytes)`.
pub type EmbeddedFiles = &'static [(&'static str, &'static [u8])];

/// A plugin compiled into the binary.
#[derive(Debug, Clone)]
pub struct EmbeddedPlugin {
    /// Its `manifest.jsonc` text.
    pub manifest: Cow<'static, str>,
    /// Its module.
    pub wasm: Cow<'static, [u8]>,
    /// Its `ui/` dir, compiled in as well (empty: none).
    pub ui: EmbeddedFiles,
}

/// Where a plugin comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Compiled into the binary: the module and the `ui/` files.
    Embedded(Cow<'static, [u8]>, EmbeddedFiles),
    /// A plugin dir.
    Dir(PathBuf),
}

/// A plugin's static UI, served under `/_/<base>/`.
#[derive(Debug, Clone)]
pub enum PluginUi {
    /// The `ui/` dir of a plugin dir.
    Dir(PathBuf),
    /// The `ui/` files compiled into the binary with an embedded plugin.
    Embedded(EmbeddedFiles),
}

/// A plugin found, with a valid manifest.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its manifest.
    pub manifest: Manifest,
    /// Where it comes from.
    pub origin: Origin,
}

impl Candidate {
    /// Where the manifest is, for messages.
    pub fn manifest_path(&self) -> PathBuf {
        match &self.origin {
            Origin::Embedded(..) => {
                PathBuf::from(format!("<embedded>/{}/{MANIFEST_FILE}", self.manifest.name))
            }
            Origin::Dir(d) => d.join(MANIFEST_FILE),
        }
    }

    /// Where the module is, for messages.
    pub fn wasm_path(&self) -> PathBuf {
        match &self.origin {
            Origin::Embedded(..) => PathBuf::from(format!(
                "<embedded>/{}/{PLUGIN_WASM_FILE}",
                self.manifest.name
            )),
            Origin::Dir(d) => d.join(PLUGIN_WASM_FILE),
        }
    }

    /// The module's bytes.
    pub fn wasm(&self) -> std::io::Result<Cow<'static, [u8]>> {
        match &self.origin {
            Origin::Embedded(bytes, _) => Ok(bytes.clone()),
            Origin::Dir(d) => std::fs::read(d.join(PLUGIN_WASM_FILE)).map(Cow::Owned),
        }
    }

    /// The plugin's static UI, if it has one.
    pub fn ui(&self) -> Option<PluginUi> {
        match &self.origin {
            Origin::Dir(d) => Some(d.join("ui")).filter(|u| u.is_dir()).map(PluginUi::Dir),
            Origin::Embedded(_, []) => None,
            Origin::Embedded(_, files) => Some(PluginUi::Embedded(files)),
        }
    }

    /// `embedded` or the dir.
    pub fn source_label(&self) -> String {
        match &self.origin {
            Origin::Embedded(..) => "embedded".into(),
            Origin::Dir(d) => d.display().to_string(),
        }
    }
}

/// Something wrong with a plugin that was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The plugin, when known.
    pub plugin: Option<String>,
    /// What went wrong, naming the file and field.
    pub message: String,
}

/// Every plugin found, and the problems met on the way.
pub fn discover(dirs: &[PathBuf], embedded: &[EmbeddedPlugin]) -> (Vec<Candidate>, Vec<Problem>) {
    let mut found: Vec<Candidate> = Vec::new();
    let mut problems = Vec::new();
    for e in embedded {
        let path = Path::new("<embedded>/manifest.jsonc");
        match Manifest::parse(&e.manifest, path) {
            Ok(manifest) => found.push(Candidate {
                manifest,
                origin: Origin::Embedded(e.wasm.clone(), e.ui),
            }),
            Err(err) => problems.push(Problem {
                plugin: None,
                message: err.to_string(),
            }),
        }
    }
    let embedded_count = found.len();
    for dir in dirs {
        for plugin_dir in plugin_dirs(dir, &mut problems) {
            let file = plugin_dir.join(MANIFEST_FILE);
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(Problem {
                        plugin: None,
                        message: format!("{}: cannot read the file: {e}", file.display()),
                    });
                    continue;
                }
            };
            let manifest = match Manifest::parse(&text, &file) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(Problem {
                        plugin: name_hint(&plugin_dir, dir),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let candidate = Candidate {
                manifest,
                origin: Origin::Dir(plugin_dir.clone()),
            };
            match found
                .iter()
                .position(|c| c.manifest.name == candidate.manifest.name)
            {
                Some(i)
                    if i < embedded_count && matches!(found[i].origin, Origin::Embedded(..)) =>
                {
                    tracing::info!(plugin = %candidate.manifest.name, dir = %plugin_dir.display(), "a plugin dir overrides the embedded plugin");
                    found[i] = candidate;
                }
                // Not attributed to the plugin: its first copy loads, so a
                // required plugin must not fail because of a shadowed one.
                Some(i) => problems.push(Problem {
                    plugin: None,
                    message: format!(
                        "{}: `{}` is shadowed by {} (the first plugin dir wins)",
                        file.display(),
                        candidate.manifest.name,
                        found[i].manifest_path().display()
                    ),
                }),
                None => found.push(candidate),
            }
        }
    }
    (found, problems)
}

/// The plugin dirs under `root`: `name/` and `@scope/name/` holding a manifest.
fn plugin_dirs(root: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(Problem {
                plugin: None,
                message: format!("{}: cannot read the plugin dir: {e}", root.display()),
            });
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut names: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    names.sort();
    for (name, path) in names {
        if name.starts_with('@') {
            let mut scoped: Vec<PathBuf> = std::fs::read_dir(&path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && p.join(MANIFEST_FILE).exists())
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            scoped.sort();
            out.extend(scoped);
        } else if path.join(MANIFEST_FILE).exists() {
            out.push(path);
        }
    }
    out
}

fn name_hint(plugin_dir: &Path, root: &Path) -> Option<String> {
    plugin_dir
        .strip_prefix(root)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}
