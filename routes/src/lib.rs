//! Proxy rules: parsed and checked from JSON (config, API or a plugin's
//! route table), matched against a request, and turned into the upstream URL.
//!
//! One definition for both sides of the `upstream_routes` host function: the
//! proxy plugin checks rules with it before it stores them (so a bad regex is
//! a `400` naming it), and the host compiles the table the plugin installs
//! with it and runs it on every request, so what a rule means cannot differ
//! between the two.
//!
//! A rule's `pattern` is a regex over the request path (the `regex` crate:
//! linear time, compiled under a size limit); its captures fill the
//! `target` and `rewrite` templates (`$1`, `${1}`, `${name}`).

pub use regex::Captures;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// The most a compiled pattern may take (bytes), so a rule cannot make the
/// plugin's memory or matching time blow up.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The longest pattern, target or rewrite accepted.
const MAX_TEXT: usize = 2048;
/// The most rules (static and dynamic each).
pub const MAX_RULES: usize = 1000;
/// The most rules in a route table a plugin installs (its static and
/// dynamic rules together).
pub const MAX_ROUTES: usize = 2 * MAX_RULES;

/// A rule as written in config or sent to the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    /// Its id (dynamic rules get one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A regex over the request path.
    pub pattern: String,
    /// The upstream: `http(s)://host[:port][/path]`, with captures.
    pub target: String,
    /// The upstream path, with captures, appended to `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// The methods it applies to (upper case); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Headers set on the forwarded request.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "pairs")]
    pub headers: Vec<(String, String)>,
    /// Headers removed from the forwarded request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<String>,
    /// Whether a request without an identity may use it.
    #[serde(default)]
    pub public: bool,
    /// Whether WebSocket upgrades are relayed (else forwarded as plain
    /// requests, their upgrade headers dropped).
    #[serde(default)]
    pub websocket: bool,
    /// The upstream's answer and read timeout (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The connect timeout (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// A relayed WebSocket's longest silence (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// A relayed WebSocket's longest life (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_ms: Option<u64>,
}

/// `headers` as a JSON object of name to value.
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};

    pub(crate) fn serialize<S: Serializer>(
        v: &[(String, String)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let map: Map<String, Value> = v
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        map.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        map.into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Err(serde::de::Error::custom(format!(
                    "the value of header `{k}` must be a string, found {other}"
                ))),
            })
            .collect()
    }
}

/// The size limits a pattern is compiled under, smallest first: a rule
/// is charged the first it fits (most fit the first; `\\w` and other
/// Unicode classes need the second).
const SIZE_TIERS: [usize; 3] = [8 << 10, 64 << 10, REGEX_SIZE_LIMIT];
/// The most a route table's patterns may be charged in all (16 MiB):
/// 2 000 plain rules, or 16 at the largest size. The host holds the
/// compiled table, so its memory is bounded here, not by a guest's limit.
pub const TABLE_BUDGET: usize = 16 << 20;

/// A checked rule, its pattern compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// As written (with its id).
    pub spec: RuleSpec,
    regex: Regex,
    /// The size limit its pattern compiled under (one of [`SIZE_TIERS`]).
    charged: usize,
    /// The pattern's literal prefix, when the pattern is only that
    /// (`^literal`, or `^literal(.*)$`): matched without the regex.
    prefix: Option<Prefix>,
}

/// A pattern that is a literal prefix: `^literal`, or `^literal(.*)$`
/// when `rest` (group 1 the rest of the path).
#[derive(Debug, Clone)]
struct Prefix {
    literal: String,
    rest: bool,
}

impl Prefix {
    /// The prefix `pattern` is, if it is one: `^`, then only characters
    /// that stand for themselves in a regex, then nothing or `(.*)$`.
    fn of(pattern: &str) -> Option<Self> {
        let body = pattern.strip_prefix('^')?;
        let (literal, rest) = match body.strip_suffix("(.*)$") {
            Some(literal) => (literal, true),
            None => (body, false),
        };
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"/_-:@=,;!%~&'".contains(&b);
        (!literal.is_empty() && literal.bytes().all(plain)).then(|| Self {
            literal: literal.to_owned(),
            rest,
        })
    }
}

/// How a rule matched a path: what its templates' `$0`, `$1`, … are.
#[derive(Debug)]
pub enum Matched<'p> {
    /// By the regex, with its captures.
    Regex(Captures<'p>),
    /// By a literal prefix: the whole match, and the rest of the path when
    /// the pattern captures it.
    Prefix {
        /// Group 0.
        whole: &'p str,
        /// Group 1, if the pattern has it.
        rest: Option<&'p str>,
    },
}

impl Matched<'_> {
    /// `template` with its group references filled, appended to `dst`: the
    /// regex's own expansion (`$1`, `${1}`, `$name`, `$$`).
    fn expand(&self, template: &str, dst: &mut String) {
        match self {
            Self::Regex(caps) => caps.expand(template, dst),
            // The routine the regex's expansion runs, with the two groups.
            Self::Prefix { whole, rest } => regex_automata::util::interpolate::string(
                template,
                |i, dst| match (i, rest) {
                    (0, _) => dst.push_str(whole),
                    (1, Some(rest)) => dst.push_str(rest),
                    _ => {}
                },
                |_| None,
                dst,
            ),
        }
    }
}

/// A rule that cannot be accepted: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub String);

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(msg: impl Into<String>) -> RuleError {
    RuleError(msg.into())
}

fn token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Rule {
    /// Checks `spec`: the pattern compiles within the size limit, the
    /// target is an http(s) URL template, methods and headers are valid.
    pub fn new(spec: RuleSpec) -> Result<Self, RuleError> {
        Self::within(check(spec)?, REGEX_SIZE_LIMIT)
    }

    /// A checked `spec` compiled under the smallest size tier it fits, at
    /// most `budget` bytes.
    fn within(spec: RuleSpec, budget: usize) -> Result<Self, RuleError> {
        let mut last = None;
        for limit in SIZE_TIERS.into_iter().filter(|&l| l <= budget) {
            let built = RegexBuilder::new(&spec.pattern)
                .size_limit(limit)
                // The lazy DFA's cache, per thread that matches, grows with
                // the states a path visits: bounded by the tier too.
                .dfa_size_limit(4 * limit)
                .build();
            match built {
                Ok(regex) => {
                    return Ok(Self {
                        prefix: Prefix::of(&spec.pattern),
                        spec,
                        regex,
                        charged: limit,
                    });
                }
                // Only a pattern over the limit is worth a larger one.
                Err(e @ regex::Error::CompiledTooBig(_)) => last = Some(e.to_string()),
                Err(e) => {
                    return Err(bad(format!(
                        "`pattern` `{}` is not a valid regex: {e}",
                        spec.pattern
                    )));
                }
            }
        }
        Err(bad(match last {
            Some(e) if budget >= REGEX_SIZE_LIMIT => {
                format!("`pattern` `{}` is not a valid regex: {e}", spec.pattern)
            }
            _ => format!(
                "`pattern` `{}` does not fit in what is left of the table's {} MiB for compiled patterns",
                spec.pattern,
                TABLE_BUDGET >> 20
            ),
        }))
    }
}

/// `spec` checked and normalized (methods upper case); its pattern is
/// compiled by the caller.
fn check(mut spec: RuleSpec) -> Result<RuleSpec, RuleError> {
    {
        for (field, text) in [
            ("pattern", Some(&spec.pattern)),
            ("target", Some(&spec.target)),
            ("rewrite", spec.rewrite.as_ref()),
        ] {
            if text.is_some_and(|t| t.len() > MAX_TEXT) {
                return Err(bad(format!("`{field}` is longer than {MAX_TEXT} bytes")));
            }
        }
        if let Some(id) = &spec.id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(bad(format!(
                "`id` `{id}` must be 1 to 64 letters, digits, `-` or `_`"
            )));
        }
        if spec.pattern.is_empty() {
            return Err(bad("`pattern` is empty"));
        }
        let lower = spec.target.to_ascii_lowercase();
        let authority = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"));
        if authority.is_none_or(|a| a.is_empty() || a.starts_with('/')) {
            return Err(bad(format!(
                "`target` `{}` must start with http:// or https:// and a host",
                spec.target
            )));
        }
        if let Some(r) = &spec.rewrite
            && !r.starts_with('/')
        {
            return Err(bad(format!("`rewrite` `{r}` must start with `/`")));
        }
        for m in &mut spec.methods {
            if !token(m) {
                return Err(bad(format!("`methods`: `{m}` is not a method")));
            }
            m.make_ascii_uppercase();
        }
        for (k, v) in &spec.headers {
            if !token(k) {
                return Err(bad(format!("`headers`: `{k}` is not a header name")));
            }
            if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(bad(format!(
                    "`headers`: the value of `{k}` holds a control character"
                )));
            }
        }
        for k in &spec.remove_headers {
            if !token(k) {
                return Err(bad(format!("`removeHeaders`: `{k}` is not a header name")));
            }
        }
        for (field, v, max) in [
            ("timeoutMs", spec.timeout_ms, 3_600_000),
            ("connectTimeoutMs", spec.connect_timeout_ms, 3_600_000),
            ("idleTimeoutMs", spec.idle_timeout_ms, 86_400_000),
            ("maxDurationMs", spec.max_duration_ms, 86_400_000),
        ] {
            if v.is_some_and(|ms| ms == 0 || ms > max) {
                return Err(bad(format!("`{field}` must be from 1 to {max}")));
            }
        }
        Ok(spec)
    }
}

impl Rule {
    /// How `path` matched, if the rule applies to `method` and `path`.
    pub fn matches<'p>(&self, method: &str, path: &'p str) -> Option<Matched<'p>> {
        if !self.spec.methods.is_empty() && !self.spec.methods.iter().any(|m| m == method) {
            return None;
        }
        match &self.prefix {
            // By hand what the regex would find, without running it: most
            // rules are prefixes, and captures were most of a match's cost.
            Some(p) => {
                let after = path.strip_prefix(p.literal.as_str())?;
                if !p.rest {
                    return Some(Matched::Prefix {
                        whole: &path[..p.literal.len()],
                        rest: None,
                    });
                }
                // `.` matches anything but a line feed.
                (!after.contains('\n')).then_some(Matched::Prefix {
                    whole: path,
                    rest: Some(after),
                })
            }
            None => self.by_regex(path),
        }
    }

    /// How `path` matches the regex itself.
    fn by_regex<'p>(&self, path: &'p str) -> Option<Matched<'p>> {
        self.regex.captures(path).map(Matched::Regex)
    }

    /// The upstream URL for a request to `path?query` that matched as
    /// `caps`: `target` expanded; then `rewrite` expanded and appended, or,
    /// when the target has no path, the request's path; then the request's
    /// query.
    pub fn url(&self, caps: &Matched<'_>, path: &str, query: Option<&str>) -> String {
        let mut url = String::with_capacity(self.spec.target.len() + path.len() + 16);
        caps.expand(&self.spec.target, &mut url);
        // A byte search: `str::find` with a `&str` sets up a two-way
        // searcher per call, a measurable part of a proxied request.
        let after_scheme = url
            .as_bytes()
            .windows(3)
            .position(|w| w == b"://")
            .map_or(0, |i| i + 3);
        let has_path = url[after_scheme..].contains(['/', '?']);
        match &self.spec.rewrite {
            Some(rewrite) => {
                while url.ends_with('/') && url.len() > after_scheme {
                    url.pop();
                }
                caps.expand(rewrite, &mut url);
            }
            None if !has_path => url.push_str(path),
            None => {}
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(q);
        }
        url
    }
}

/// Whether `path` has a `.` or `..` segment (also percent-encoded, or
/// separated by `\`): the upstream URL would resolve it and leave the part
/// of the upstream a rule forwards to, so such a request is refused.
pub fn has_dot_segment(path: &str) -> bool {
    // Compared as bytes in place (no lowercased copy per segment): this runs
    // on every proxied request. The dot segments are `.` and `..` with any
    // of their dots written `%2e` (either case).
    let dot = |s: &[u8]| s == b"." || s.eq_ignore_ascii_case(b"%2e");
    path.split(['/', '\\']).any(|seg| {
        let seg = seg.as_bytes();
        match seg.len() {
            1 | 3 => dot(seg),
            2 => seg == b"..",
            4 | 6 => {
                let (a, b) = seg.split_at(if seg[0] == b'.' { 1 } else { 3 });
                dot(a) && dot(b)
            }
            _ => false,
        }
    })
}

/// The first of `rules` that applies: its index and how it matched.
pub fn find<'p>(rules: &[Rule], method: &str, path: &'p str) -> Option<(usize, Matched<'p>)> {
    rules
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.matches(method, path).map(|m| (i, m)))
}

/// Parses a list of rules (the config's `rules`), naming the one at fault.
pub fn parse_list(value: Option<&serde_json::Value>) -> Result<Vec<Rule>, RuleError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list: Vec<serde_json::Value> = serde_json::from_value(value.clone())
        .map_err(|e| bad(format!("`rules` must be a list of rules: {e}")))?;
    if list.len() > MAX_RULES {
        return Err(bad(format!("`rules` has more than {MAX_RULES} rules")));
    }
    let mut out: Vec<Rule> = Vec::with_capacity(list.len());
    for (i, v) in list.into_iter().enumerate() {
        let spec: RuleSpec =
            serde_json::from_value(v).map_err(|e| bad(format!("`rules[{i}]`: {e}")))?;
        let mut rule = Rule::new(spec).map_err(|e| bad(format!("`rules[{i}]`: {e}")))?;
        let id = rule
            .spec
            .id
            .get_or_insert_with(|| format!("static-{i}"))
            .clone();
        if out
            .iter()
            .any(|r| r.spec.id.as_deref() == Some(id.as_str()))
        {
            return Err(bad(format!("`rules[{i}]`: the id `{id}` is used twice")));
        }
        out.push(rule);
    }
    Ok(out)
}

/// Parses a route table (`upstream_routes`): each rule checked as
/// [`Rule::new`] checks it, ids optional but never used twice; the error
/// names the rule at fault as `routes[i]`.
///
/// The patterns are compiled under [`TABLE_BUDGET`] in all, each charged
/// the smallest size tier it fits. A rule equal to one of `installed` (the
/// table it replaces) keeps that rule's compiled pattern: changing one rule
/// of a long table compiles one pattern.
pub fn parse_routes(
    list: Vec<serde_json::Value>,
    installed: &[Rule],
) -> Result<Vec<Rule>, RuleError> {
    if list.len() > MAX_ROUTES {
        return Err(bad(format!(
            "`routes` has {} rules, more than {MAX_ROUTES}",
            list.len()
        )));
    }
    let mut budget = TABLE_BUDGET;
    let mut out: Vec<Rule> = Vec::with_capacity(list.len());
    for (i, v) in list.into_iter().enumerate() {
        let at = |e: RuleError| bad(format!("`routes[{i}]`: {e}"));
        let spec: RuleSpec =
            serde_json::from_value(v).map_err(|e| bad(format!("`routes[{i}]`: {e}")))?;
        let spec = check(spec).map_err(at)?;
        let kept = installed
            .iter()
            .find(|r| r.spec == spec && r.charged <= budget);
        let rule = match kept {
            Some(r) => r.clone(),
            None => Rule::within(spec, budget).map_err(at)?,
        };
        budget -= rule.charged;
        if let Some(id) = rule.spec.id.as_deref()
            && out.iter().any(|r| r.spec.id.as_deref() == Some(id))
        {
            return Err(bad(format!("`routes[{i}]`: the id `{id}` is used twice")));
        }
        out.push(rule);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
