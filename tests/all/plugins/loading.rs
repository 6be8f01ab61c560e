//! Discovery, manifests, selection and load order.

use buntime::plugins::EmbeddedPlugin;
use buntime_fixtures as fx;
use serde_json::json;

use super::{config, install_plugin, kit, loaded, not_loaded, plugins};
use crate::server::TestServer;

#[tokio::test]
async fn broken_manifests_and_modules_are_reported_with_file_and_field() {
    let server = TestServer::start_plugins(|root| {
        install_plugin(
            root,
            "badversion",
            r#"{ "name": "badversion", "version": "one" }"#,
            fx::PLUGIN_KIT,
        );
        install_plugin(
            root,
            "typo",
            r#"{ "name": "typo", "version": "1.0.0", "bsae": "x" }"#,
            fx::PLUGIN_KIT,
        );
        let d = root.join("plugins/notwasm");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(
            d.join("manifest.jsonc"),
            r#"{ "name": "notwasm", "version": "1.0.0" }"#,
        )
        .expect("w");
        std::fs::write(d.join("plugin.wasm"), "definitely not wasm").expect("w");
        install_plugin(
            root,
            "liar",
            r#"{ "name": "liar", "version": "1.0.0", "services": ["missing_fn"] }"#,
            fx::PLUGIN_KIT,
        );
        kit(root, "capless", r#""capabilities": { "disk": true }"#);
        kit(
            root,
            "badpattern",
            r#""capabilities": { "http": ["ftp://x.example"] }"#,
        );
        kit(root, "good", "");
    })
    .await;
    let list = plugins(&server).await;
    let problems = list["problems"].to_string();
    assert!(
        problems.contains("badversion/manifest.jsonc: `version`"),
        "{problems}"
    );
    assert!(problems.contains("unknown field `bsae`"), "{problems}");
    let notwasm = not_loaded(&list, "notwasm")["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert!(
        notwasm.contains("plugin.wasm") && notwasm.contains("not a valid WebAssembly module"),
        "{notwasm}"
    );
    let liar = not_loaded(&list, "liar")["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert!(liar.contains("`services`: `missing_fn`"), "{liar}");
    let capless = not_loaded(&list, "capless")["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert!(
        capless.contains("unknown capability `disk`") && capless.contains("`capabilities`"),
        "{capless}"
    );
    let badpattern = not_loaded(&list, "badpattern")["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert!(
        badpattern.contains("ftp://x.example") && badpattern.contains("http or https"),
        "{badpattern}"
    );
    loaded(&list, "good");
    server.stop().await;
}

#[tokio::test]
async fn load_order_follows_dependencies() {
    let server = TestServer::start_plugins(|root| {
        kit(root, "top", r#""dependencies": ["left", "right"]"#);
        kit(root, "left", r#""dependencies": ["base"]"#);
        kit(
            root,
            "right",
            r#""dependencies": ["base"], "optionalDependencies": ["ghost"]"#,
        );
        kit(root, "base", "");
        kit(root, "cycle-a", r#""dependencies": ["cycle-b"]"#);
        kit(root, "cycle-b", r#""dependencies": ["cycle-a"]"#);
        kit(root, "orphan", r#""dependencies": ["ghost"]"#);
    })
    .await;
    let list = plugins(&server).await;
    assert_eq!(list["order"], json!(["base", "left", "right", "top"]));
    let a = not_loaded(&list, "cycle-a");
    assert_eq!(a["state"], "skipped");
    assert_eq!(a["reason"], "dependency cycle: cycle-a → cycle-b → cycle-a");
    let orphan = not_loaded(&list, "orphan");
    assert!(
        orphan["reason"]
            .as_str()
            .expect("reason")
            .contains("requires `ghost`"),
        "{orphan}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_missing_dependency_of_a_required_plugin_stops_the_server() {
    let err = TestServer::try_start_plugins(Vec::new(), |root| {
        kit(root, "needy", r#""dependencies": ["ghost"]"#);
        config(root, r#"{ required: ["needy"], plugins: ["needy"] }"#);
    })
    .await
    .err()
    .expect("must fail");
    assert!(err.to_string().contains("requires `ghost`"), "{err}");
}

#[tokio::test]
async fn the_same_base_twice_is_refused() {
    let server = TestServer::start_plugins(|root| {
        kit(root, "first", r#""base": "shared""#);
        kit(root, "second", r#""base": "shared""#);
    })
    .await;
    let list = plugins(&server).await;
    loaded(&list, "first");
    let second = not_loaded(&list, "second")["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert!(
        second.contains("`base`: `shared` is already used by `first`"),
        "{second}"
    );
    server.stop().await;
}

#[tokio::test]
async fn scoped_dirs_embedded_plugins_and_overrides() {
    let embedded = |name: &str| EmbeddedPlugin {
        manifest: format!(
            r#"{{ "name": "{name}", "version": "0.1.0", "base": "{}" }}"#,
            name.rsplit('/').next().unwrap_or(name)
        )
        .into(),
        wasm: std::fs::read(fx::PLUGIN_KIT).expect("kit").into(),
        ui: &[],
    };
    let server = TestServer::try_start_plugins(
        vec![embedded("@core/plain"), embedded("@core/replaced")],
        |root| {
            install_plugin(
                root,
                "@core/replaced",
                r#"{ "name": "@core/replaced", "version": "2.0.0", "base": "replaced" }"#,
                fx::PLUGIN_KIT,
            );
            kit(root, "@acme/scoped", "");
        },
    )
    .await
    .expect("server");
    let list = plugins(&server).await;
    assert_eq!(loaded(&list, "@core/plain")["source"], "embedded");
    let replaced = loaded(&list, "@core/replaced");
    assert_eq!(replaced["version"], "2.0.0");
    assert!(
        replaced["source"]
            .as_str()
            .expect("source")
            .ends_with("@core/replaced")
    );
    loaded(&list, "@acme/scoped");
    server.stop().await;
}

#[tokio::test]
async fn disabled_plugins_and_configuration_errors() {
    let server = TestServer::start_plugins(|root| {
        kit(root, "off-in-manifest", r#""enabled": false"#);
        kit(root, "on", "");
    })
    .await;
    let list = plugins(&server).await;
    assert_eq!(not_loaded(&list, "off-in-manifest")["state"], "disabled");
    loaded(&list, "on");
    server.stop().await;

    let server = TestServer::start_plugins(|root| {
        kit(root, "a", "");
        kit(root, "b", "");
        config(root, r#"{ plugins: [{ name: "a", enabled: false }, "b"] }"#);
    })
    .await;
    let list = plugins(&server).await;
    assert_eq!(not_loaded(&list, "a")["state"], "disabled");
    assert_eq!(list["order"], json!(["b"]));
    server.stop().await;

    let err = TestServer::try_start_plugins(Vec::new(), |root| {
        config(root, r#"{ plugins: ["a"], extra: 1 }"#);
    })
    .await
    .err()
    .expect("an unknown key must fail");
    assert!(
        err.to_string()
            .contains("buntime.jsonc: `extra`: unknown key"),
        "{err}"
    );

    let server = TestServer::start_plugins(|root| {
        kit(root, "narrowed", r#""capabilities": { "state": true }"#);
        config(root, r#"{ plugins: [{ name: "narrowed", capabilities: { "http": ["https://x.example"] } }] }"#);
    })
    .await;
    let list = plugins(&server).await;
    let reason = not_loaded(&list, "narrowed")["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert!(
        reason.contains("not declared in the plugin's manifest"),
        "{reason}"
    );
    server.stop().await;
}
