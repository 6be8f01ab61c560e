//! The server's [`AppCheck`]: what `fs_check_app` (the deployments plugin's
//! validation of an unpacked upload) runs — the checks `buntime check`
//! applies to an installed app: `worker.jsonc` parses, the operator's
//! ceiling admits it, and its module compiles and exports `handle` (or it is
//! a static app with an entry file).

use std::path::Path;

use serde_json::{Value, json};

use super::{AppKind, load_settings};
use crate::capabilities::AppCheck;
use crate::config::AppCeiling;
use crate::routing::{AppVersion, valid_name};
use crate::wasm::{Engine, GuestOptions};

/// Checks app dirs with the server's engine and ceiling.
pub(crate) struct ServerAppCheck {
    pub(crate) engine: Engine,
    pub(crate) ceiling: AppCeiling,
}

impl AppCheck for ServerAppCheck {
    fn check(&self, dir: &Path, name: &str, version: Option<&str>) -> Result<Value, String> {
        if !valid_name(name) {
            return Err(format!(
                "`{name}` is not a valid app name: letters, digits, `-`, `_` and `.`, not starting with `.`"
            ));
        }
        let version = version
            .map(|v| {
                semver::Version::parse(v)
                    .map_err(|e| format!("`{v}` is not a semantic version (e.g. 1.2.0): {e}"))
            })
            .transpose()?;
        let app = AppVersion::new(name, version, dir.to_owned());
        let (config, kind) = load_settings(&app, &self.ceiling).map_err(|e| e.to_string())?;
        match kind {
            Some(AppKind::Static(entry)) => Ok(json!({"kind": "static", "entry": entry})),
            Some(AppKind::Wasm(file)) => {
                let bytes = app
                    .open_dir()
                    .and_then(|d| d.read(&file))
                    .map_err(|e| e.to_string())?;
                let options = GuestOptions::new(app.key()).memory_limit(config.memory as usize);
                let module = self
                    .engine
                    .load(&bytes, options)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                if !module.has_export("handle") {
                    return Err(format!("{} does not export `handle`", file.display()));
                }
                Ok(json!({"kind": "wasm", "entry": file.display().to_string()}))
            }
            None => Err("no index.html and no .wasm module in the app".into()),
        }
    }
}
