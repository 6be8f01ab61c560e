//! Finding apps on disk: the three layouts, several worker dirs in order.
//!
//! ```text
//! apps/hello/1.0.0/      nested
//! apps/hello@2.0.0/      flat
//! apps/notes/            unversioned ("latest")
//! ```
//!
//! Dirs are searched in order; the first dir that provides a version wins.
//! Names and versions are read from the file system on every lookup of a name
//! that is not cached, and positive lookups are cached briefly, so a new deploy
//! is served within [`CACHE_TTL`] without a restart. A miss is never cached:
//! a name, or a range no cached version matches, reads the disk again, so a
//! version installed a moment ago is served at once by its exact URL.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use semver::Version;

use super::app_dir::{AppDir, OpenError};
use super::semver_range::VersionQuery;

/// The version of `versions` that `query` picks.
fn choose(versions: &[Arc<AppVersion>], query: &VersionQuery) -> Option<Arc<AppVersion>> {
    let latest = versions.iter().find(|v| v.version.is_none());
    let chosen = match (query, latest) {
        (VersionQuery::Any | VersionQuery::Latest, Some(l)) => Some(l),
        (VersionQuery::Latest, None) => None,
        _ => query
            .select(versions.iter().filter_map(|v| v.version.as_ref()))
            .and_then(|want| versions.iter().find(|v| v.version.as_ref() == Some(want))),
    };
    chosen.cloned()
}

/// How long a successful lookup is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// One installed version of an app.
///
/// ```
/// use buntime::routing::AppVersion;
/// let app = AppVersion::new("hello", Some(semver::Version::new(1, 2, 3)), "apps/hello/1.2.3".into());
/// assert_eq!(app.key(), "hello@1.2.3");
/// assert_eq!(AppVersion::new("notes", None, "apps/notes".into()).key(), "notes@latest");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppVersion {
    /// The app's name.
    pub name: String,
    /// `None` for an unversioned install (`latest`).
    pub version: Option<Version>,
    /// Its directory.
    pub dir: PathBuf,
    /// `name@version`, formatted once (the request path reads it several times).
    key: String,
    /// Nested layout: the app dir (`apps/hello`) and the version's entry in
    /// it (`1.0.0`), which must resolve inside it. `None`: `dir` is itself a
    /// worker-dir entry.
    nested_in: Option<(PathBuf, OsString)>,
    /// The directory's `(device, inode)` when the catalog found it: a dir
    /// swapped in under the same name (a replaced version) has another, so
    /// the worker pool reloads it.
    identity: Option<(u64, u64)>,
}

impl AppVersion {
    /// The version `version` (`None`: unversioned) of `name`, installed in `dir`.
    pub fn new(name: &str, version: Option<Version>, dir: PathBuf) -> Self {
        let key = match &version {
            Some(v) => format!("{name}@{v}"),
            None => format!("{name}@latest"),
        };
        Self {
            name: name.to_owned(),
            version,
            dir,
            key,
            nested_in: None,
            identity: None,
        }
    }

    /// The same, with the identity of the directory as it is now.
    fn identified(mut self) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            self.identity = std::fs::metadata(&self.dir)
                .ok()
                .map(|m| (m.dev(), m.ino()));
        }
        self
    }

    /// The directory's `(device, inode)` when the catalog found it.
    pub fn identity(&self) -> Option<(u64, u64)> {
        self.identity
    }

    /// Version `version` of `name` in the nested layout: the dir `entry` below
    /// the app dir `app_dir`.
    pub fn nested(name: &str, version: Version, app_dir: &Path, entry: OsString) -> Self {
        Self {
            nested_in: Some((app_dir.to_owned(), entry.clone())),
            ..Self::new(name, Some(version), app_dir.join(entry))
        }
    }

    /// Opens this version's directory as a boundary: a worker-dir entry is
    /// followed wherever it points; a nested version dir must resolve inside
    /// its app dir.
    pub fn open_dir(&self) -> Result<AppDir, OpenError> {
        match &self.nested_in {
            Some((app_dir, entry)) => AppDir::open_nested(app_dir, entry),
            None => AppDir::open_trusted(&self.dir).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => OpenError::NotFound(self.dir.clone()),
                _ => OpenError::Io(self.dir.clone(), e),
            }),
        }
    }

    /// `name@version` (or `name@latest`), the key of this version's pool.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Why a lookup found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No app has this name.
    #[error("no app named `{0}`")]
    UnknownApp(String),
    /// The app exists but no version matches.
    #[error("app `{name}` has no version matching `{query}` (installed: {installed})")]
    NoMatch {
        /// The app.
        name: String,
        /// What was asked.
        query: String,
        /// What exists.
        installed: String,
    },
    /// The range is malformed.
    #[error("{0}")]
    BadRange(String),
}

/// A name's versions and when they were scanned.
type CachedVersions = (Instant, Arc<[Arc<AppVersion>]>);

/// The apps under a list of worker dirs.
#[derive(Debug)]
pub struct Catalog {
    dirs: Vec<PathBuf>,
    cache: Mutex<BTreeMap<String, CachedVersions>>,
}

impl Catalog {
    /// A catalog over `dirs`, searched in order.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self {
            dirs,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// The worker dirs.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Resolves `name` and the part after `@` to one installed version.
    pub fn resolve(&self, name: &str, range: Option<&str>) -> Result<Arc<AppVersion>, LookupError> {
        let query = VersionQuery::parse(range).map_err(LookupError::BadRange)?;
        let mut versions = self.shared_versions(name, false);
        let mut chosen = choose(&versions, &query);
        if chosen.is_none() && !versions.is_empty() {
            // A miss is never answered from the cache: the version asked
            // for may have been installed since (a deploy's printed URL
            // must work at once).
            versions = self.shared_versions(name, true);
            chosen = choose(&versions, &query);
        }
        if versions.is_empty() {
            return Err(LookupError::UnknownApp(name.to_owned()));
        }
        chosen.ok_or_else(|| LookupError::NoMatch {
            name: name.to_owned(),
            query: range.unwrap_or("").to_owned(),
            installed: versions
                .iter()
                .map(|v| {
                    v.version
                        .as_ref()
                        .map_or("latest".to_owned(), Version::to_string)
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Every installed version of `name`, first dir first, without duplicates.
    pub fn versions(&self, name: &str) -> Vec<AppVersion> {
        self.shared_versions(name, false)
            .iter()
            .map(|v| AppVersion::clone(v))
            .collect()
    }

    /// [`Catalog::versions`] without copying a cached list (the request
    /// path): cached for [`CACHE_TTL`], unless `fresh` asks for the disk.
    fn shared_versions(&self, name: &str, fresh: bool) -> Arc<[Arc<AppVersion>]> {
        if !fresh
            && let Ok(cache) = self.cache.lock()
            && let Some((at, found)) = cache.get(name)
            && at.elapsed() < CACHE_TTL
        {
            return found.clone();
        }
        let found: Arc<[Arc<AppVersion>]> = self.scan(name).into_iter().map(Arc::new).collect();
        if !found.is_empty()
            && let Ok(mut cache) = self.cache.lock()
        {
            cache.insert(name.to_owned(), (Instant::now(), found.clone()));
        }
        found
    }

    fn scan(&self, name: &str) -> Vec<AppVersion> {
        if !valid_name(name) {
            return Vec::new();
        }
        let mut out: Vec<AppVersion> = Vec::new();
        let mut push = |v: AppVersion| {
            if !out.iter().any(|o| o.version == v.version) {
                out.push(v.identified());
            }
        };
        for root in &self.dirs {
            let nested = root.join(name);
            let mut nested_versions = false;
            if let Ok(entries) = std::fs::read_dir(&nested) {
                for e in entries.flatten() {
                    let Ok(file_name) = e.file_name().into_string() else {
                        continue;
                    };
                    if let Ok(v) = Version::parse(&file_name)
                        && e.path().is_dir()
                    {
                        nested_versions = true;
                        let version = AppVersion::nested(name, v, &nested, e.file_name());
                        // A version dir that leads out of its app dir (a
                        // symlink to another app, say) is not installed.
                        match version.open_dir() {
                            Err(err @ OpenError::Escapes(_)) => {
                                tracing::debug!(error = %err, "skipped a version dir outside its app dir");
                            }
                            _ => push(version),
                        }
                    }
                }
                if !nested_versions && nested.is_dir() {
                    push(AppVersion::new(name, None, nested.clone()));
                }
            }
            if let Ok(entries) = std::fs::read_dir(root) {
                for e in entries.flatten() {
                    let Ok(file_name) = e.file_name().into_string() else {
                        continue;
                    };
                    let Some((n, v)) = file_name.split_once('@') else {
                        continue;
                    };
                    if n != name || !e.path().is_dir() {
                        continue;
                    }
                    if v == "latest" {
                        push(AppVersion::new(name, None, e.path()));
                    } else if let Ok(v) = Version::parse(v) {
                        push(AppVersion::new(name, Some(v), e.path()));
                    }
                }
            }
        }
        out
    }

    /// Every app in every dir, by name.
    pub fn all(&self) -> BTreeMap<String, Vec<AppVersion>> {
        let mut names = std::collections::BTreeSet::new();
        for root in &self.dirs {
            for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
                if let Ok(n) = e.file_name().into_string() {
                    let n = n.split('@').next().unwrap_or("").to_owned();
                    if valid_name(&n) && e.path().is_dir() {
                        names.insert(n);
                    }
                }
            }
        }
        names
            .into_iter()
            .map(|n| {
                let v = self.scan(&n);
                (n, v)
            })
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }
}

/// App names: letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_installed_after_a_cached_lookup_is_found_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("hello/1.0.0")).expect("mkdir");
        let catalog = Catalog::new(vec![dir.path().to_owned()]);
        let first = catalog.resolve("hello", Some("1")).expect("1.0.0");
        assert_eq!(first.key(), "hello@1.0.0");
        // Installed within the cache's lifetime: a miss reads the disk again.
        std::fs::create_dir_all(dir.path().join("hello/1.3.0")).expect("mkdir");
        let new = catalog.resolve("hello", Some("1.3.0")).expect("1.3.0");
        assert_eq!(new.key(), "hello@1.3.0");
        // What is still missing is a miss, naming what is installed.
        match catalog.resolve("hello", Some("2")) {
            Err(LookupError::NoMatch { installed, .. }) => {
                assert!(installed.contains("1.3.0"), "{installed}");
            }
            other => panic!("{other:?}"),
        }
    }
}
