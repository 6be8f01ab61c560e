//! `buntime.jsonc`: which plugins run, with what config and grants; where
//! named databases live; the most any app may ask for (`apps.ceiling`, see
//! [`super::AppCeiling`]).
//!
//! ```jsonc
//! {
//!   "required": ["@buntime/plugin-authn"],
//!   "plugins": [
//!     "@buntime/plugin-metrics",                                // default config
//!     ["@buntime/plugin-authn", { "issuer": "https://sso.example.com" }],
//!     { "name": "my-plugin", "enabled": false },                // listed, not loaded
//!     { "name": "fetcher", "config": {}, "capabilities": { "http": ["https://api.example.com"] } },
//!     { "name": "@buntime/plugin-docs", "publicRoutes": [] },   // no route without a key
//!     { "name": "@buntime/plugin-gateway", "coreRoutes": "none" } // not on /_/api/*
//!   ]
//! }
//! ```
//!
//! Without a `plugins` list every discovered plugin whose manifest does not say
//! `"enabled": false` is loaded. With one, exactly the listed plugins are.
//! `capabilities` in an entry narrows what the plugin's manifest declares
//! (see [`crate::capabilities::narrow`]); it can never add to it.
//! `publicRoutes` in an entry replaces the manifest's: the operator decides
//! which of a plugin's routes answer without a key. `"coreRoutes": "none"`
//! keeps a plugin whose manifest asks for the core routes (the gateway's
//! CORS headers) off them; an entry cannot put a plugin on them.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{AppCeiling, ConfigError, json5_message};

/// The file name looked for in the working directory (or `RUNTIME_CONFIG`).
pub const RUNTIME_CONFIG_FILE: &str = "buntime.jsonc";

/// One plugin as the operator configured it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginEntry {
    /// The plugin's manifest name.
    pub name: String,
    /// Its config (an object; merged over the manifest's `config` defaults).
    pub config: serde_json::Map<String, Value>,
    /// `false` keeps it listed but unloaded.
    pub enabled: bool,
    /// The operator's narrowing of its grants.
    pub capabilities: Option<Value>,
    /// The operator's `publicRoutes`, replacing the manifest's.
    pub public_routes: Option<super::PublicRoutes>,
    /// `"coreRoutes": "none"`: not called for the core routes, whatever
    /// its manifest asks.
    pub off_core_routes: bool,
}

/// The parsed `buntime.jsonc`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeFile {
    /// Where it was read from (`None`: no file, all defaults).
    pub path: Option<PathBuf>,
    /// The `plugins` list, if given.
    pub plugins: Option<Vec<PluginEntry>>,
    /// Plugins whose failure to load stops the server.
    pub required: Vec<String>,
    /// Databases of the `sql` capability stored somewhere other than
    /// `<RUNTIME_DATA_DIR>/<name>.db`: name → file (relative paths are
    /// relative to this file's directory).
    pub databases: std::collections::BTreeMap<String, PathBuf>,
    /// The most any app's `worker.jsonc` may ask for (`apps.ceiling`).
    pub apps: AppCeiling,
}

impl RuntimeFile {
    /// Reads `path`; a missing file at the default location means defaults,
    /// a missing file that was asked for explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(e) => Err(ConfigError::new(
                path,
                "",
                format!("cannot read the file: {e}"),
            )),
        }
    }

    /// Parses the text of a `buntime.jsonc` (`file` is for errors).
    ///
    /// ```
    /// use buntime::config::RuntimeFile;
    /// let f = RuntimeFile::parse(r#"{ plugins: ["a", ["b", {x: 1}]], required: ["a"] }"#, "buntime.jsonc".as_ref()).unwrap();
    /// let plugins = f.plugins.unwrap();
    /// assert_eq!(plugins[1].config["x"], 1);
    /// let e = RuntimeFile::parse(r#"{ plugin: [] }"#, "buntime.jsonc".as_ref()).unwrap_err();
    /// assert!(e.to_string().contains("unknown key `plugin`"));
    /// ```
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let raw: Value =
            json5::from_str(text).map_err(|e| ConfigError::new(file, "", json5_message(e)))?;
        let err = |field: &str, msg: String| ConfigError::new(file, field, msg);
        let Value::Object(map) = raw else {
            return Err(err(
                "",
                "the file must hold one object, e.g. { \"plugins\": [] }".into(),
            ));
        };
        let mut out = RuntimeFile {
            path: Some(file.to_owned()),
            ..Self::default()
        };
        for (key, value) in map {
            match key.as_str() {
                "plugins" => {
                    let Value::Array(items) = value else {
                        return Err(err("plugins", "must be a list".into()));
                    };
                    let mut entries = Vec::new();
                    for (i, item) in items.into_iter().enumerate() {
                        let field = format!("plugins[{i}]");
                        let entry = parse_entry(item).map_err(|m| err(&field, m))?;
                        if entries.iter().any(|e: &PluginEntry| e.name == entry.name) {
                            return Err(err(&field, format!("`{}` is listed twice", entry.name)));
                        }
                        entries.push(entry);
                    }
                    out.plugins = Some(entries);
                }
                "required" => {
                    let names: Vec<String> = serde_json::from_value(value)
                        .map_err(|_| err("required", "must be a list of plugin names".into()))?;
                    out.required = names;
                }
                "databases" => out.databases = parse_databases(value, file)?,
                "apps" => out.apps = AppCeiling::parse_apps(&value, file)?,
                "$schema" => {}
                other => {
                    return Err(err(
                        other,
                        format!(
                            "unknown key `{other}` (allowed: `plugins`, `required`, `databases`, `apps`)"
                        ),
                    ));
                }
            }
        }
        if let Some(plugins) = &out.plugins {
            for name in &out.required {
                if !plugins.iter().any(|p| &p.name == name) {
                    return Err(err(
                        "required",
                        format!("`{name}` is required but not in `plugins`; add it there"),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The operator's entry for `name`, if listed.
    pub fn entry(&self, name: &str) -> Option<&PluginEntry> {
        self.plugins.as_ref()?.iter().find(|p| p.name == name)
    }

    /// Whether `name` is required.
    pub fn is_required(&self, name: &str) -> bool {
        self.required.iter().any(|r| r == name)
    }
}

/// `"databases": { "name": "file.db" | { "path": "file.db" } }`.
fn parse_databases(
    value: Value,
    file: &Path,
) -> Result<std::collections::BTreeMap<String, PathBuf>, ConfigError> {
    let Value::Object(map) = value else {
        return Err(ConfigError::new(
            file,
            "databases",
            "must be an object: { \"name\": { \"path\": \"file.db\" } }",
        ));
    };
    let base = file.parent().unwrap_or(Path::new("."));
    let mut out = std::collections::BTreeMap::new();
    for (name, v) in map {
        let field = format!("databases.{name}");
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(ConfigError::new(
                file,
                &field,
                "a database name is 1 to 64 letters, digits, `-` and `_`",
            ));
        }
        let path = match &v {
            Value::String(p) => Some(p.as_str()),
            Value::Object(o) if o.keys().all(|k| k == "path") => {
                o.get("path").and_then(Value::as_str)
            }
            _ => None,
        };
        let Some(path) = path.filter(|p| !p.is_empty()) else {
            return Err(ConfigError::new(
                file,
                &field,
                format!("expected a file path or {{ \"path\": \"file.db\" }}, found {v}"),
            ));
        };
        out.insert(name, base.join(path));
    }
    Ok(out)
}

fn parse_entry(item: Value) -> Result<PluginEntry, String> {
    let config_of = |v: Value| match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(serde_json::Map::new()),
        other => Err(format!(
            "a plugin's config must be an object, found {other}"
        )),
    };
    match item {
        Value::String(name) => Ok(PluginEntry {
            name,
            config: serde_json::Map::new(),
            enabled: true,
            capabilities: None,
            public_routes: None,
            off_core_routes: false,
        }),
        Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
            Ok([Value::String(name), config]) => Ok(PluginEntry {
                name,
                config: config_of(config)?,
                enabled: true,
                capabilities: None,
                public_routes: None,
                off_core_routes: false,
            }),
            _ => Err("expected [\"name\", { config }]".into()),
        },
        Value::Object(mut map) => {
            let Some(Value::String(name)) = map.remove("name") else {
                return Err("an object entry needs `name` (a string)".into());
            };
            let enabled = match map.remove("enabled") {
                None => true,
                Some(Value::Bool(b)) => b,
                Some(other) => {
                    return Err(format!("`enabled` must be true or false, found {other}"));
                }
            };
            let config = config_of(map.remove("config").unwrap_or(Value::Null))?;
            let capabilities = map.remove("capabilities");
            let public_routes = map
                .remove("publicRoutes")
                .map(|v| super::PublicRoutes::parse(&v).map_err(|m| format!("`publicRoutes`: {m}")))
                .transpose()?;
            let off_core_routes = match map.remove("coreRoutes") {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) if s == "none" => true,
                // The manifest's choice, as without the key.
                Some(Value::String(s)) if s == "headers" => false,
                Some(other) => {
                    return Err(format!(
                        "`coreRoutes` must be \"none\" (keep the plugin off the core routes) or \"headers\" (as its manifest says), found {other}"
                    ));
                }
            };
            if let Some(key) = map.keys().next() {
                return Err(format!(
                    "unknown key `{key}` (allowed: `name`, `enabled`, `config`, `capabilities`, `publicRoutes`, `coreRoutes`)"
                ));
            }
            Ok(PluginEntry {
                name,
                config,
                enabled,
                capabilities,
                public_routes,
                off_core_routes,
            })
        }
        other => Err(format!(
            "expected \"name\", [\"name\", {{config}}] or {{\"name\", ...}}, found {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuntimeFile, ConfigError> {
        RuntimeFile::parse(text, Path::new("/etc/buntime/buntime.jsonc"))
    }

    #[test]
    fn an_entry_can_keep_a_plugin_off_the_core_routes_but_not_put_it_on() {
        let f = parse(
            r#"{ plugins: [{ name: "gw", coreRoutes: "none" }, { name: "b", coreRoutes: "headers" }, "c"] }"#,
        )
        .unwrap();
        let off: Vec<bool> = f
            .plugins
            .unwrap()
            .iter()
            .map(|e| e.off_core_routes)
            .collect();
        assert_eq!(off, [true, false, false]);
        let e = parse(r#"{ plugins: [{ name: "gw", coreRoutes: "all" }] }"#).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("`coreRoutes` must be \"none\"") && text.contains("found \"all\""),
            "{text}"
        );
    }

    #[test]
    fn databases_are_paths_relative_to_the_file() {
        let f = parse(
            r#"{ databases: { analytics: "analytics.db", "arch-2_b": { path: "/srv/a.db" }, up: "../x.db" } }"#,
        )
        .unwrap();
        assert_eq!(
            f.databases["analytics"],
            Path::new("/etc/buntime/analytics.db")
        );
        assert_eq!(f.databases["arch-2_b"], Path::new("/srv/a.db"));
        // A path may go anywhere the operator likes; only names are restricted.
        assert_eq!(f.databases["up"], Path::new("/etc/buntime/../x.db"));
        assert!(parse("{}").unwrap().databases.is_empty());
    }

    #[test]
    fn databases_errors_name_the_file_and_the_field() {
        let cases = [
            (
                r#"{ databases: ["a.db"] }"#,
                "`databases`: must be an object",
            ),
            (
                r#"{ databases: { "../up": "x.db" } }"#,
                "`databases.../up`: a database name is 1 to 64 letters, digits, `-` and `_`",
            ),
            (
                r#"{ databases: { "": "x.db" } }"#,
                "`databases.`: a database name is 1 to 64",
            ),
            (
                r#"{ databases: { "a.b": "x.db" } }"#,
                "`databases.a.b`: a database name is 1 to 64",
            ),
            (
                r#"{ databases: { "tenant/x": "x.db" } }"#,
                "`databases.tenant/x`: a database name is 1 to 64",
            ),
            (
                r#"{ databases: { analytics: 5 } }"#,
                "`databases.analytics`: expected a file path or { \"path\": \"file.db\" }, found 5",
            ),
            (
                r#"{ databases: { analytics: "" } }"#,
                "`databases.analytics`: expected a file path",
            ),
            (
                r#"{ databases: { analytics: { file: "a.db" } } }"#,
                "`databases.analytics`: expected a file path or { \"path\": \"file.db\" }, found {\"file\":\"a.db\"}",
            ),
            (
                r#"{ databases: { analytics: { path: "a.db", mode: "ro" } } }"#,
                "`databases.analytics`: expected a file path",
            ),
            (
                r#"{ databases: { analytics: { path: 1 } } }"#,
                "`databases.analytics`: expected a file path",
            ),
        ];
        let long = format!(r#"{{ databases: {{ "{}": "x.db" }} }}"#, "a".repeat(65));
        for (text, needle) in cases
            .iter()
            .copied()
            .chain([(long.as_str(), "a database name is 1 to 64")])
        {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with("/etc/buntime/buntime.jsonc: `databases"),
                "{text}: {e}"
            );
            assert!(e.contains(needle), "{text}: `{needle}` not in {e}");
        }
    }
}
