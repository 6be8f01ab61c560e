//! The pure policy logic: combining algorithms, globs, regexes, CIDR
//! blocks, time windows, path normalisation and policy validation.

use std::net::IpAddr;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::glob::{Glob, Kind};
use crate::ip::{AddressList, parse_client};
use crate::pdp::{Algorithm, Context, Decision, Outcome, PolicySet, app_and_path, normalize_path};
use crate::policy::{Compiled, Effect, Policy};

fn compile(v: Value) -> Compiled {
    Policy::from_json(v)
        .and_then(Policy::compile)
        .unwrap_or_else(|e| panic!("policy: {e}"))
}

fn refused(v: Value) -> String {
    match Policy::from_json(v).and_then(Policy::compile) {
        Ok(p) => panic!("accepted {:?}", p.policy),
        Err(e) => e,
    }
}

/// A policy `id` at `priority` of one of four kinds: `P` permits and
/// applies, `D` denies and applies, `n` permits but its condition does not
/// hold (not applicable), `x` denies but its subject does not match.
fn mixed(id: &str, priority: i64, kind: char) -> Compiled {
    let (effect, subjects, conditions) = match kind {
        'P' => ("permit", json!([]), json!([])),
        'D' => ("deny", json!([]), json!([])),
        'n' => (
            "permit",
            json!([]),
            json!([{ "type": "ip", "allowlist": ["192.0.2.0/24"] }]),
        ),
        'x' => ("deny", json!([{ "id": "someone-else" }]), json!([])),
        _ => unreachable!(),
    };
    compile(json!({
        "id": id, "effect": effect, "priority": priority,
        "subjects": subjects, "resources": [], "actions": [], "conditions": conditions,
    }))
}

fn ctx() -> Context {
    serde_json::from_value(json!({
        "subject": { "id": "alice", "roles": ["admin:users", "viewer"], "groups": ["ops"],
                     "claims": { "level": 7, "email": "alice@example.com", "teams": ["red", "blue"] } },
        "resource": { "app": "shop", "path": "/shop/cart" },
        "action": { "method": "GET" },
        "environment": { "ip": "10.1.2.3", "time": "2025-01-06T10:30:00Z" }
    }))
    .expect("context")
}

fn now() -> Timestamp {
    "2025-01-06T10:30:00Z".parse().expect("time")
}

fn decide(set: &PolicySet) -> (Effect, Option<String>) {
    let d: Decision = set.decide(&ctx(), now());
    (d.effect, d.matched_policy)
}

#[test]
fn every_combining_algorithm_against_permit_deny_and_not_applicable_mixes() {
    use Algorithm::*;
    use Effect::{Deny as D, Permit as P};
    let algorithms = [
        DenyOverrides,
        PermitOverrides,
        FirstApplicable,
        DenyUnlessPermit,
        PermitUnlessDeny,
    ];
    // (policies in priority order, default effect, expected per algorithm
    // in the order above: effect and the deciding policy's index).
    type Want = [(Effect, Option<usize>); 5];
    let table: &[(&str, Effect, Want)] = &[
        (
            "",
            D,
            [(D, None), (D, None), (D, None), (D, None), (P, None)],
        ),
        (
            "",
            P,
            [(P, None), (P, None), (P, None), (D, None), (P, None)],
        ),
        ("P", D, [(P, Some(0)); 5]),
        ("D", P, [(D, Some(0)); 5]),
        (
            "PD",
            D,
            [
                (D, Some(1)),
                (P, Some(0)),
                (P, Some(0)),
                (P, Some(0)),
                (D, Some(1)),
            ],
        ),
        (
            "DP",
            D,
            [
                (D, Some(0)),
                (P, Some(1)),
                (D, Some(0)),
                (P, Some(1)),
                (D, Some(0)),
            ],
        ),
        (
            "nx",
            D,
            [(D, None), (D, None), (D, None), (D, None), (P, None)],
        ),
        (
            "nx",
            P,
            [(P, None), (P, None), (P, None), (D, None), (P, None)],
        ),
        (
            "nPD",
            D,
            [
                (D, Some(2)),
                (P, Some(1)),
                (P, Some(1)),
                (P, Some(1)),
                (D, Some(2)),
            ],
        ),
        (
            "xDPD",
            P,
            [
                (D, Some(1)),
                (P, Some(2)),
                (D, Some(1)),
                (P, Some(2)),
                (D, Some(1)),
            ],
        ),
        ("Pn", D, [(P, Some(0)); 5]),
        ("Dn", P, [(D, Some(0)); 5]),
        ("nnP", D, [(P, Some(2)); 5]),
        ("xxD", P, [(D, Some(2)); 5]),
    ];
    for (mix, default, want) in table {
        for (algorithm, want) in algorithms.iter().zip(want) {
            let policies: Vec<Compiled> = mix
                .chars()
                .enumerate()
                .map(|(i, k)| mixed(&format!("p{i}"), 100 - i as i64, k))
                .collect();
            let set = PolicySet::new(policies, *algorithm, *default);
            let got = decide(&set);
            let want = (want.0, want.1.map(|i| format!("p{i}")));
            assert_eq!(
                got, want,
                "{algorithm:?} over `{mix}` (default {default:?})"
            );
            // explain agrees with decide, and traces every policy.
            let (explained, trace) = set.explain(&ctx(), now());
            assert_eq!((explained.effect, explained.matched_policy), want);
            assert_eq!(trace.len(), mix.len());
        }
    }
}

#[test]
fn priority_orders_evaluation_and_ties_go_by_id() {
    let set = PolicySet::new(
        vec![mixed("b", 5, 'P'), mixed("a", 5, 'D'), mixed("z", 9, 'P')],
        Algorithm::FirstApplicable,
        Effect::Deny,
    );
    let order: Vec<&str> = set.policies().map(|p| p.policy.id.as_str()).collect();
    assert_eq!(order, ["z", "a", "b"]);
    assert_eq!(decide(&set), (Effect::Permit, Some("z".into())));
}

#[test]
fn explain_says_why_each_policy_did_not_apply() {
    let set = PolicySet::new(
        vec![mixed("x", 3, 'x'), mixed("n", 2, 'n'), mixed("p", 1, 'P')],
        Algorithm::DenyOverrides,
        Effect::Deny,
    );
    let (d, trace) = set.explain(&ctx(), now());
    assert_eq!(d.effect, Effect::Permit);
    let results: Vec<(Outcome, Option<&str>)> = trace
        .iter()
        .map(|t| (t.result, t.detail.as_deref()))
        .collect();
    assert_eq!(
        results,
        [
            (Outcome::NoMatch, Some("no subject matches")),
            (Outcome::NotApplicable, Some("conditions[0] does not hold")),
            (Outcome::Permit, None),
        ]
    );
}

fn matches(policy_extra: Value) -> bool {
    let mut p =
        json!({ "id": "t", "effect": "permit", "subjects": [], "resources": [], "actions": [] });
    for (k, v) in policy_extra.as_object().expect("object") {
        p[k] = v.clone();
    }
    let set = PolicySet::new(vec![compile(p)], Algorithm::DenyOverrides, Effect::Deny);
    decide(&set).0 == Effect::Permit
}

#[test]
fn subjects_by_id_role_group_and_claims() {
    let yes = |s: Value| assert!(matches(json!({ "subjects": [s] })), "{s} should match");
    let no = |s: Value| assert!(!matches(json!({ "subjects": [s] })), "{s} should not match");
    yes(json!({ "id": "alice" }));
    no(json!({ "id": "bob" }));
    yes(json!({ "role": "admin:*" }));
    yes(json!({ "role": "view?r" }));
    no(json!({ "role": "admin" }));
    yes(json!({ "group": "ops" }));
    no(json!({ "group": "op" }));
    // Every field of one match must hold; any match of the list may.
    no(json!({ "id": "alice", "group": "dev" }));
    assert!(matches(
        json!({ "subjects": [{ "id": "bob" }, { "group": "ops" }] })
    ));
    yes(json!({}));

    let claim = |name: &str, op: &str, value: Value| json!({ "claim": { "name": name, "operator": op, "value": value } });
    yes(claim("level", "eq", json!(7)));
    no(claim("level", "eq", json!("7")));
    yes(claim("level", "neq", json!(8)));
    yes(claim("missing", "neq", json!(1)));
    no(claim("missing", "eq", Value::Null));
    yes(claim("level", "gt", json!(6.5)));
    no(claim("level", "gt", json!(7)));
    yes(claim("level", "lt", json!(8)));
    no(claim("email", "lt", json!(8)));
    yes(claim("email", "contains", json!("@example.")));
    yes(claim("teams", "contains", json!("blue")));
    no(claim("teams", "contains", json!("blu")));
    yes(claim("email", "regex", json!(r"^[a-z]+@example\.com$")));
    no(claim("email", "regex", json!(r"^bob@")));
    no(claim("level", "regex", json!("7")));
    yes(json!({ "claim": { "name": "level", "value": 7 } }));
}

#[test]
fn globs_are_escaped_and_segment_aware() {
    let name = |g: &str| Glob::new(g, Kind::Name).expect("glob");
    let path = |g: &str| Glob::new(g, Kind::Path).expect("glob");
    assert!(name("a.b").matches("a.b"));
    assert!(!name("a.b").matches("aXb"));
    assert!(!name("a.b*").matches("aXbc"));
    assert!(name("a.b*").matches("a.bc"));
    assert!(!name("a+").matches("aa"));
    assert!(name("(x)|y*").matches("(x)|yz"));
    assert!(!name("(x)|y*").matches("x"));
    assert!(name("*-admin").matches("shop-admin"));
    assert!(!name("*-admin").matches("shop-admins"));
    assert!(name("[a]?").matches("[a]b"));
    assert!(!name("[a]?").matches("ab"));

    assert!(path("/api/**").matches("/api"));
    assert!(path("/api/**").matches("/api/"));
    assert!(path("/api/**").matches("/api/a/b"));
    assert!(!path("/api/**").matches("/apix"));
    assert!(path("/api/*").matches("/api/a"));
    assert!(!path("/api/*").matches("/api/a/b"));
    assert!(path("/a.b/*.json").matches("/a.b/x.json"));
    assert!(!path("/a.b/*.json").matches("/aXb/x.json"));
    assert!(!path("/a.b/*.json").matches("/a.b/xjson"));
    assert!(path("/**/edit").matches("/a/b/edit"));
    assert!(path("/f?o").matches("/foo"));
    assert!(!path("/f?o").matches("/f/o"));
    assert!(path("/**").matches("/anything/at/all"));
    assert!(path("/x/**/y/**").matches("/x/1/2/y"));
    assert!(!path("/x/**/y/**").matches("/x/1/2/yy"));
}

#[test]
fn regexes_are_compiled_once_and_bad_ones_refused() {
    let e = refused(
        json!({ "id": "r", "effect": "deny", "resources": [], "actions": [],
        "subjects": [{ "claim": { "name": "e", "operator": "regex", "value": "(" } }] }),
    );
    assert!(
        e.contains("`subjects[0]`: `claim`: `value`: the regex does not compile"),
        "{e}"
    );
    // Look-around and backreferences do not exist in a linear-time engine.
    let e = refused(
        json!({ "id": "r", "effect": "deny", "resources": [], "actions": [],
        "subjects": [{ "claim": { "name": "e", "operator": "regex", "value": r"(a)\1" } }] }),
    );
    assert!(e.contains("does not compile"), "{e}");
    // A pattern that backtracks exponentially elsewhere is linear here.
    let p = compile(
        json!({ "id": "r", "effect": "permit", "resources": [], "actions": [],
        "subjects": [{ "claim": { "name": "s", "operator": "regex", "value": "^(a+)+$" } }] }),
    );
    let set = PolicySet::new(vec![p], Algorithm::DenyOverrides, Effect::Deny);
    let mut c = ctx();
    c.subject
        .claims
        .insert("s".into(), json!(format!("{}!", "a".repeat(5000))));
    let started = std::time::Instant::now();
    assert_eq!(set.decide(&c, now()).effect, Effect::Deny);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

fn list(entries: &[&str]) -> AddressList {
    let owned: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
    AddressList::parse(&owned, "allowlist").expect("list")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn cidr_blocks_for_ipv4_and_ipv6() {
    let v4 = list(&["10.0.0.0/8", "192.168.1.7", "172.16.0.0/12"]);
    assert!(v4.contains(ip("10.0.0.0")));
    assert!(v4.contains(ip("10.255.255.255")));
    assert!(!v4.contains(ip("11.0.0.0")));
    assert!(!v4.contains(ip("9.255.255.255")));
    assert!(v4.contains(ip("192.168.1.7")));
    assert!(!v4.contains(ip("192.168.1.8")));
    assert!(v4.contains(ip("172.31.255.255")));
    assert!(!v4.contains(ip("172.32.0.0")));
    // An IPv4-mapped IPv6 client is its IPv4 address.
    assert!(v4.contains(ip("::ffff:10.1.2.3")));
    assert!(!v4.contains(ip("::ffff:11.1.2.3")));
    // IPv4 blocks never cover other IPv6 addresses.
    assert!(!v4.contains(ip("::a01:203")));

    let v6 = list(&["2001:db8::/32", "::1", "fe80::/10"]);
    assert!(v6.contains(ip("2001:db8::")));
    assert!(v6.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!v6.contains(ip("2001:db9::")));
    assert!(v6.contains(ip("::1")));
    assert!(!v6.contains(ip("::2")));
    assert!(v6.contains(ip("febf::1")));
    assert!(!v6.contains(ip("fec0::1")));
    assert!(!v6.contains(ip("127.0.0.1")));

    // Whole-space and single-address blocks; host bits are ignored.
    assert!(list(&["0.0.0.0/0"]).contains(ip("255.255.255.255")));
    assert!(!list(&["0.0.0.0/0"]).contains(ip("::2")));
    assert!(list(&["::/0"]).contains(ip("2001:db8::1")));
    assert!(list(&["10.1.2.3/32"]).contains(ip("10.1.2.3")));
    assert!(!list(&["10.1.2.3/32"]).contains(ip("10.1.2.4")));
    assert!(list(&["10.1.2.3/8"]).contains(ip("10.200.0.1")));
    assert!(list(&["::ffff:10.0.0.0/104"]).contains(ip("::ffff:10.9.9.9")));

    for bad in ["10.0.0.0/33", "2001:db8::/129", "10.0.0", "example.com", ""] {
        let owned = vec![bad.to_string()];
        let e = AddressList::parse(&owned, "blocklist").expect_err(bad);
        assert!(e.starts_with("`blocklist[0]`"), "{e}");
    }
    assert_eq!(parse_client("[::1]"), Some(ip("::1")));
    assert_eq!(parse_client("not-an-ip"), None);
}

#[test]
fn ip_conditions_allow_block_and_unknown_addresses() {
    let with = |cond: Value, addr: Option<&str>| {
        let p = compile(
            json!({ "id": "i", "effect": "permit", "subjects": [], "resources": [],
            "actions": [], "conditions": [cond] }),
        );
        let set = PolicySet::new(vec![p], Algorithm::DenyOverrides, Effect::Deny);
        let mut c = ctx();
        c.environment.ip = addr.map(ip);
        set.decide(&c, now()).effect == Effect::Permit
    };
    let allow = json!({ "type": "ip", "allowlist": ["10.0.0.0/8", "2001:db8::/32"] });
    assert!(with(allow.clone(), Some("10.9.9.9")));
    assert!(with(allow.clone(), Some("2001:db8::5")));
    assert!(!with(allow.clone(), Some("192.0.2.1")));
    assert!(!with(allow, None));
    let block = json!({ "type": "ip", "blocklist": ["10.0.0.0/8"] });
    assert!(!with(block.clone(), Some("10.0.0.1")));
    assert!(with(block.clone(), Some("11.0.0.1")));
    assert!(!with(block, None));
    let both = json!({ "type": "ip", "allowlist": ["10.0.0.0/8"], "blocklist": ["10.6.6.0/24"] });
    assert!(with(both.clone(), Some("10.6.5.255")));
    assert!(!with(both, Some("10.6.6.1")));
    assert!(with(
        json!({ "type": "ip", "cidr": "10.0.0.0/8" }),
        Some("10.0.0.1")
    ));
}

#[test]
fn time_windows_in_a_time_zone() {
    // 2025-01-06 is a Monday.
    let at = |cond: Value, when: &str| {
        let p = compile(
            json!({ "id": "t", "effect": "permit", "subjects": [], "resources": [],
            "actions": [], "conditions": [cond] }),
        );
        let set = PolicySet::new(vec![p], Algorithm::DenyOverrides, Effect::Deny);
        let mut c = ctx();
        c.environment.time = Some(when.parse().expect("time"));
        set.decide(&c, now()).effect == Effect::Permit
    };
    let office = json!({ "type": "time", "after": "09:00", "before": "17:00",
                         "dayOfWeek": [1, 2, 3, 4, 5], "timezone": "America/New_York" });
    assert!(at(office.clone(), "2025-01-06T14:00:00Z")); // 09:00 in New York
    assert!(!at(office.clone(), "2025-01-06T13:59:00Z")); // 08:59
    assert!(!at(office.clone(), "2025-01-06T22:00:00Z")); // 17:00, exclusive
    assert!(!at(office.clone(), "2025-01-05T15:00:00Z")); // Sunday
    // Summer time: 09:00 in New York is 13:00 UTC.
    assert!(at(office.clone(), "2025-07-07T13:00:00Z"));
    assert!(!at(office, "2025-01-07T04:00:00Z")); // Monday 23:00 there, Tuesday in UTC
    let night = json!({ "type": "time", "after": "22:00", "before": "06:00" });
    assert!(at(night.clone(), "2025-01-06T23:30:00Z"));
    assert!(at(night.clone(), "2025-01-06T05:59:00Z"));
    assert!(!at(night, "2025-01-06T06:00:00Z"));
    assert!(at(
        json!({ "type": "time", "dayOfWeek": [0] }),
        "2025-01-05T12:00:00Z"
    ));

    for (cond, needle) in [
        (json!({ "type": "time", "after": "9:00" }), "`after`"),
        (json!({ "type": "time", "before": "24:00" }), "`before`"),
        (json!({ "type": "time", "dayOfWeek": [7] }), "`dayOfWeek`"),
        (json!({ "type": "time", "dayOfWeek": [] }), "`dayOfWeek`"),
        (
            json!({ "type": "time", "timezone": "Mars/Olympus" }),
            "`timezone`",
        ),
        (json!({ "type": "ip" }), "needs an `allowlist`"),
        (
            json!({ "type": "custom", "expression": "true" }),
            "unknown variant `custom`",
        ),
    ] {
        let e = refused(
            json!({ "id": "c", "effect": "permit", "subjects": [], "resources": [],
            "actions": [], "conditions": [cond] }),
        );
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn resources_and_actions() {
    assert!(matches(
        json!({ "resources": [{ "app": "sh*", "path": "/shop/**" }] })
    ));
    assert!(!matches(
        json!({ "resources": [{ "app": "shop", "path": "/shop/admin/**" }] })
    ));
    assert!(matches(
        json!({ "resources": [{ "path": "/x" }, { "app": "shop" }] })
    ));
    assert!(matches(json!({ "actions": [{ "method": "get" }] })));
    assert!(matches(json!({ "actions": [{ "method": "*" }] })));
    assert!(!matches(json!({ "actions": [{ "method": "POST" }] })));
    assert!(!matches(
        json!({ "actions": [{ "method": "GET", "operation": "read" }] })
    ));
}

#[test]
fn policies_are_validated() {
    let base =
        || json!({ "id": "v", "effect": "permit", "subjects": [], "resources": [], "actions": [] });
    // A misspelt field is an error, not "match everyone".
    let mut p = base();
    p["subjects"] = json!([{ "rol": "admin" }]);
    assert!(refused(p).contains("unknown field `rol`"));
    let mut p = base();
    p["resources"] = json!([{ "owner": "self" }]);
    assert!(refused(p).contains("unknown field `owner`"));
    let mut p = base();
    p.as_object_mut().expect("object").remove("subjects");
    assert!(refused(p).contains("missing field `subjects`"));
    let mut p = base();
    p["effect"] = json!("allow");
    assert!(refused(p).contains("unknown variant `allow`"));
    let mut p = base();
    p["id"] = json!("a b");
    assert!(refused(p).contains("`id`"));
    let mut p = base();
    p["resources"] = json!([{ "path": "api/**" }]);
    assert!(refused(p).contains("must start with `/`"));
    let mut p = base();
    p["subjects"] = json!([{ "claim": { "name": "n", "operator": "gt", "value": "x" } }]);
    assert!(refused(p).contains("give a number"));
}

#[test]
fn paths_are_normalised_before_matching() {
    assert_eq!(normalize_path("/shop/%61dmin"), "/shop/admin");
    assert_eq!(normalize_path("/shop/public/%2e%2e/admin"), "/shop/admin");
    assert_eq!(normalize_path("//shop//./admin/"), "/shop/admin/");
    assert_eq!(normalize_path("/shop/a%2Fb"), "/shop/a/b");
    assert_eq!(normalize_path("/../.."), "/");
    assert_eq!(normalize_path("/a+b"), "/a+b");
    assert_eq!(
        app_and_path("/shop@1.2/cart"),
        (Some("shop".into()), "/shop/cart".into())
    );
    assert_eq!(app_and_path("/shop"), (Some("shop".into()), "/shop".into()));
    assert_eq!(
        app_and_path("/_/keyval/api"),
        (None, "/_/keyval/api".into())
    );
    assert_eq!(app_and_path("/"), (None, "/".into()));
}

#[test]
fn the_config_is_checked() {
    use crate::settings::Settings;
    let s = Settings::parse(&json!({})).expect("defaults");
    assert_eq!(s.algorithm, Algorithm::DenyOverrides);
    assert_eq!(s.default_effect, Effect::Deny);
    assert!(s.excluded("/_/authz/api/policies") && !s.excluded("/shop/x"));
    let s =
        Settings::parse(&json!({ "combiningAlgorithm": "permit-unless-deny", "excludePaths": [] }))
            .expect("config");
    assert_eq!(s.algorithm, Algorithm::PermitUnlessDeny);
    assert!(!s.excluded("/_/x"));
    for (cfg, needle) in [
        (
            json!({ "combiningAlgorithm": "majority" }),
            "unknown variant `majority`",
        ),
        (json!({ "excludePaths": ["_/x"] }), "`excludePaths[0]`"),
        (json!({ "database": "../x" }), "`database`"),
        (
            json!({ "policySeed": { "policies": [{ "id": "a" }] } }),
            "`policySeed.policies[0]`",
        ),
        (
            json!({ "combiningAlgoritm": "deny-overrides" }),
            "unknown field",
        ),
    ] {
        let e = Settings::parse(&cfg).expect_err(needle);
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let p =
        json!({ "id": "a", "effect": "permit", "subjects": [], "resources": [], "actions": [] });
    let e =
        Settings::parse(&json!({ "policySeed": { "policies": [p.clone(), p] } })).expect_err("dup");
    assert!(e.contains("used twice"), "{e}");
}
