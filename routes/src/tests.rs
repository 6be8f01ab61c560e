use serde_json::json;

use super::*;

fn rule(v: serde_json::Value) -> Rule {
    Rule::new(serde_json::from_value(v).unwrap()).unwrap()
}

fn url(r: &Rule, method: &str, path: &str, query: Option<&str>) -> Option<String> {
    r.matches(method, path).map(|c| r.url(&c, path, query))
}

#[test]
fn targets_rewrites_and_captures() {
    let full = rule(json!({"pattern": "^/api/(.*)$", "target": "http://svc:8080/$1"}));
    assert_eq!(
        url(&full, "GET", "/api/items/1", Some("a=1")).as_deref(),
        Some("http://svc:8080/items/1?a=1")
    );
    let bare = rule(json!({"pattern": "^/api/", "target": "http://svc:8080"}));
    assert_eq!(
        url(&bare, "GET", "/api/x", None).as_deref(),
        Some("http://svc:8080/api/x")
    );
    let rewrite = rule(json!({
        "pattern": "^/users/(?P<id>[0-9]+)(/.*)?$",
        "target": "http://svc:8080/",
        "rewrite": "/v2/people/${id}${2}"
    }));
    assert_eq!(
        url(&rewrite, "GET", "/users/42/posts", Some("q")).as_deref(),
        Some("http://svc:8080/v2/people/42/posts?q")
    );
    let with_query = rule(json!({"pattern": "^/s$", "target": "http://svc/search?src=proxy"}));
    assert_eq!(
        url(&with_query, "GET", "/s", Some("q=1")).as_deref(),
        Some("http://svc/search?src=proxy&q=1")
    );
    assert_eq!(url(&full, "GET", "/other", None), None);
}

#[test]
fn methods_are_matched_in_upper_case() {
    let r = rule(json!({"pattern": "^/", "target": "http://svc", "methods": ["get", "Post"]}));
    assert!(r.matches("GET", "/").is_some());
    assert!(r.matches("POST", "/").is_some());
    assert!(r.matches("DELETE", "/").is_none());
}

#[test]
fn bad_rules_name_the_field() {
    let cases = [
        (
            json!({"pattern": "(", "target": "http://svc"}),
            "`pattern` `(` is not a valid regex",
        ),
        (json!({"pattern": "^/", "target": "svc:8080"}), "`target`"),
        (json!({"pattern": "^/", "target": "http:///x"}), "`target`"),
        (
            json!({"pattern": "^/", "target": "http://svc", "rewrite": "x"}),
            "`rewrite`",
        ),
        (
            json!({"pattern": "^/", "target": "http://svc", "methods": ["G T"]}),
            "`methods`",
        ),
        (
            json!({"pattern": "^/", "target": "http://svc", "headers": {"a b": "1"}}),
            "`headers`",
        ),
        (
            json!({"pattern": "^/", "target": "http://svc", "timeoutMs": 0}),
            "`timeoutMs`",
        ),
        (
            json!({"pattern": "^/", "target": "http://svc", "id": "a/b"}),
            "`id`",
        ),
        (json!({"pattern": "", "target": "http://svc"}), "`pattern`"),
    ];
    for (spec, want) in cases {
        let err = Rule::new(serde_json::from_value(spec.clone()).unwrap()).unwrap_err();
        assert!(err.0.contains(want), "{spec}: {err}");
    }
    // A pattern whose automaton would be huge is refused, not compiled.
    let huge = Rule::new(RuleSpec {
        pattern: r"\w{1000}\w{1000}".into(),
        target: "http://svc".into(),
        ..RuleSpec::default()
    });
    assert!(huge.is_err());
}

#[test]
fn config_lists_get_ids_and_refuse_duplicates() {
    let rules = parse_list(Some(&json!([
        {"pattern": "^/a", "target": "http://a"},
        {"id": "b", "pattern": "^/b", "target": "http://b"}
    ])))
    .unwrap();
    assert_eq!(rules[0].spec.id.as_deref(), Some("static-0"));
    assert_eq!(rules[1].spec.id.as_deref(), Some("b"));
    let dup = parse_list(Some(&json!([
        {"id": "b", "pattern": "^/a", "target": "http://a"},
        {"id": "b", "pattern": "^/b", "target": "http://b"}
    ])));
    assert!(dup.unwrap_err().0.contains("used twice"));
    let err = parse_list(Some(
        &json!([{"pattern": "^/a", "target": "http://a", "extra": 1}]),
    ));
    assert!(err.unwrap_err().0.contains("rules[0]"));
    let (r, _) = find(&rules, "GET", "/b/x").unwrap();
    assert_eq!(r.spec.id.as_deref(), Some("b"));
}

#[test]
fn dot_segments_are_found_however_written() {
    for p in [
        "/a/../b",
        "/a/./b",
        "/a/%2e%2E/b",
        "/a/..",
        "/a\\..\\b",
        "/.%2e/x",
        "/%2E./x",
        "/%2e/x",
    ] {
        assert!(has_dot_segment(p), "{p}");
    }
    for p in [
        "/a/b",
        "/a/..b/c",
        "/a/b.c",
        "/.well-known/x",
        "/",
        "/éé/x",
        "/%2e%2f/x",
        "/...",
        "/.%2e%2e",
    ] {
        assert!(!has_dot_segment(p), "{p}");
    }
}
