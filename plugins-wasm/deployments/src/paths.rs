//! Names, versions and paths as the routes accept them, checked before any
//! file is touched. The host's `fs` capability keeps every path inside the
//! worker dir whatever happens here; these checks keep a file path inside
//! its *version* (the worker dir holds every app).

/// App names: letters, digits, `-`, `_` and `.`, not starting with `.`, at
/// most 128 bytes (as the host's catalog reads them).
///
/// ```
/// use plugin_deployments::paths::valid_name;
/// assert!(valid_name("hello-world"));
/// assert!(!valid_name(".staging"));
/// assert!(!valid_name("a/b"));
/// ```
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A version `MAJOR.MINOR.PATCH[-pre][+build]` as its numbers.
///
/// ```
/// use plugin_deployments::paths::version;
/// assert_eq!(version("1.2.3"), Some((1, 2, 3)));
/// assert_eq!(version("1.2.3-rc.1"), Some((1, 2, 3)));
/// assert_eq!(version("1.2"), None);
/// assert_eq!(version("../1.2.3"), None);
/// ```
pub fn version(text: &str) -> Option<(u64, u64, u64)> {
    if text.len() > 64
        || !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
    {
        return None;
    }
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let mut num = || -> Option<u64> {
        let p = parts.next()?;
        if p.is_empty() || (p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        p.parse().ok()
    };
    let v = (num()?, num()?, num()?);
    parts.next().is_none().then_some(v)
}

/// Whether `a` and `b` answer the same caret pin (`name@1` for 1.x, `@0.3`
/// for 0.3.x, the exact version for 0.0.x).
///
/// ```
/// use plugin_deployments::paths::same_pin;
/// assert!(same_pin((1, 2, 0), (1, 9, 1)));
/// assert!(!same_pin((1, 2, 0), (2, 0, 0)));
/// assert!(!same_pin((0, 2, 0), (0, 3, 0)));
/// ```
pub fn same_pin(a: (u64, u64, u64), b: (u64, u64, u64)) -> bool {
    match (a, b) {
        ((0, 0, x), (0, 0, y)) => x == y,
        ((0, x, _), (0, y, _)) => x == y,
        ((x, _, _), (y, _, _)) => x == y && x > 0,
    }
}

/// A file path inside a version as the client wrote it: components joined
/// by `/`, without `.`, empty ones dropped; `..`, backslashes and control
/// characters refused.
///
/// ```
/// use plugin_deployments::paths::clean;
/// assert_eq!(clean("a//./b.txt").unwrap(), "a/b.txt");
/// assert_eq!(clean("").unwrap(), "");
/// assert!(clean("a/../../other/1.0.0/x").is_err());
/// assert!(clean("a\\b").is_err());
/// ```
pub fn clean(path: &str) -> Result<String, String> {
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "`{path}` is not a valid file path: no backslashes or control characters"
        ));
    }
    let mut out = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "`{path}` is not a valid file path: `..` is refused; paths are relative to the version"
                ));
            }
            p => out.push(p),
        }
    }
    Ok(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_cannot_leave_the_version() {
        for bad in ["..", "a/../../b", "../2.0.0/x", "a\\b", "a\nb", "a\0b"] {
            assert!(clean(bad).is_err(), "{bad:?}");
        }
        assert_eq!(clean("/a//b/./c/").unwrap(), "a/b/c");
    }

    #[test]
    fn versions_and_pins() {
        assert_eq!(version("10.0.1+build.5"), Some((10, 0, 1)));
        for bad in ["01.0.0", "1.0", "1.0.0.0", "v1.0.0", "1.0.0/..", ""] {
            assert_eq!(version(bad), None, "{bad:?}");
        }
        assert!(same_pin((0, 0, 3), (0, 0, 3)));
        assert!(!same_pin((0, 0, 3), (0, 0, 4)));
        assert!(!valid_name("") && !valid_name("a b") && valid_name("a.b_c-1"));
    }
}
