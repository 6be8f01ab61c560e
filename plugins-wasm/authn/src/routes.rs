//! Route globs: which app routes need no identity.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::string_or_list;

/// Route globs per method (`ALL` for every method).
#[derive(Debug, Clone, Default)]
pub struct Routes {
    by_method: BTreeMap<String, Vec<String>>,
}

impl Routes {
    /// `["/glob", ...]` for every method, or `{"GET": [...], "ALL": [...]}`.
    pub fn parse(v: &Value) -> Result<Self, String> {
        let mut by_method = BTreeMap::new();
        match v {
            Value::Array(_) => {
                by_method.insert("ALL".to_owned(), globs(v)?);
            }
            Value::Object(map) => {
                for (method, list) in map {
                    by_method.insert(method.to_ascii_uppercase(), globs(list)?);
                }
            }
            other => {
                return Err(format!(
                    "expected a list of path globs or an object of them per method, found {other}"
                ));
            }
        }
        Ok(Self { by_method })
    }

    /// Whether `method path` is listed.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        // Dot segments and encoded separators are never public: they could
        // make a public-looking path reach a private route.
        let lower = path.to_ascii_lowercase();
        if path.split('/').any(|s| s == "." || s == "..")
            || ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e))
        {
            return false;
        }
        ["ALL", method]
            .iter()
            .filter_map(|m| self.by_method.get(*m))
            .flatten()
            .any(|g| glob(g, path))
    }
}

fn globs(v: &Value) -> Result<Vec<String>, String> {
    let list = string_or_list(v, "routes")?;
    for g in &list {
        if !g.starts_with('/') {
            return Err(format!("route `{g}` must start with `/`"));
        }
    }
    Ok(list)
}

/// Path glob: `*` within one segment, `**` across segments, `?` one character.
pub fn glob(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    segments(&p, &s)
}

fn segments(p: &[&str], s: &[&str]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((&"**", rest)) => (0..=s.len()).any(|i| segments(rest, &s[i..])),
        Some((first, rest)) => match s.split_first() {
            Some((seg, tail)) => segment(first.as_bytes(), seg.as_bytes()) && segments(rest, tail),
            None => false,
        },
    }
}

/// One segment: `*` any run, `?` one byte, iterative with one backtrack point.
fn segment(p: &[u8], t: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        match p.get(i) {
            Some(b'*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(&c) if c == b'?' || c == t[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_and_public_routes() {
        assert!(glob("/health", "/health"));
        assert!(glob("/items/*", "/items/42"));
        assert!(!glob("/items/*", "/items/42/x"));
        assert!(glob("/docs/**", "/docs/a/b/c"));
        assert!(glob("/docs/**", "/docs"));
        assert!(!glob("/a.b", "/aXb"));
        let r = Routes::parse(&json!({"GET": ["/public/**"], "ALL": ["/health"]})).unwrap();
        assert!(r.matches("GET", "/public/x"));
        assert!(!r.matches("POST", "/public/x"));
        assert!(r.matches("POST", "/health"));
        assert!(!r.matches("GET", "/public/../admin"));
        assert!(!r.matches("GET", "/public/%2e%2e/admin"));
    }
}
