//! Version selection: which installed version a `/name@range` request gets.
//!
//! Ranges follow npm's reading, which app authors know: `1` and `1.2` are
//! wildcards (`1.x`, `1.2.x`), a full `1.2.3` is exact, and operators may be
//! separated by spaces (`>=1 <2`). The highest matching version wins.

use semver::{Version, VersionReq};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionQuery {
    /// No `@…`: the unversioned (`latest`) install if there is one, else the highest.
    Any,
    /// `@latest`: only the unversioned install.
    Latest,
    /// One exact version.
    Exact(Version),
    /// A range.
    Range(VersionReq),
}

impl VersionQuery {
    /// Parses the part after `@` (`None` when there is no `@`).
    ///
    /// ```
    /// use buntime::routing::VersionQuery;
    /// assert!(matches!(VersionQuery::parse(Some("1.2.3")), Ok(VersionQuery::Exact(_))));
    /// assert!(matches!(VersionQuery::parse(Some(">=1 <2")), Ok(VersionQuery::Range(_))));
    /// assert!(VersionQuery::parse(Some("not-a-range")).is_err());
    /// ```
    pub fn parse(range: Option<&str>) -> Result<Self, String> {
        let Some(range) = range.map(str::trim) else {
            return Ok(Self::Any);
        };
        if range.is_empty() || range == "*" {
            return Ok(Self::Any);
        }
        if range == "latest" {
            return Ok(Self::Latest);
        }
        if let Ok(v) = Version::parse(range.strip_prefix('v').unwrap_or(range)) {
            return Ok(Self::Exact(v));
        }
        VersionReq::parse(&npm_to_cargo(range))
            .map(Self::Range)
            .map_err(|e| format!("`{range}` is not a version or semver range ({e})"))
    }

    /// The best of `versions` for this query (`None` = the unversioned install).
    pub fn select<'a>(
        &self,
        versions: impl IntoIterator<Item = &'a Version>,
    ) -> Option<&'a Version> {
        let mut versions = versions.into_iter();
        match self {
            // Pre-releases are chosen only by asking for them (or when nothing else exists).
            // One pass, nothing collected: this runs on every request to an
            // app named without an exact version.
            Self::Any | Self::Latest => {
                let (mut release, mut any) = (None::<&Version>, None::<&Version>);
                for v in versions {
                    if v.pre.is_empty() && release.is_none_or(|r| v > r) {
                        release = Some(v);
                    }
                    if any.is_none_or(|a| v > a) {
                        any = Some(v);
                    }
                }
                release.or(any)
            }
            Self::Exact(want) => versions.find(|v| *v == want),
            Self::Range(req) => versions.filter(|v| req.matches(v)).max(),
        }
    }
}

/// Rewrites npm range syntax for the `semver` crate: space-separated
/// comparators become comma-separated, and bare partial versions become
/// wildcards (`1.2` → `1.2.*`) rather than caret ranges.
fn npm_to_cargo(range: &str) -> String {
    // Glue operators to their versions: `>= 1` → `>=1`.
    let mut glued = String::new();
    let mut chars = range.chars().peekable();
    while let Some(c) = chars.next() {
        glued.push(c);
        if matches!(c, '>' | '<' | '=' | '^' | '~') {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
        }
    }
    glued
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let bare = part.chars().next().is_some_and(|c| c.is_ascii_digit());
            if bare && part.matches('.').count() < 2 && !part.contains('*') && !part.contains('x') {
                format!("{part}.*")
            } else {
                part.replace(".x", ".*").replace(".X", ".*")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(query: &str, installed: &[&str]) -> Option<String> {
        let versions: Vec<Version> = installed
            .iter()
            .map(|v| Version::parse(v).unwrap())
            .collect();
        VersionQuery::parse(Some(query))
            .unwrap()
            .select(&versions)
            .map(|v| v.to_string())
    }

    #[test]
    fn resolution_table() {
        let installed = [
            "1.0.0",
            "1.2.0",
            "1.2.5",
            "1.10.1",
            "2.0.0",
            "2.1.0-beta.1",
            "3.0.0",
        ];
        let cases: &[(&str, Option<&str>)] = &[
            ("1.0.0", Some("1.0.0")),
            ("1.2.5", Some("1.2.5")),
            ("1.2.4", None),
            ("1", Some("1.10.1")),
            ("1.2", Some("1.2.5")),
            ("2", Some("2.0.0")),
            ("^1.2", Some("1.10.1")),
            ("^1.2.1", Some("1.10.1")),
            ("~1.2.0", Some("1.2.5")),
            ("~1.2", Some("1.2.5")),
            (">=1 <2", Some("1.10.1")),
            (">= 1.2.0, < 1.3.0", Some("1.2.5")),
            (">2", Some("3.0.0")),
            ("<1.2", Some("1.0.0")),
            ("1.x", Some("1.10.1")),
            ("4", None),
            ("=2.0.0", Some("2.0.0")),
            ("2.1.0-beta.1", Some("2.1.0-beta.1")),
            ("v1.0.0", Some("1.0.0")),
        ];
        for (query, want) in cases {
            assert_eq!(pick(query, &installed).as_deref(), *want, "query {query:?}");
        }
    }

    #[test]
    fn any_picks_the_highest_release() {
        let pick = |installed: &[&str]| {
            let v: Vec<Version> = installed
                .iter()
                .map(|v| Version::parse(v).unwrap())
                .collect();
            let any = VersionQuery::Any.select(&v).map(|v| v.to_string());
            assert_eq!(any, VersionQuery::Latest.select(&v).map(|v| v.to_string()));
            any
        };
        assert_eq!(pick(&["1.0.0", "2.0.0"]), Some("2.0.0".into()));
        assert_eq!(pick(&["2.0.0", "1.0.0"]), Some("2.0.0".into()));
        // A pre-release only when nothing else is installed.
        assert_eq!(
            pick(&["3.0.0-rc.1", "1.0.0", "2.0.0", "2.5.0-beta"]),
            Some("2.0.0".into())
        );
        assert_eq!(
            pick(&["3.0.0-rc.1", "3.0.0-rc.2", "1.0.0-alpha"]),
            Some("3.0.0-rc.2".into())
        );
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn garbage_is_refused_with_a_message() {
        for bad in ["abc", ">=<1", "1.2.3.4.5"] {
            let e = VersionQuery::parse(Some(bad)).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
