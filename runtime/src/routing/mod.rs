//! From a request path to an installed app version.
//!
//! `/hello` → the unversioned install or the highest version; `/hello@1.0.0`
//! exact; `/hello@1` the highest 1.x; any semver range → the highest match.
//! The app sees its path without the `/name@range` prefix.

mod app_dir;
mod catalog;
mod semver_range;

pub use app_dir::{AppDir, OpenError, OpenedFile};
pub use catalog::{AppVersion, CACHE_TTL, Catalog, LookupError, valid_name};
pub use semver_range::VersionQuery;

/// Splits `/name@range/rest` into (`name`, `range`, `/rest`, `/name@range`).
///
/// ```
/// use buntime::routing::split_app_path;
/// assert_eq!(split_app_path("/hello@1.2/a/b"), Some(("hello", Some("1.2"), "/a/b", "/hello@1.2")));
/// assert_eq!(split_app_path("/hello"), Some(("hello", None, "/", "/hello")));
/// assert_eq!(split_app_path("/"), None);
/// ```
pub fn split_app_path(path: &str) -> Option<(&str, Option<&str>, &str, &str)> {
    let trimmed = path.strip_prefix('/')?;
    let (segment, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, "/"),
    };
    if segment.is_empty() {
        return None;
    }
    let (name, range) = match segment.split_once('@') {
        Some((n, r)) => (n, Some(r)),
        None => (segment, None),
    };
    Some((name, range, rest, &path[..segment.len() + 1]))
}
