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
    let (at, _) = find(&rules, "GET", "/b/x").unwrap();
    assert_eq!(rules[at].spec.id.as_deref(), Some("b"));
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

/// `n` rules `^/<prefix><i>/(.*)$` with `pattern` in front of the capture.
fn table(n: usize, pattern: &str) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| json!({"pattern": format!("^/r{i}/{pattern}(.*)$"), "target": "http://svc"}))
        .collect()
}

#[test]
fn a_route_table_is_held_to_its_budget_of_compiled_patterns() {
    // Plain rules take the smallest tier: the most a table may have fit.
    let plain = parse_routes(table(MAX_ROUTES, ""), &[]).expect("plain rules fit");
    assert!(plain.iter().all(|r| r.charged == SIZE_TIERS[0]));
    assert!(MAX_ROUTES * SIZE_TIERS[0] <= TABLE_BUDGET);
    let over = parse_routes(table(MAX_ROUTES + 1, ""), &[]).unwrap_err();
    assert!(over.0.contains("more than 2000"), "{over}");

    // A Unicode class repeated needs the largest tier: the budget holds
    // 16 of them, and the 17th names itself and the budget.
    let heavy = r"\w{5}";
    let sixteen = parse_routes(table(16, heavy), &[]).expect("16 fit");
    assert!(sixteen.iter().all(|r| r.charged == REGEX_SIZE_LIMIT));
    let err = parse_routes(table(17, heavy), &[]).unwrap_err();
    assert!(err.0.starts_with("`routes[16]`"), "{err}");
    assert!(err.0.contains("16 MiB"), "{err}");

    // Over the largest tier alone: the regex's own refusal, as in config.
    let err = parse_routes(table(1, r"\w{100}"), &[]).unwrap_err();
    assert!(err.0.contains("is not a valid regex"), "{err}");
    assert!(Rule::new(serde_json::from_value(table(1, r"\w{100}").remove(0)).unwrap()).is_err());
}

#[test]
fn rules_carried_over_from_the_installed_table_match_as_before() {
    let first = parse_routes(table(3, ""), &[]).expect("table");
    let mut next = table(3, "");
    next[1] = json!({"pattern": "^/changed/(.*)$", "target": "http://svc"});
    let second = parse_routes(next, &first).expect("table");
    for (a, b) in [(&first[0], &second[0]), (&first[2], &second[2])] {
        assert_eq!(a.spec, b.spec);
        assert_eq!(a.regex.as_str(), b.regex.as_str());
    }
    assert!(second[1].matches("GET", "/changed/x").is_some());
    assert!(second[0].matches("GET", "/r0/x").is_some());
    // Ids stay unique across the table.
    let twice = vec![
        json!({"id": "a", "pattern": "^/a", "target": "http://svc"}),
        json!({"id": "a", "pattern": "^/b", "target": "http://svc"}),
    ];
    let err = parse_routes(twice, &[]).unwrap_err();
    assert!(
        err.0.starts_with("`routes[1]`") && err.0.contains("`a`"),
        "{err}"
    );
}

/// A rule whose pattern is a literal prefix is matched without its regex:
/// for every path and template, exactly what the regex gives.
#[test]
fn a_prefix_rule_matches_and_expands_as_its_regex_does() {
    const PATTERNS: [&str; 8] = [
        "^/up/(.*)$",
        "^/up/",
        "^/a-b_c~d:e@f=g,h;i!j%k&l'(.*)$",
        "^/x",
        // Not prefixes: run by the regex, whatever they look like.
        "^/a.b/(.*)$",
        "/up/(.*)$",
        "^/up/(.*)",
        "^/up/(.+)$",
    ];
    const TEMPLATES: [&str; 9] = [
        "http://svc/$1",
        "http://svc:8080",
        "http://svc/p/${1}x",
        "http://svc/$0",
        "http://svc/$2/$name/${x}",
        "http://svc/$$1/$",
        "http://svc/$1$1",
        "http://$1.svc/a",
        "http://svc/{1}",
    ];
    const PIECES: [&str; 14] = [
        "/", "up", "up/", "a", "é", "\n", "$1", "..", "?", "x", "a.b", "%", "-", "'",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    assert!(Prefix::of("^/up/(.*)$").is_some_and(|p| p.rest));
    assert!(Prefix::of("^/up/").is_some_and(|p| !p.rest));
    for p in [
        "^/a.b/(.*)$",
        "/up/(.*)$",
        "^/up/(.*)",
        "^/up/(.+)$",
        "^",
        "^(.*)$",
    ] {
        assert!(Prefix::of(p).is_none(), "{p}");
    }
    // Every pattern with every template, with and without a rewrite.
    let mut rules = Vec::new();
    for pattern in PATTERNS {
        for template in TEMPLATES {
            for rewrite in [None, Some("/r/$1/${1}".to_owned())] {
                rules.extend(Rule::new(RuleSpec {
                    pattern: pattern.into(),
                    target: template.into(),
                    rewrite,
                    ..RuleSpec::default()
                }));
            }
        }
    }
    let mut by_prefix = 0;
    for _ in 0..20_000 {
        let r = &rules[next(rules.len())];
        let (pattern, template) = (&r.spec.pattern, &r.spec.target);
        let mut path = String::from(if next(4) == 0 { "" } else { "/up/" });
        for _ in 0..next(6) {
            path.push_str(PIECES[next(PIECES.len())]);
        }
        let fast = r.matches("GET", &path);
        let slow = r.by_regex(&path);
        assert_eq!(fast.is_some(), slow.is_some(), "{pattern} on {path:?}");
        let (Some(fast), Some(slow)) = (fast, slow) else {
            continue;
        };
        if matches!(fast, Matched::Prefix { .. }) {
            by_prefix += 1;
        }
        let query = (next(2) == 0).then_some("q=1");
        assert_eq!(
            r.url(&fast, &path, query),
            r.url(&slow, &path, query),
            "{pattern} / {template} on {path:?}"
        );
    }
    assert!(by_prefix > 2_000, "only {by_prefix} matched by prefix");
}
