//! Host-name patterns for outbound HTTP grants.
//!
//! These follow the Extism manifest's `allowed_hosts` (a glob over the host name
//! only), which is what `extism:host/env::http_request` promises guests.
//! Matching is case-insensitive, as DNS names are.

use super::GrantError;

/// A host-name glob: `*` matches any run of characters, `?` exactly one.
///
/// ```
/// use buntime::capabilities::HostPattern;
/// let p = HostPattern::parse("*.example.com").unwrap();
/// assert!(p.matches("a.b.example.com"));
/// assert!(!p.matches("example.com"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    pattern: String,
}

impl HostPattern {
    /// Parses a pattern; it must be non-empty and contain only host-name
    /// characters and wildcards.
    pub fn parse(pattern: &str) -> Result<Self, GrantError> {
        let invalid = |reason| GrantError::InvalidHostPattern {
            pattern: pattern.to_owned(),
            reason,
        };
        if pattern.is_empty() {
            return Err(invalid("the pattern is empty"));
        }
        // Colons and brackets only inside an IPv6 literal such as `[::1]`.
        let ipv6 = pattern.starts_with('[') && pattern.ends_with(']');
        let allowed = |c: char| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '-' | '_' | '*' | '?')
                || (ipv6 && matches!(c, ':' | '[' | ']'))
        };
        if !pattern.chars().all(allowed) {
            return Err(invalid(
                "only host-name characters and the wildcards `*` and `?` are allowed (no scheme, path or port)",
            ));
        }
        Ok(Self {
            pattern: pattern.to_ascii_lowercase(),
        })
    }

    /// The pattern as written (lower case).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `host` matches, in any case (the pattern is lower case; the
    /// host's bytes are lowered as they are compared, not copied first:
    /// every outbound call and proxied request checks its host).
    pub fn matches(&self, host: &str) -> bool {
        glob_match_by(self.pattern.as_bytes(), host.as_bytes(), |p, t| {
            p == b'?' || p == t.to_ascii_lowercase()
        })
    }
}

impl HostPattern {
    /// Whether every host `other` matches is matched by `self` too. `other`
    /// is read as a glob: a `*` in `self` may stand for any run of it
    /// (wildcards included), a `?` for one character that is not `*`, and a
    /// literal only for the same literal. A sufficient test: it never says
    /// yes wrongly, and says no only to contrived pairs.
    ///
    /// ```
    /// use buntime::capabilities::HostPattern;
    /// let p = |s| HostPattern::parse(s).unwrap();
    /// assert!(p("*").covers(&p("*.example.com")));
    /// assert!(p("*.example.com").covers(&p("a?.example.com")));
    /// assert!(!p("*.example.com").covers(&p("*")));
    /// assert!(!p("a?c").covers(&p("a*c")));
    /// ```
    pub fn covers(&self, other: &HostPattern) -> bool {
        glob_match_by(self.pattern.as_bytes(), other.pattern.as_bytes(), |p, t| {
            p == t || (p == b'?' && t != b'*')
        })
    }
}

/// Iterative glob matcher with single-star backtracking: linear in practice and
/// free of the recursion a hostile pattern could exploit.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    glob_match_by(pattern, text, |p, t| p == b'?' || p == t)
}

/// [`glob_match`] with `one(pattern byte, text byte)` deciding whether a
/// non-`*` pattern byte matches one text byte.
fn glob_match_by(pattern: &[u8], text: &[u8], one: impl Fn(u8, u8) -> bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if one(c, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases = [
            ("example.com", "example.com", true),
            ("example.com", "EXAMPLE.com", true),
            ("example.com", "example.org", false),
            ("*.example.com", "api.example.com", true),
            ("*.example.com", "example.com", false),
            ("*", "anything.at.all", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.?", "127.0.0.2", true),
            ("127.0.0.?", "127.0.0.22", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ];
        for (pattern, host, want) in cases {
            let p = HostPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(host), want, "{pattern} vs {host}");
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "http://example.com",
            "example.com/path",
            "exa mple.com",
            "example.com:8080",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
