//! One granted directory and the file operations below it.
//!
//! A guest's path is first checked as text ([`relative`]: no absolute path,
//! no `..`, no NUL or backslash), then every operation runs *below an open
//! handle* on the root with `cap-primitives` (as app dirs are served, see
//! `routing::app_dir`): the open is the check, so a symlink pointing out —
//! or swapped in after a check — is refused by the kernel walk itself
//! (`openat2` with `RESOLVE_BENEATH`, or a component-by-component walk).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use cap_primitives::fs::{
    DirOptions, FollowSymlinks, OpenOptions, create_dir, open, open_ambient_dir, open_dir,
    read_dir, remove_dir, remove_dir_all, remove_file, rename, stat,
};
use serde::Serialize;

/// Why a file operation failed. Each names the path as the guest wrote it.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path is not a plain relative path.
    #[error("`{path}` is not allowed: {reason}")]
    BadPath {
        /// As written.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The path (or a symlink on it) leads outside the granted root.
    #[error("`{0}` leads outside the granted directory (a symlink pointing out)")]
    Escapes(String),
    /// Nothing is there.
    #[error("`{0}` does not exist")]
    NotFound(String),
    /// Something is already there.
    #[error("`{0}` already exists")]
    Exists(String),
    /// A size or count limit.
    #[error("{0}")]
    Limit(String),
    /// The entry is of the wrong kind for the operation.
    #[error("{0}")]
    Kind(String),
    /// Any other I/O failure.
    #[error("`{0}`: {1}")]
    Io(String, io::Error),
}

impl FsError {
    pub(super) fn of(path: &str, e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => Self::NotFound(path.to_owned()),
            io::ErrorKind::AlreadyExists => Self::Exists(path.to_owned()),
            io::ErrorKind::DirectoryNotEmpty => Self::Exists(path.to_owned()),
            // cap-primitives reports an escape as `PermissionDenied` without
            // an OS error code; a real `EACCES` carries one.
            io::ErrorKind::PermissionDenied if e.raw_os_error().is_none() => {
                Self::Escapes(path.to_owned())
            }
            _ => Self::Io(path.to_owned(), e),
        }
    }

    /// The error code guests see.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadPath { .. } | Self::Escapes(_) => "capability_denied",
            Self::NotFound(_) => "not_found",
            Self::Exists(_) => "exists",
            Self::Limit(_) => "limit_exceeded",
            Self::Kind(_) => "invalid_argument",
            Self::Io(..) => "io",
        }
    }
}

/// Checks `path` as text and returns it as a relative path of normal
/// components (`.` dropped). Empty (or `.`) is the root itself.
///
/// ```
/// use buntime::capabilities::fs_relative as relative;
/// assert_eq!(relative("a/./b").unwrap(), std::path::PathBuf::from("a/b"));
/// assert!(relative("../x").is_err());
/// assert!(relative("/etc/passwd").is_err());
/// assert!(relative("a\\..\\b").is_err());
/// ```
pub fn relative(path: &str) -> Result<PathBuf, FsError> {
    let bad = |reason| FsError::BadPath {
        path: path.to_owned(),
        reason,
    };
    if path.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    if path.contains('\\') {
        return Err(bad("it contains a backslash; separate components with `/`"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(bad(
                    "`..` is refused; paths are relative to the granted directory",
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad(
                    "absolute paths are refused; paths are relative to the granted directory",
                ));
            }
        }
    }
    Ok(out)
}

/// `rel`, or `.` for the root itself (an empty path opens nothing).
pub(super) fn at(rel: &Path) -> &Path {
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

/// One entry of a listing, or what `stat` answers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EntryInfo {
    /// Its name (listings only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: &'static str,
    /// Bytes (files).
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified: u64,
}

fn kind_of(t: cap_primitives::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else {
        "other"
    }
}

fn info(name: String, meta: &cap_primitives::fs::Metadata) -> EntryInfo {
    EntryInfo {
        name,
        kind: kind_of(meta.file_type()),
        size: meta.len(),
        modified: meta
            .modified()
            .ok()
            .and_then(|t| t.into_std().duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64),
    }
}

/// An open granted directory.
#[derive(Debug)]
pub struct Root {
    handle: File,
}

impl Root {
    /// Opens the granted directory `dir` (the operator's choice: followed).
    pub fn open(dir: &Path) -> Result<Self, FsError> {
        let handle = open_ambient_dir(dir, cap_primitives::ambient_authority())
            .map_err(|e| FsError::of(&dir.display().to_string(), e))?;
        Ok(Self { handle })
    }

    /// A root over an already open directory.
    pub(super) fn from_handle(handle: File) -> Self {
        Self { handle }
    }

    /// Opens regular file `rel` (already checked) for reading.
    pub(super) fn open_file(&self, rel: &Path) -> Result<File, FsError> {
        let shown = rel.display().to_string();
        let mut options = OpenOptions::new();
        options.read(true)._cap_fs_ext_nonblock(true);
        let file = open(&self.handle, rel, &options).map_err(|e| FsError::of(&shown, e))?;
        match file.metadata() {
            Ok(m) if m.is_file() => Ok(file),
            Ok(_) => Err(FsError::Kind(format!("`{shown}` is not a regular file"))),
            Err(e) => Err(FsError::of(&shown, e)),
        }
    }

    /// The handle, for operations below it.
    pub(super) fn handle(&self) -> &File {
        &self.handle
    }

    /// The entries of directory `path`, sorted by name.
    pub fn list(&self, path: &str, limit: usize) -> Result<Vec<EntryInfo>, FsError> {
        let rel = relative(path)?;
        let mut out = Vec::new();
        for entry in read_dir(&self.handle, at(&rel)).map_err(|e| FsError::of(path, e))? {
            let entry = entry.map_err(|e| FsError::of(path, e))?;
            if out.len() >= limit {
                return Err(FsError::Limit(format!(
                    "`{path}` holds more than {limit} entries"
                )));
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().map_err(|e| FsError::of(path, e))?;
            out.push(info(name, &meta));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// What is at `path` (a symlink is reported as such, not followed);
    /// `None` when nothing is.
    pub fn stat(&self, path: &str) -> Result<Option<EntryInfo>, FsError> {
        let rel = relative(path)?;
        match stat(&self.handle, at(&rel), FollowSymlinks::No) {
            Ok(meta) => Ok(Some(info(String::new(), &meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::of(path, e)),
        }
    }

    /// The bytes of regular file `path`, at most `max`.
    pub fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, FsError> {
        let rel = relative(path)?;
        let mut options = OpenOptions::new();
        options.read(true)._cap_fs_ext_nonblock(true);
        let file = open(&self.handle, &rel, &options).map_err(|e| FsError::of(path, e))?;
        let meta = file.metadata().map_err(|e| FsError::of(path, e))?;
        if !meta.is_file() {
            return Err(FsError::Kind(format!("`{path}` is not a regular file")));
        }
        if meta.len() > max {
            return Err(FsError::Limit(format!(
                "`{path}` is {} bytes; reads are limited to {max}",
                meta.len()
            )));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FsError::of(path, e))?;
        Ok(bytes)
    }

    /// Writes `data` to `path`: appended, or replacing the file atomically (a
    /// temporary sibling renamed over it), so a reader sees the old bytes or
    /// the new ones. `create_dirs` makes missing parents.
    pub fn write(
        &self,
        path: &str,
        data: &[u8],
        append: bool,
        create_dirs: bool,
    ) -> Result<(), FsError> {
        let rel = relative(path)?;
        let Some(name) = rel.file_name().map(|n| n.to_owned()) else {
            return Err(FsError::Kind(
                "cannot write to the granted directory itself".into(),
            ));
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        if create_dirs {
            self.mkdir_all(parent, path)?;
        }
        if append {
            let mut options = OpenOptions::new();
            options.append(true).create(true);
            let mut file = open(&self.handle, &rel, &options).map_err(|e| FsError::of(path, e))?;
            return file.write_all(data).map_err(|e| FsError::of(path, e));
        }
        let tmp = parent.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            super::random_suffix()
        ));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let mut file = open(&self.handle, &tmp, &options).map_err(|e| FsError::of(path, e))?;
        let written = file.write_all(data).and_then(|()| file.sync_data());
        drop(file);
        let result = written.and_then(|()| rename(&self.handle, &tmp, &self.handle, &rel));
        if let Err(e) = result {
            let _ = remove_file(&self.handle, &tmp);
            return Err(FsError::of(path, e));
        }
        Ok(())
    }

    /// Creates file `path`, which must not exist, for writing; with
    /// `create_dirs` its missing parents too.
    pub fn create_new(&self, path: &str, create_dirs: bool) -> Result<File, FsError> {
        let rel = relative(path)?;
        if rel.file_name().is_none() {
            return Err(FsError::Kind(
                "cannot write to the granted directory itself".into(),
            ));
        }
        if create_dirs {
            self.mkdir_all(rel.parent().unwrap_or(Path::new("")), path)?;
        }
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        open(&self.handle, &rel, &options).map_err(|e| FsError::of(path, e))
    }

    /// Creates `rel` and its missing parents.
    pub(super) fn mkdir_all(&self, rel: &Path, shown: &str) -> Result<(), FsError> {
        let mut at = PathBuf::new();
        for part in rel.components() {
            at.push(part);
            match create_dir(&self.handle, &at, &DirOptions::new()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // Must be a directory we can enter (not a file, not a
                    // symlink out).
                    open_dir(&self.handle, &at).map_err(|e| FsError::of(shown, e))?;
                }
                Err(e) => return Err(FsError::of(shown, e)),
            }
        }
        Ok(())
    }

    /// Makes directory `path` (with `parents`, its missing parents too).
    pub fn mkdir(&self, path: &str, parents: bool) -> Result<(), FsError> {
        let rel = relative(path)?;
        if parents {
            return self.mkdir_all(&rel, path);
        }
        create_dir(&self.handle, &rel, &DirOptions::new()).map_err(|e| FsError::of(path, e))
    }

    /// Renames `from` to `to` (both below this root). A directory replaces
    /// only a missing or empty one; `rename(2)` is atomic.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        let (a, b) = (relative(from)?, relative(to)?);
        if a.as_os_str().is_empty() || b.as_os_str().is_empty() {
            return Err(FsError::Kind(
                "cannot rename the granted directory itself".into(),
            ));
        }
        rename(&self.handle, &a, &self.handle, &b).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => FsError::NotFound(from.to_owned()),
            _ => FsError::of(to, e),
        })
    }

    /// Swaps `a` and `b`, which must both exist, in one
    /// `renameat2(RENAME_EXCHANGE)`: whoever opens either path sees one of
    /// the two entries whole, never neither (Linux only). Each parent is
    /// opened below this root and the last components are plain names, so
    /// neither side can lead out.
    pub fn exchange(&self, a: &str, b: &str) -> Result<(), FsError> {
        let (ra, rb) = (relative(a)?, relative(b)?);
        let (Some(na), Some(nb)) = (ra.file_name(), rb.file_name()) else {
            return Err(FsError::Kind(
                "cannot exchange the granted directory itself".into(),
            ));
        };
        let parent = |rel: &Path, shown: &str| {
            open_dir(&self.handle, at(rel.parent().unwrap_or(Path::new(""))))
                .map_err(|e| FsError::of(shown, e))
        };
        let (pa, pb) = (parent(&ra, a)?, parent(&rb, b)?);
        exchange_at(&pa, na, &pb, nb).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => FsError::NotFound(format!("{a}` or `{b}")),
            _ => FsError::of(b, e),
        })
    }

    /// Removes `path`: a file or symlink, an empty directory, or with
    /// `recursive` a whole directory (symlinks in it are removed, not
    /// followed).
    pub fn remove(&self, path: &str, recursive: bool) -> Result<(), FsError> {
        let rel = relative(path)?;
        if rel.as_os_str().is_empty() {
            return Err(FsError::Kind(
                "cannot remove the granted directory itself".into(),
            ));
        }
        let meta =
            stat(&self.handle, &rel, FollowSymlinks::No).map_err(|e| FsError::of(path, e))?;
        let result = if !meta.is_dir() {
            remove_file(&self.handle, &rel)
        } else if recursive {
            remove_dir_all(&self.handle, &rel)
        } else {
            remove_dir(&self.handle, &rel)
        };
        result.map_err(|e| FsError::of(path, e))
    }

    /// Opens directory `path` below this root.
    pub(super) fn open_dir(&self, path: &str) -> Result<File, FsError> {
        let rel = relative(path)?;
        open_dir(&self.handle, at(&rel)).map_err(|e| FsError::of(path, e))
    }
}

#[cfg(target_os = "linux")]
fn exchange_at(pa: &File, a: &std::ffi::OsStr, pb: &File, b: &std::ffi::OsStr) -> io::Result<()> {
    rustix::fs::renameat_with(pa, a, pb, b, rustix::fs::RenameFlags::EXCHANGE).map_err(Into::into)
}

#[cfg(not(target_os = "linux"))]
fn exchange_at(_: &File, _: &std::ffi::OsStr, _: &File, _: &std::ffi::OsStr) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "an atomic exchange needs Linux (renameat2 with RENAME_EXCHANGE)",
    ))
}
