//! Unit tests of host normalisation, config checks and matching.

use serde_json::json;

use super::*;

fn table(hosts: Value, default: Value) -> Hosts {
    Hosts::parse(Some(&hosts), Some(&default)).expect("valid config")
}

fn app_and_tenant(route: Route<'_>) -> Option<(String, Option<String>)> {
    match route {
        Route::App { target, tenant } => Some((target.app.clone(), tenant)),
        _ => None,
    }
}

fn matched(t: &Hosts, host: &str) -> Option<(String, Option<String>)> {
    app_and_tenant(t.route(normalize(host).as_deref(), "/"))
}

#[test]
fn normalize_lowercases_strips_port_and_final_dot() {
    assert_eq!(
        normalize("Shop.Example.COM:8080").as_deref(),
        Some("shop.example.com")
    );
    assert_eq!(
        normalize("shop.example.com.").as_deref(),
        Some("shop.example.com")
    );
    assert_eq!(normalize("localhost").as_deref(), Some("localhost"));
}

#[test]
fn normalize_refuses_malformed_hosts() {
    for bad in [
        "",
        ":80",
        "a..b",
        ".a.b",
        "a.b:",
        "a.b:x",
        "a.b:123456",
        "a b.com",
        "a_b.com",
        "-a.com",
        "a-.com",
        "[::1]:80",
        "[::1]",
        "127.0.0.1",
        "127.0.0.1:80",
        "user@a.com",
        "a.com/x",
        "a.com:80:80",
        "é.com",
    ] {
        assert_eq!(normalize(bad), None, "{bad:?}");
    }
    assert_eq!(normalize(&format!("{}.com", "a".repeat(64))), None);
    assert_eq!(normalize(&"a.".repeat(128)), None);
}

#[test]
fn exact_hosts_win_over_wildcards() {
    let t = table(
        json!({"shop.example.com": "shop", "*.example.com": "tenants"}),
        Value::Null,
    );
    assert_eq!(matched(&t, "shop.example.com"), Some(("shop".into(), None)));
    assert_eq!(
        matched(&t, "SHOP.example.com:443"),
        Some(("shop".into(), None))
    );
    assert_eq!(
        matched(&t, "acme.example.com"),
        Some(("tenants".into(), Some("acme".into())))
    );
}

#[test]
fn a_wildcard_matches_exactly_one_label() {
    let t = table(json!({"*.example.com": "tenants"}), Value::Null);
    assert_eq!(matched(&t, "example.com"), None);
    assert_eq!(matched(&t, "a.b.example.com"), None);
    assert_eq!(matched(&t, "aexample.com"), None);
    assert_eq!(matched(&t, "a.example.com.evil.org"), None);
    assert_eq!(matched(&t, "a.example.co"), None);
    assert_eq!(t.route(None, "/"), Route::Unknown);
}

#[test]
fn any_depth_wildcards_match_deeper_and_name_no_tenant() {
    let t = table(
        json!({"*.example.com": {"app": "deep", "anyDepth": true, "tenant": false}}),
        Value::Null,
    );
    assert_eq!(matched(&t, "a.b.example.com"), Some(("deep".into(), None)));
    assert_eq!(matched(&t, "a.example.com"), Some(("deep".into(), None)));
    assert_eq!(matched(&t, "example.com"), None);
    let e = Hosts::parse(
        Some(&json!({"*.example.com": {"app": "deep", "anyDepth": true}})),
        None,
    )
    .expect_err("a tenant from several labels");
    assert!(e.0.contains("\"tenant\": false"), "{e}");
}

#[test]
fn the_most_specific_wildcard_wins() {
    let t = table(
        json!({"*.example.com": "world", "*.eu.example.com": "europe"}),
        Value::Null,
    );
    assert_eq!(
        matched(&t, "a.eu.example.com"),
        Some(("europe".into(), Some("a".into())))
    );
    assert_eq!(
        matched(&t, "eu.example.com"),
        Some(("world".into(), Some("eu".into())))
    );
}

#[test]
fn a_label_that_is_no_tenant_matches_nothing() {
    let t = table(json!({"*.example.com": "tenants"}), json!("fallback"));
    // 63 characters is a valid label and tenant; nothing longer parses.
    let long = "a".repeat(63);
    assert_eq!(
        matched(&t, &format!("{long}.example.com")),
        Some(("tenants".into(), Some(long)))
    );
    assert!(!valid_tenant("a.b"));
    assert!(!valid_tenant(""));
    assert!(!valid_tenant(&"a".repeat(65)));
}

#[test]
fn the_default_serves_unknown_and_malformed_hosts_without_a_tenant() {
    let t = table(json!({"*.example.com": "tenants"}), json!("fallback"));
    assert_eq!(matched(&t, "other.org"), Some(("fallback".into(), None)));
    assert_eq!(
        matched(&t, "a.b.example.com"),
        Some(("fallback".into(), None))
    );
    assert_eq!(
        app_and_tenant(t.route(None, "/x")),
        Some(("fallback".into(), None))
    );
}

#[test]
fn a_path_prefix_covers_whole_segments() {
    let t = table(
        json!({"example.com": {"app": "shop@1", "pathPrefix": "/shop/"}}),
        Value::Null,
    );
    let host = Some("example.com");
    assert!(matches!(t.route(host, "/shop"), Route::App { .. }));
    assert!(matches!(t.route(host, "/shop/cart"), Route::App { .. }));
    assert_eq!(t.route(host, "/shopping"), Route::OutsidePrefix);
    assert_eq!(t.route(host, "/"), Route::OutsidePrefix);
}

#[test]
fn bad_configs_are_refused_naming_the_entry() {
    let cases = [
        (
            json!({"shop.example.com:80": "shop"}),
            "shop.example.com:80",
        ),
        (json!({"https://a.com": "shop"}), "https://a.com"),
        (json!({"*.com": "shop"}), "*.com"),
        (json!({"a.*.com": "shop"}), "a.*.com"),
        (json!({"*.127.0.0.1": "shop"}), "*.127.0.0.1"),
        (json!({"a.com": "../etc"}), "../etc"),
        (json!({"a.com": "_"}), "`_`"),
        (json!({"a.com": "shop/x"}), "shop/x"),
        (
            json!({"a.com": {"app": "shop", "pathPrefix": "shop"}}),
            "pathPrefix",
        ),
        (
            json!({"a.com": {"app": "shop", "pathPrefix": "/_/api"}}),
            "pathPrefix",
        ),
        (
            json!({"a.com": {"app": "shop", "pathPrefix": "/a/../b"}}),
            "pathPrefix",
        ),
        (
            json!({"a.com": {"app": "shop", "anyDepth": true}}),
            "wildcards",
        ),
        (json!({"a.com": {"app": "shop", "typo": 1}}), "typo"),
        (json!({"a.com": 5}), "a.com"),
        (json!(["a.com"]), "`hosts`"),
    ];
    for (hosts, needle) in cases {
        let e = Hosts::parse(Some(&hosts), None).expect_err(&hosts.to_string());
        assert!(e.0.contains(needle), "{hosts}: {e}");
    }
    assert!(Hosts::parse(None, Some(&json!("a b"))).is_err());
}

#[test]
fn apps_with_versions_are_accepted() {
    let t = table(
        json!({"a.com": "shop@^1.2.0", "b.com": "blog@2"}),
        Value::Null,
    );
    assert_eq!(matched(&t, "a.com"), Some(("shop@^1.2.0".into(), None)));
    assert!(!t.is_empty());
    assert!(Hosts::parse(None, None).expect("empty").is_empty());
}
