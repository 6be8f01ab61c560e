//! Plugin selection, ordering and failure reporting in `PluginHost::build`:
//! plugin dirs in a temp dir, modules written as WAT, no server.

use std::path::Path;
use std::sync::Arc;

use super::{NotLoaded, NotLoadedState, PluginError, PluginHost, PluginSources};
use crate::capabilities::HostServices;
use crate::plugins::discovery::EmbeddedPlugin;
use crate::wasm::{Engine, EngineConfig};

/// A module with no hooks: selection does not look at what it does.
const MODULE: &str = r#"(module (memory (export "memory") 1))"#;

/// Writes `plugins/<dir>/` with a manifest of `name` plus `extra` fields.
fn plugin(root: &Path, dir: &str, name: &str, extra: &str) {
    let d = root.join("plugins").join(dir);
    std::fs::create_dir_all(&d).expect("mkdir");
    let manifest = format!(r#"{{ "name": "{name}", "version": "1.0.0"{extra} }}"#);
    std::fs::write(d.join("manifest.jsonc"), manifest).expect("manifest");
    std::fs::write(d.join("plugin.wasm"), MODULE).expect("module");
}

fn host(root: &Path, config: Option<&str>, embedded: Vec<EmbeddedPlugin>) -> Arc<PluginHost> {
    let config_file = config.map(|text| {
        let path = root.join("buntime.jsonc");
        std::fs::write(&path, text).expect("buntime.jsonc");
        (path, true)
    });
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let sources = PluginSources {
        dirs: vec![root.join("plugins")],
        embedded,
        config_file,
        ..PluginSources::default()
    };
    PluginHost::new(engine, HostServices::new(None, None), sources)
}

fn core(name: &str) -> EmbeddedPlugin {
    EmbeddedPlugin {
        manifest: format!(r#"{{ "name": "{name}", "version": "1.0.0" }}"#).into(),
        wasm: MODULE.as_bytes().to_vec().into(),
        ui: &[],
    }
}

fn loaded(host: &PluginHost) -> Vec<String> {
    let chain = host.current();
    chain
        .plugins
        .iter()
        .map(|p| p.manifest.name.clone())
        .collect()
}

fn not_loaded(host: &PluginHost, name: &str) -> NotLoaded {
    let chain = host.current();
    let found = chain.not_loaded.iter().find(|n| n.name == name).cloned();
    found.unwrap_or_else(|| panic!("`{name}` is not in not_loaded: {:?}", chain.not_loaded))
}

#[tokio::test]
async fn without_a_list_every_enabled_plugin_loads_in_dependency_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    // Directory order puts the dependent first; the chain must not.
    plugin(root, "a-user", "user", r#", "dependencies": ["base"]"#);
    plugin(root, "b-base", "base", "");
    plugin(root, "c-off", "off", r#", "enabled": false"#);
    plugin(root, "d-orphan", "orphan", r#", "dependencies": ["ghost"]"#);
    let host = host(root, None, Vec::new());
    host.start().await.expect("start");

    assert_eq!(loaded(&host), ["base", "user"]);
    let off = not_loaded(&host, "off");
    assert_eq!(off.state, NotLoadedState::Disabled);
    assert!(off.reason.contains("`enabled: false`"), "{}", off.reason);
    let orphan = not_loaded(&host, "orphan");
    assert_eq!(orphan.state, NotLoadedState::Skipped);
    assert!(orphan.reason.contains("ghost"), "{}", orphan.reason);
}

#[tokio::test]
async fn a_list_loads_exactly_the_listed_plugins_and_core_ones_unless_turned_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    plugin(root, "listed", "listed", "");
    plugin(root, "unlisted", "unlisted", "");
    plugin(root, "paused", "paused", "");
    let config = r#"{ "plugins": [
        "listed",
        { "name": "paused", "enabled": false },
        "missing",
        { "name": "core-off", "enabled": false }
    ] }"#;
    let host = host(root, Some(config), vec![core("core-on"), core("core-off")]);
    host.start().await.expect("start");

    let mut names = loaded(&host);
    names.sort();
    assert_eq!(names, ["core-on", "listed"]);
    assert_eq!(not_loaded(&host, "paused").state, NotLoadedState::Disabled);
    assert_eq!(
        not_loaded(&host, "core-off").state,
        NotLoadedState::Disabled
    );
    let missing = not_loaded(&host, "missing");
    assert_eq!(missing.state, NotLoadedState::Failed);
    assert!(
        missing.reason.contains("not installed"),
        "{}",
        missing.reason
    );
    // Not listed: not loaded, and not reported either (the list is the
    // operator's whole choice).
    assert!(
        host.current()
            .not_loaded
            .iter()
            .all(|n| n.name != "unlisted")
    );
}

#[tokio::test]
async fn a_base_taken_twice_fails_the_second_plugin_naming_the_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    // A base needs routes: a `ui/` dir stands in for a `handle` export.
    plugin(root, "one", "one", r#", "base": "shared""#);
    plugin(root, "two", "two", r#", "base": "shared""#);
    for dir in ["one", "two"] {
        let ui = root.join("plugins").join(dir).join("ui");
        std::fs::create_dir_all(&ui).expect("ui");
        std::fs::write(ui.join("index.html"), "<p>ui</p>").expect("index");
    }
    let host = host(root, None, Vec::new());
    host.start().await.expect("start");

    assert_eq!(loaded(&host), ["one"]);
    let two = not_loaded(&host, "two");
    assert_eq!(two.state, NotLoadedState::Failed);
    assert!(
        two.reason.contains("`shared` is already used by `one`"),
        "{}",
        two.reason
    );
}

#[tokio::test]
async fn a_required_plugin_that_cannot_load_fails_the_start_and_a_disabled_one_does_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    plugin(root, "broken", "broken", "");
    std::fs::write(root.join("plugins/broken/plugin.wasm"), "(module").expect("bad module");
    let host = host(root, Some(r#"{ "required": ["broken"] }"#), Vec::new());
    let err = host.start().await.expect_err("a required plugin failed");
    let PluginError::Required { plugin, reason } = &err else {
        panic!("expected Required, got {err:?}");
    };
    assert_eq!(plugin, "broken");
    assert!(reason.contains("plugin.wasm"), "{reason}");

    let host = self::host(
        root,
        Some(r#"{ "required": ["broken"], "plugins": [{ "name": "broken", "enabled": false }] }"#),
        Vec::new(),
    );
    host.start()
        .await
        .expect("a disabled required plugin is not an error");
    assert_eq!(not_loaded(&host, "broken").state, NotLoadedState::Disabled);
}
