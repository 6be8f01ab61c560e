//! `fs`: files below directories the operator grants (grant:
//! `"fs": ["workerDirs", "/srv/shared"]`; docs/capabilities.md §12).
//!
//! A [`Root`] is one granted directory, by its index in [`roots`]; every
//! path is relative to it, and the host refuses any that leads out.
//!
//! ```ignore
//! use buntime_pdk::plugin::fs;
//! let apps = fs::Root::default();
//! for e in apps.list("")? {
//!     if e.kind == "dir" { /* ... */ }
//! }
//! apps.write("notes/today.txt", b"hello", fs::Write::new().create_dirs())?;
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{HostErrorBody, call, call0, decode, imports, internal};

/// One granted directory as [`roots`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RootInfo {
    /// Its index, for [`Root::new`].
    pub root: usize,
    /// The directory on the host.
    pub dir: String,
}

/// The granted directories, in order (`workerDirs` expanded).
pub fn roots() -> Result<Vec<RootInfo>, HostErrorBody> {
    call0(imports::fs_roots)
}

/// One entry of a listing, or what [`Root::stat`] finds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Entry {
    /// Its name (listings only).
    #[serde(default)]
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    /// Bytes (files).
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified: u64,
}

/// How [`Root::write`] writes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Write {
    append: bool,
    create_dirs: bool,
}

impl Write {
    /// Replace the file atomically, parents must exist.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append instead of replacing.
    pub fn append(self) -> Self {
        Self {
            append: true,
            ..self
        }
    }

    /// Make missing parent directories.
    pub fn create_dirs(self) -> Self {
        Self {
            create_dirs: true,
            ..self
        }
    }
}

/// Caps of one [`Root::unpack`]; `None` takes the host's default.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unpack<'a> {
    /// `tar.gz` or `zip`; `None` guesses from the first bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'a str>,
    /// Most bytes written (default 256 MiB, at most 1 GiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Most entries (default 10 000, at most 100 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u64>,
    /// Most unpacked bytes per archive byte (default 100, at most 1 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<u64>,
}

/// What an unpack wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Unpacked {
    /// Entries written (files, dirs, symlinks).
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
}

/// A directory validated as an app (see [`Root::check_app`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AppCheck {
    /// `wasm` or `static`.
    pub kind: String,
    /// The module or `index.html` it serves.
    pub entry: String,
}

#[derive(Deserialize)]
struct Data {
    data: String,
}

/// One granted directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Root {
    index: usize,
}

impl Root {
    /// The granted directory at `index` of [`roots`] (0: the first, which
    /// [`Root::default`] is).
    pub const fn new(index: usize) -> Self {
        Self { index }
    }

    fn args(&self, mut v: Value) -> Value {
        if let Some(o) = v.as_object_mut() {
            o.insert("root".into(), self.index.into());
        }
        v
    }

    /// The entries of directory `path` (`""`: the root), by name.
    pub fn list(&self, path: &str) -> Result<Vec<Entry>, HostErrorBody> {
        call(imports::fs_list, &self.args(json!({ "path": path })))
    }

    /// What is at `path` (a symlink is not followed); `None` when nothing.
    pub fn stat(&self, path: &str) -> Result<Option<Entry>, HostErrorBody> {
        call(imports::fs_stat, &self.args(json!({ "path": path })))
    }

    /// The bytes of regular file `path` (at most 8 MiB).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, HostErrorBody> {
        let d: Data = call(imports::fs_read, &self.args(json!({ "path": path })))?;
        base64_decode(&d.data)
    }

    /// Writes `data` (at most 16 MiB a call) to `path`: replaced atomically,
    /// or appended.
    pub fn write(&self, path: &str, data: &[u8], how: Write) -> Result<(), HostErrorBody> {
        let mut args = self.args(json!({ "path": path }));
        if let (Some(a), Ok(Value::Object(h))) = (args.as_object_mut(), serde_json::to_value(how)) {
            a.extend(h);
        }
        let args = block(args.to_string().as_bytes())?;
        let data = match block(data) {
            Ok(h) => h,
            Err(e) => {
                crate::io::free_block(args);
                return Err(e);
            }
        };
        #[allow(unsafe_code, reason = "a host import")]
        // SAFETY: both handles are live blocks.
        let out = unsafe { imports::fs_write(args, data) };
        crate::io::free_block(args);
        crate::io::free_block(data);
        decode::<Value>(out).map(|_| ())
    }

    /// Makes directory `path` (with `parents`, its missing parents too).
    pub fn mkdir(&self, path: &str, parents: bool) -> Result<(), HostErrorBody> {
        let args = self.args(json!({ "path": path, "parents": parents }));
        call::<Value>(imports::fs_mkdir, &args).map(|_| ())
    }

    /// Renames `from` to `to` in one `rename(2)`; a directory replaces only
    /// a missing or empty one.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), HostErrorBody> {
        let args = self.args(json!({ "from": from, "to": to }));
        call::<Value>(imports::fs_rename, &args).map(|_| ())
    }

    /// Swaps `a` and `b`, which must both exist, atomically (Linux).
    pub fn exchange(&self, a: &str, b: &str) -> Result<(), HostErrorBody> {
        let args = self.args(json!({ "from": a, "to": b, "exchange": true }));
        call::<Value>(imports::fs_rename, &args).map(|_| ())
    }

    /// Removes a file or symlink, an empty directory, or with `recursive`
    /// a whole directory.
    pub fn remove(&self, path: &str, recursive: bool) -> Result<(), HostErrorBody> {
        let args = self.args(json!({ "path": path, "recursive": recursive }));
        call::<Value>(imports::fs_remove, &args).map(|_| ())
    }

    /// Unpacks archive file `archive` into the new directory `dest`, in the
    /// host; hostile entries and bombs are refused and `dest` removed.
    pub fn unpack(
        &self,
        archive: &str,
        dest: &str,
        caps: Unpack<'_>,
    ) -> Result<Unpacked, HostErrorBody> {
        let mut args = self.args(json!({ "archive": archive, "dest": dest }));
        if let (Some(a), Ok(Value::Object(c))) = (args.as_object_mut(), serde_json::to_value(caps))
        {
            a.extend(c);
        }
        call(imports::fs_unpack, &args)
    }

    /// Directory `path` as a `tar.gz` or `zip` of at most `max_bytes`
    /// (default 16 MiB, at most 64 MiB).
    pub fn pack(
        &self,
        path: &str,
        format: &str,
        max_bytes: Option<u64>,
    ) -> Result<Vec<u8>, HostErrorBody> {
        let args = self.args(json!({ "path": path, "format": format, "maxBytes": max_bytes }));
        let d: Data = call(imports::fs_pack, &args)?;
        base64_decode(&d.data)
    }

    /// Validates directory `path` as the server would serve app `name`
    /// (`version`: `None` for an unversioned one); `invalid_app` says why not.
    pub fn check_app(
        &self,
        path: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<AppCheck, HostErrorBody> {
        let args = self.args(json!({ "path": path, "name": name, "version": version }));
        call(imports::fs_check_app, &args)
    }
}

fn block(bytes: &[u8]) -> Result<u64, HostErrorBody> {
    match crate::io::write_block(bytes) {
        0 => Err(internal("the host has no room for the argument")),
        h => Ok(h),
    }
}

/// Standard base64 (the host's encoding of file bytes in JSON). Written
/// out because the PDK depends only on what scaffolded projects have locked
/// for an offline first build (`extism-pdk`, `serde`, `serde_json`).
fn base64_decode(text: &str) -> Result<Vec<u8>, HostErrorBody> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).ok_or_else(|| internal("the host sent malformed base64"))?;
            n |= v << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return Err(internal("the host sent malformed base64")),
        }
    }
    Ok(out)
}
