//! An app version's directory as a boundary.
//!
//! Every file the runtime opens for an app — `worker.jsonc`, the entrypoint
//! module, static files, their precompressed `.br` / `.gz` siblings and the
//! single-page fallback — is opened *below* an open handle on the version dir
//! with `cap-primitives` (the core of `cap-std`): on Linux 5.6 and later one
//! `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, elsewhere (or where
//! a seccomp filter hides `openat2`) component by component with `O_NOFOLLOW`,
//! following each symlink by hand and refusing any step above the handle. The
//! check *is* the open, so there is no window between checking a path and
//! using it: swapping a symlink after the check changes nothing, because the
//! file read is the one that was checked.
//!
//! What may be followed: the worker-dir entry itself (`apps/hello`,
//! `apps/hello@1.0.0`, `apps/notes` may be symlinks: where they point is the
//! operator's choice). Below it nothing may lead out: a nested version dir
//! (`apps/hello/1.0.0`) must resolve inside `apps/hello`, and every file must
//! resolve inside its version dir (not even into a sibling version).
//!
//! Limits: an absolute symlink is refused even when it points inside (use a
//! relative one); a hard link is a real directory entry and is served (it needs
//! the same file system and, with `fs.protected_hardlinks`, ownership of the
//! target); a bind mount inside an app dir is the operator's doing and is
//! followed.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cap_primitives::fs::{OpenOptions, open, open_ambient_dir, open_dir};

/// Why a file below an app version dir could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path (or a symlink on it) leads outside the version dir.
    #[error(
        "`{0}` leads outside the app directory (an absolute path, `..` or a symlink pointing out)"
    )]
    Escapes(PathBuf),
    /// Nothing is there.
    #[error("`{0}` does not exist")]
    NotFound(PathBuf),
    /// It exists but cannot be read.
    #[error("cannot open `{0}`: {1}")]
    Io(PathBuf, io::Error),
}

impl OpenError {
    fn of(path: &Path, e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
                Self::NotFound(path.to_owned())
            }
            // cap-primitives reports an escape as `PermissionDenied` without an
            // OS error code; a real `EACCES` carries one.
            io::ErrorKind::PermissionDenied if e.raw_os_error().is_none() => {
                Self::Escapes(path.to_owned())
            }
            _ => Self::Io(path.to_owned(), e),
        }
    }
}

/// An open handle on one app version's directory; files are opened below it.
#[derive(Debug)]
pub struct AppDir {
    handle: File,
}

/// A file opened below an [`AppDir`], with its metadata (from the open handle).
#[derive(Debug)]
pub struct OpenedFile {
    /// The open file.
    pub file: File,
    /// Its metadata, read from the handle (`fstat`).
    pub meta: Metadata,
}

impl AppDir {
    /// Opens `dir` (following symlinks: the caller vouches for it).
    pub fn open_trusted(dir: &Path) -> io::Result<Self> {
        let handle = open_ambient_dir(dir, cap_primitives::ambient_authority())?;
        Ok(Self { handle })
    }

    /// Opens the version dir `name` below the app dir `app` (the nested
    /// layout): `app` is followed, `name` must resolve inside it.
    pub fn open_nested(app: &Path, name: &OsString) -> Result<Self, OpenError> {
        let parent = Self::open_trusted(app).map_err(|e| OpenError::of(app, e))?;
        let handle = open_dir(&parent.handle, Path::new(name))
            .map_err(|e| OpenError::of(&app.join(name), e))?;
        Ok(Self { handle })
    }

    /// Opens `relative` for reading. A directory opens too (check
    /// `meta.is_dir()`).
    pub fn open(&self, relative: &Path) -> Result<OpenedFile, OpenError> {
        // Non-blocking, so a FIFO in an app dir cannot hang the opening
        // thread waiting for a writer (reads of regular files are unaffected).
        // The `_cap_fs_ext_*` setters are the ones `cap-fs-ext` exposes.
        let mut options = OpenOptions::new();
        options
            .read(true)
            ._cap_fs_ext_nonblock(true)
            ._cap_fs_ext_maybe_dir(true);
        let file =
            open(&self.handle, relative, &options).map_err(|e| OpenError::of(relative, e))?;
        let meta = file
            .metadata()
            .map_err(|e| OpenError::Io(relative.to_owned(), e))?;
        Ok(OpenedFile { file, meta })
    }

    /// Opens `relative`, which must be a regular file.
    pub fn open_file(&self, relative: &Path) -> Result<OpenedFile, OpenError> {
        let opened = self.open(relative)?;
        if opened.meta.is_file() {
            Ok(opened)
        } else {
            Err(OpenError::NotFound(relative.to_owned()))
        }
    }

    /// Whether `relative` is a regular file inside the dir.
    pub fn is_file(&self, relative: &Path) -> bool {
        self.open_file(relative).is_ok()
    }

    /// Reads the whole regular file `relative`.
    pub fn read(&self, relative: &Path) -> Result<Vec<u8>, OpenError> {
        let mut opened = self.open_file(relative)?;
        let mut bytes = Vec::with_capacity(opened.meta.len() as usize);
        opened
            .file
            .read_to_end(&mut bytes)
            .map_err(|e| OpenError::Io(relative.to_owned(), e))?;
        Ok(bytes)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn files_resolve_inside_or_not_at_all() {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("app");
        std::fs::create_dir_all(app.join("sub")).unwrap();
        std::fs::write(app.join("a.txt"), "a").unwrap();
        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        symlink("a.txt", app.join("inside")).unwrap();
        symlink("../secret", app.join("out")).unwrap();
        symlink(tmp.path().join("secret"), app.join("abs")).unwrap();
        symlink("..", app.join("sub/up")).unwrap();
        let dir = AppDir::open_trusted(&app).unwrap();
        assert_eq!(dir.read(Path::new("inside")).unwrap(), b"a");
        assert_eq!(dir.read(Path::new("sub/../a.txt")).unwrap(), b"a");
        assert_eq!(dir.read(Path::new("sub/up/a.txt")).unwrap(), b"a");
        for bad in ["out", "abs", "../secret", "/etc/passwd", "sub/up/../secret"] {
            assert!(
                matches!(dir.read(Path::new(bad)), Err(OpenError::Escapes(_))),
                "{bad}: {:?}",
                dir.read(Path::new(bad))
            );
        }
        assert!(matches!(
            dir.read(Path::new("missing")),
            Err(OpenError::NotFound(_))
        ));
        assert!(matches!(
            dir.read(Path::new("sub")),
            Err(OpenError::NotFound(_))
        ));
    }

    #[test]
    fn a_nested_version_stays_in_its_app_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("hello");
        std::fs::create_dir_all(app.join("1.0.0")).unwrap();
        std::fs::create_dir_all(tmp.path().join("other/2.0.0")).unwrap();
        symlink("1.0.0", app.join("1.0.1")).unwrap();
        symlink("../other/2.0.0", app.join("2.0.0")).unwrap();
        assert!(AppDir::open_nested(&app, &"1.0.1".into()).is_ok());
        assert!(matches!(
            AppDir::open_nested(&app, &"2.0.0".into()),
            Err(OpenError::Escapes(_))
        ));
    }
}
