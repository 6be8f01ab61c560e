//! Globs for roles, apps and paths, compiled once when a policy is loaded.
//!
//! Every character other than the wildcards is literal (`a.b` never matches
//! `aXb`): a glob is turned into a regex only through [`regex::escape`], and
//! the common shapes (a literal, `prefix/**`, `*`) skip the regex engine
//! altogether, so a decision over many policies stays cheap.

use regex::Regex;

/// How `*` behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Names (roles, apps): `*` is any run of characters, `?` one character.
    Name,
    /// Paths: `*` stays within one `/` segment, `**` spans segments, `?` is
    /// one character other than `/`; a trailing `/**` also matches the path
    /// without it (`/api/**` covers `/api`).
    Path,
}

/// A compiled glob.
#[derive(Debug, Clone)]
pub enum Glob {
    /// Matches everything (`*`, or `/**` for paths).
    Any,
    /// Matches exactly this text.
    Exact(String),
    /// Names: anything starting with this text.
    NamePrefix(String),
    /// Paths: this path and everything under it (`/api/**`: `/api`, `/api/x/y`).
    PathPrefix(String),
    /// The general case.
    Pattern(Regex),
}

impl Glob {
    /// Compiles `text`; an error says what is wrong with it.
    pub fn new(text: &str, kind: Kind) -> Result<Self, String> {
        if text.is_empty() {
            return Err(
                "an empty pattern matches nothing: leave the field out to match everything".into(),
            );
        }
        let wild = |c: char| c == '*' || c == '?';
        match kind {
            Kind::Name if text == "*" => return Ok(Self::Any),
            Kind::Path if text == "/**" || text == "**" => return Ok(Self::Any),
            _ => {}
        }
        if !text.contains(wild) {
            return Ok(Self::Exact(text.to_owned()));
        }
        match kind {
            Kind::Name => {
                if let Some(prefix) = text.strip_suffix('*')
                    && !prefix.contains(wild)
                {
                    return Ok(Self::NamePrefix(prefix.to_owned()));
                }
            }
            Kind::Path => {
                if let Some(prefix) = text.strip_suffix("/**")
                    && !prefix.contains(wild)
                {
                    return Ok(Self::PathPrefix(prefix.to_owned()));
                }
            }
        }
        let mut re = String::from("^");
        let mut rest = text;
        if kind == Kind::Path
            && let Some(stem) = text.strip_suffix("/**")
        {
            rest = stem;
        }
        let mut chars = rest.chars().peekable();
        let mut literal = String::new();
        while let Some(c) = chars.next() {
            let piece = match (c, kind) {
                ('*', Kind::Path) if chars.peek() == Some(&'*') => {
                    chars.next();
                    Some(".*")
                }
                ('*', Kind::Path) => Some("[^/]*"),
                ('?', Kind::Path) => Some("[^/]"),
                ('*', Kind::Name) => Some(".*"),
                ('?', Kind::Name) => Some("."),
                _ => None,
            };
            match piece {
                Some(p) => {
                    re.push_str(&regex::escape(&literal));
                    literal.clear();
                    re.push_str(p);
                }
                None => literal.push(c),
            }
        }
        re.push_str(&regex::escape(&literal));
        if rest.len() != text.len() {
            re.push_str("(?:/.*)?");
        }
        re.push('$');
        // `(?s)`: a `*` also covers a newline, which a percent-decoded path
        // may hold.
        Regex::new(&format!("(?s){re}"))
            .map(Self::Pattern)
            .map_err(|e| format!("`{text}` does not compile: {e}"))
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(e) => e == text,
            Self::NamePrefix(p) => text.starts_with(p.as_str()),
            Self::PathPrefix(p) => text
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            Self::Pattern(re) => re.is_match(text),
        }
    }
}
