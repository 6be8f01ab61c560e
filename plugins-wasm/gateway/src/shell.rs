//! The app shell: browser navigations are served by one configured app
//! (a micro-frontend shell that loads the other apps in frames), except
//! for excluded first segments (pure; no host calls).

use serde_json::Value;

use crate::config::{ConfigError, err, list};

/// Most basenames a client may exclude with the cookie.
const MAX_COOKIE_EXCLUDES: usize = 64;

/// The cookie in which a client lists first segments it wants served
/// directly (`a,b`).
pub const EXCLUDES_COOKIE: &str = "gateway_shell_excludes";

/// The `shell` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shell {
    /// The app that serves navigations (`name` or `name@range`).
    pub app: String,
    /// First path segments never served by the shell.
    pub excludes: Vec<String>,
}

/// A first path segment as excludes name it.
fn basename(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Shell {
    /// Parses the `shell` section.
    pub fn parse(v: &Value) -> Result<Self, ConfigError> {
        let Some(obj) = v.as_object() else {
            return err(format!("`shell` must be an object or null, found {v}"));
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !["app", "excludes"].contains(&k.as_str()))
        {
            return err(format!(
                "`shell.{k}` is not an option; known: app, excludes"
            ));
        }
        let app = match v.get("app").and_then(Value::as_str) {
            Some(a)
                if !a.is_empty()
                    && !a.starts_with('_')
                    && a.bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?') =>
            {
                a.to_owned()
            }
            _ => {
                return err(format!(
                    "`shell.app` must name an installed app (`shell`, `shell@1`), found {}",
                    v.get("app").unwrap_or(&Value::Null)
                ));
            }
        };
        let excludes = list(
            v.get("excludes"),
            "shell.excludes",
            "a first path segment (letters, digits, `-`, `_`)",
            |e| e.as_str().filter(|s| basename(s)).map(str::to_owned),
        )?
        .unwrap_or_default();
        Ok(Self { app, excludes })
    }

    /// The path the request should take to the shell, or `None` when it
    /// goes where it was going. `dest` is `Sec-Fetch-Dest`, `accept` the
    /// `Accept` header, `cookie` the `Cookie` header.
    pub fn route(
        &self,
        method: &str,
        path: &str,
        dest: Option<&str>,
        accept: Option<&str>,
        cookie: Option<&str>,
    ) -> Option<String> {
        if !matches!(method, "GET" | "HEAD") || path == "/_" || path.starts_with("/_/") {
            return None;
        }
        let rest = path.strip_prefix('/')?;
        let (first, deeper) = match rest.split_once('/') {
            Some((f, _)) => (f, true),
            None => (rest, false),
        };
        let app_name = self.app.split('@').next().unwrap_or(&self.app);
        let own = first.split('@').next().unwrap_or(first);
        if own == app_name
            || self.excludes.iter().any(|e| e == first)
            || cookie_excludes(cookie).any(|e| e == first)
        {
            return None;
        }
        let navigation = match dest {
            Some(d) => d.eq_ignore_ascii_case("document"),
            // No fetch metadata (an older browser, or not a browser): a
            // top-level page that asks for HTML.
            None => !deeper && accept.is_some_and(|a| a.contains("text/html")),
        };
        navigation.then(|| format!("/{}{path}", self.app))
    }
}

/// The basenames a client lists in the [`EXCLUDES_COOKIE`] cookie.
fn cookie_excludes(cookie: Option<&str>) -> impl Iterator<Item = &str> {
    cookie
        .into_iter()
        .flat_map(|c| c.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| *k == EXCLUDES_COOKIE)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|s| basename(s))
        .take(MAX_COOKIE_EXCLUDES)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn navigations_go_to_the_shell() {
        let s = Shell::parse(&json!({ "app": "shell", "excludes": ["api"] })).unwrap();
        let doc = Some("document");
        assert_eq!(
            s.route("GET", "/hello/x", doc, None, None).as_deref(),
            Some("/shell/hello/x")
        );
        assert_eq!(
            s.route("GET", "/", doc, None, None).as_deref(),
            Some("/shell/")
        );
        assert_eq!(s.route("GET", "/hello/x", Some("iframe"), None, None), None);
        assert_eq!(s.route("GET", "/hello/x", Some("empty"), None, None), None);
        assert_eq!(s.route("POST", "/hello/x", doc, None, None), None);
        assert_eq!(s.route("GET", "/api/x", doc, None, None), None);
        assert_eq!(s.route("GET", "/_/gateway/api", doc, None, None), None);
        assert_eq!(s.route("GET", "/shell/assets/a.js", doc, None, None), None);
        let cookie = Some("a=1; gateway_shell_excludes=hello,x y");
        assert_eq!(s.route("GET", "/hello/x", doc, None, cookie), None);
        // Without fetch metadata: top-level HTML pages only.
        let html = Some("text/html,*/*");
        assert_eq!(
            s.route("GET", "/hello", None, html, None).as_deref(),
            Some("/shell/hello")
        );
        assert_eq!(s.route("GET", "/hello/x", None, html, None), None);
        assert_eq!(s.route("GET", "/hello", None, Some("*/*"), None), None);
        assert!(Shell::parse(&json!({ "app": "a/b" })).is_err());
        assert!(Shell::parse(&json!({ "app": "s", "excludes": ["a/b"] })).is_err());
    }
}
