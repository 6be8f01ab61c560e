//! What a query asks (parsed and checked from the query string), which
//! records it keeps, and the buffer's stats.

use buntime_pdk::http::FieldMatch;
use serde_json::{Value, json};

/// The levels, most severe first.
pub const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
/// Where records come from.
pub const SOURCES: [&str; 3] = ["runtime", "app", "plugin"];
/// Records a query answers when it gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` a query may ask.
pub const MAX_LIMIT: usize = 10_000;

/// A parsed query: every filter optional.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    /// Keep these levels only.
    pub levels: Option<Vec<String>>,
    /// Keep this source only.
    pub source: Option<String>,
    /// Keep this app only (`name@version`, or `name` for every version).
    pub app: Option<String>,
    /// Keep this plugin only.
    pub plugin: Option<String>,
    /// Keep this request only.
    pub request_id: Option<String>,
    /// Keep records at or after this time (ms since the epoch).
    pub since: Option<u64>,
    /// Keep records at or before this time (ms since the epoch).
    pub until: Option<u64>,
    /// Keep messages holding this text (case-insensitive).
    pub search: Option<String>,
    /// Answer at most this many, newest first.
    pub limit: usize,
}

fn time(name: &str, value: &str) -> Result<u64, String> {
    value.parse::<u64>().map_err(|_| {
        format!("`{name}` must be a time in milliseconds since the Unix epoch (e.g. 1767225600000), found `{value}`")
    })
}

/// The `level` parameter: one level or a comma-separated list.
pub fn levels(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(|l| {
            let l = l.trim().to_ascii_lowercase();
            if LEVELS.contains(&l.as_str()) {
                Ok(l)
            } else {
                Err(format!(
                    "`level` must be one of error, warn, info, debug, trace (or a comma-separated list), found `{value}`"
                ))
            }
        })
        .collect()
}

impl Query {
    /// Parses `params` (decoded query pairs); the error says which
    /// parameter is wrong and what it must be.
    pub fn parse(params: &[(String, String)]) -> Result<Self, String> {
        let mut q = Query {
            limit: DEFAULT_LIMIT,
            ..Query::default()
        };
        for (k, v) in params {
            let text = || (!v.is_empty()).then(|| v.clone());
            match k.as_str() {
                "level" => q.levels = Some(levels(v)?),
                "source" => {
                    if !SOURCES.contains(&v.as_str()) {
                        return Err(format!(
                            "`source` must be runtime, app or plugin, found `{v}`"
                        ));
                    }
                    q.source = Some(v.clone());
                }
                "app" => q.app = text(),
                "plugin" => q.plugin = text(),
                "requestId" => q.request_id = text(),
                "search" => q.search = text().map(|s| s.to_lowercase()),
                "since" => q.since = Some(time(k, v)?),
                "until" => q.until = Some(time(k, v)?),
                "limit" => {
                    q.limit = match v.parse::<usize>() {
                        Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                        _ => {
                            return Err(format!(
                                "`limit` must be a whole number from 1 to {MAX_LIMIT}, found `{v}`"
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        if let (Some(a), Some(b)) = (q.since, q.until)
            && a > b
        {
            return Err(format!("`since` ({a}) is after `until` ({b})"));
        }
        Ok(q)
    }

    /// The filters a live tail can apply to records as they are published
    /// (all but the levels, which pick the topics, and the time range and
    /// limit, which a live tail has no use for), as the host's conditions.
    /// They keep what [`Query::keeps`] keeps.
    pub fn conditions(&self) -> Vec<FieldMatch> {
        let mut out = Vec::new();
        let mut exact = |field: &str, want: &Option<String>| {
            if let Some(w) = want {
                out.push(FieldMatch {
                    field: field.into(),
                    one_of: vec![w.clone()],
                    ..FieldMatch::default()
                });
            }
        };
        exact("source", &self.source);
        exact("plugin", &self.plugin);
        exact("requestId", &self.request_id);
        if let Some(app) = &self.app {
            // `hello` matches every version of it; `hello@1.0.0` that one.
            out.push(FieldMatch {
                field: "app".into(),
                one_of: vec![app.clone()],
                prefix: if app.contains('@') {
                    Vec::new()
                } else {
                    vec![format!("{app}@")]
                },
                ..FieldMatch::default()
            });
        }
        if let Some(search) = &self.search {
            out.push(FieldMatch {
                field: "message".into(),
                contains: Some(search.clone()),
                ..FieldMatch::default()
            });
        }
        out
    }

    /// Whether `record` passes every filter.
    pub fn keeps(&self, record: &Value) -> bool {
        let field = |name: &str| record[name].as_str();
        if let Some(levels) = &self.levels
            && !levels.iter().any(|l| Some(l.as_str()) == field("level"))
        {
            return false;
        }
        let same = |want: &Option<String>, name: &str| {
            want.as_deref().is_none_or(|w| Some(w) == field(name))
        };
        if !same(&self.source, "source")
            || !same(&self.plugin, "plugin")
            || !same(&self.request_id, "requestId")
        {
            return false;
        }
        if let Some(app) = &self.app {
            // `hello` matches every version of it; `hello@1.0.0` that one.
            let kept = field("app").is_some_and(|a| {
                a == app || (!app.contains('@') && a.split('@').next() == Some(app.as_str()))
            });
            if !kept {
                return false;
            }
        }
        let t = record["time"].as_u64().unwrap_or(0);
        if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
            return false;
        }
        if let Some(search) = &self.search
            && !field("message").is_some_and(|m| m.to_lowercase().contains(search))
        {
            return false;
        }
        true
    }
}

/// The stats of `records` (the buffer, newest first): counts by level and
/// source, how many, the oldest and newest times.
pub fn stats(records: &[Value], capacity: usize, received: u64, dropped: u64) -> Value {
    let mut counts = serde_json::Map::new();
    for l in LEVELS {
        counts.insert(l.into(), json!(0));
    }
    let mut sources = serde_json::Map::new();
    for s in SOURCES {
        sources.insert(s.into(), json!(0));
    }
    for r in records {
        for (map, name) in [(&mut counts, "level"), (&mut sources, "source")] {
            if let Some(n) = r[name].as_str().and_then(|k| map.get_mut(k)) {
                *n = json!(n.as_u64().unwrap_or(0) + 1);
            }
        }
    }
    json!({
        "counts": counts,
        "sources": sources,
        "total": records.len(),
        "capacity": capacity,
        "received": received,
        "dropped": dropped,
        "oldest": records.last().map(|r| r["time"].clone()),
        "newest": records.first().map(|r| r["time"].clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::{MAX_LIMIT, Query};

    fn q(pairs: &[(&str, &str)]) -> Result<Query, String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Query::parse(&owned)
    }

    #[test]
    fn hostile_parameters_are_refused_with_the_reason() {
        assert!(q(&[("level", "loud")]).unwrap_err().contains("`level`"));
        assert!(
            q(&[("limit", &(MAX_LIMIT + 1).to_string())])
                .unwrap_err()
                .contains("`limit`")
        );
        assert!(q(&[("limit", "0")]).is_err());
        assert!(
            q(&[("since", "yesterday")])
                .unwrap_err()
                .contains("`since`")
        );
        assert!(q(&[("since", "5"), ("until", "4")]).is_err());
        assert_eq!(
            q(&[("level", "warn,Error")]).unwrap().levels.unwrap(),
            ["warn", "error"]
        );
    }

    #[test]
    fn the_tail_conditions_keep_what_the_query_keeps() {
        let records = [
            serde_json::json!({"app": "hello@1.2.0", "source": "app", "requestId": "r1", "message": "Checkout FAILED", "level": "warn", "time": 5}),
            serde_json::json!({"app": "hello2@1.0.0", "source": "app", "requestId": "r2", "message": "ok", "level": "warn", "time": 5}),
            serde_json::json!({"plugin": "kit", "source": "plugin", "message": "failed", "level": "warn", "time": 5}),
        ];
        for pairs in [
            &[("app", "hello")][..],
            &[("app", "hello@1.2.0")],
            &[("requestId", "r2")],
            &[("plugin", "kit")],
            &[("search", "failed")],
            &[("source", "plugin"), ("search", "FAIL")],
        ] {
            let q = q(pairs).unwrap();
            let conditions = q.conditions();
            for r in &records {
                let tail = conditions.iter().all(|c| c.passes(r));
                assert_eq!(tail, q.keeps(r), "{pairs:?} on {r}");
            }
        }
    }

    #[test]
    fn an_app_name_matches_every_version() {
        let r = serde_json::json!({"app": "hello@1.2.0", "level": "info", "time": 5});
        assert!(q(&[("app", "hello")]).unwrap().keeps(&r));
        assert!(q(&[("app", "hello@1.2.0")]).unwrap().keeps(&r));
        assert!(!q(&[("app", "hell")]).unwrap().keeps(&r));
        assert!(!q(&[("level", "warn")]).unwrap().keeps(&r));
        assert!(!q(&[("since", "6")]).unwrap().keeps(&r));
    }
}
