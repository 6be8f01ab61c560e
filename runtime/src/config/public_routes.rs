//! `publicRoutes`: the routes of a plugin that answer without a key.
//!
//! A list of globs (`["/health", "/docs/**"]`, every method) or an object of
//! lists per method (`{ "GET": ["/items/*"], "ALL": ["/health"] }`), paths
//! relative to the plugin's base. `*` stays within one path segment, `**`
//! spans segments, `?` is one character.

use serde_json::Value;

/// The methods a per-method `publicRoutes` object may name.
const METHODS: [&str; 8] = [
    "ALL", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
];

/// Parsed `publicRoutes`.
#[derive(Debug, Clone, Default)]
pub struct PublicRoutes {
    /// `(method or "ALL", pattern)`.
    routes: Vec<(String, glob::Pattern)>,
}

impl PartialEq for PublicRoutes {
    fn eq(&self, other: &Self) -> bool {
        self.routes.len() == other.routes.len()
            && self
                .routes
                .iter()
                .zip(&other.routes)
                .all(|((m1, p1), (m2, p2))| m1 == m2 && p1.as_str() == p2.as_str())
    }
}

impl PublicRoutes {
    /// Parses the JSON value; the error says what is wrong.
    ///
    /// ```
    /// use buntime::config::PublicRoutes;
    /// let r = PublicRoutes::parse(&serde_json::json!({ "GET": ["/items/*"], "ALL": ["/health"] })).unwrap();
    /// assert!(r.matches("GET", "/items/1"));
    /// assert!(!r.matches("GET", "/items/1/secret"));
    /// assert!(!r.matches("POST", "/items/1"));
    /// assert!(r.matches("POST", "/health"));
    /// ```
    pub fn parse(value: &Value) -> Result<Self, String> {
        let mut routes = Vec::new();
        let mut add = |method: &str, list: &Value| -> Result<(), String> {
            let Value::Array(items) = list else {
                return Err(format!("expected a list of path globs, found {list}"));
            };
            for item in items {
                let Some(text) = item.as_str().filter(|t| t.starts_with('/')) else {
                    return Err(format!(
                        "expected a path glob starting with `/`, found {item}"
                    ));
                };
                let pattern = glob::Pattern::new(text)
                    .map_err(|e| format!("`{text}` is not a valid glob: {e}"))?;
                routes.push((method.to_owned(), pattern));
            }
            Ok(())
        };
        match value {
            Value::Null => {}
            Value::Array(_) => add("ALL", value)?,
            Value::Object(map) => {
                for (method, list) in map {
                    if !METHODS.contains(&method.as_str()) {
                        return Err(format!("`{method}` is not one of {}", METHODS.join(", ")));
                    }
                    add(method, list)?;
                }
            }
            other => {
                return Err(format!(
                    "expected a list of path globs or an object of them per method, found {other}"
                ));
            }
        }
        Ok(Self { routes })
    }

    /// Whether a `method` request to `path` (relative to the base) is
    /// public. A path with a `.` or `..` segment, or an encoded `.`, `/`
    /// or `\\`, never is: the plugin might resolve it to a route that is not.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if self.routes.is_empty() || ambiguous(path) {
            return false;
        }
        const OPTIONS: glob::MatchOptions = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        self.routes
            .iter()
            .any(|(m, pattern)| (m == "ALL" || m == method) && pattern.matches_with(path, OPTIONS))
    }

    /// Whether no route is public.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes as listings show them: `METHOD pattern`.
    pub fn describe(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|(m, p)| format!("{m} {}", p.as_str()))
            .collect()
    }
}

/// Whether `path` could name another path once decoded or normalised.
fn ambiguous(path: &str) -> bool {
    path.split('/').any(|seg| seg == "." || seg == "..")
        || path.as_bytes().windows(3).any(|w| {
            w[0] == b'%'
                && matches!(
                    (w[1], w[2].to_ascii_lowercase()),
                    (b'2', b'e' | b'f') | (b'5', b'c')
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_keep_to_segments_unless_doubled() {
        let r = PublicRoutes::parse(&json!(["/a/*", "/docs/**", "/x.json"])).expect("valid");
        assert!(r.matches("DELETE", "/a/b"));
        assert!(!r.matches("GET", "/a/b/c"));
        assert!(r.matches("GET", "/docs/a/b.html"));
        assert!(r.matches("GET", "/x.json"));
        assert!(!r.matches("GET", "/xXjson"), "a dot is literal");
        assert!(!r.matches("GET", "/"));
        for sneaky in [
            "/docs/../secret",
            "/docs/%2e%2e/secret",
            "/docs/a%2Fb",
            "/a/./b",
        ] {
            assert!(!r.matches("GET", sneaky), "{sneaky}");
        }
        assert!(PublicRoutes::parse(&Value::Null).expect("null").is_empty());
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (v, needle) in [
            (json!("/a"), "expected a list"),
            (json!(["a"]), "starting with `/`"),
            (json!({"FETCH": ["/a"]}), "`FETCH` is not one of"),
            (json!(["/a[", "/b"]), "not a valid glob"),
        ] {
            let e = PublicRoutes::parse(&v).expect_err("invalid");
            assert!(e.contains(needle), "{e}");
        }
    }
}
