//! Unpacking and packing archives (`.tar.gz`, `.zip`) below a granted root.
//!
//! Unpacking runs in the host rather than in the guest that asked for it:
//! the guest names an archive file and a destination below its root, and the
//! host writes every entry through the same `cap-primitives` handle as any
//! `fs_write` (so no entry can land outside the destination, whatever the
//! archive says), natively (a 100 MB app is not decompressed under a guest's
//! fuel and time limit), streaming from the file (never whole in memory).
//! The guest keeps the policy (names, versions, where a version goes); the
//! host keeps the containment and the caps, which no guest can skip.
//!
//! Refused, naming the entry: absolute names, `..`, backslashes, hard links,
//! symlinks whose target is absolute or leads out of the destination,
//! devices, FIFOs and sockets, names equal after normalisation (`a/./b` and
//! `a/b`, or ones differing only in case, which break on case-insensitive
//! file systems); more than `maxEntries` entries, more than `maxBytes`
//! unpacked, or more than `maxRatio` unpacked bytes per archive byte (zip
//! bombs: counted on the bytes actually written, not on the sizes the
//! archive claims). A failed unpack removes the destination.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

use cap_primitives::fs::{
    DirOptions, FollowSymlinks, OpenOptions, create_dir, open, read_dir, read_link_contents,
    remove_dir_all, stat, symlink,
};
use serde::Deserialize;

use super::root::{FsError, Root, at, relative};

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Format {
    /// gzip-compressed tar.
    #[serde(rename = "tar.gz")]
    TarGz,
    /// zip (stored or deflated entries).
    #[serde(rename = "zip")]
    Zip,
}

impl Format {
    /// Guesses the format from the first bytes (gzip or zip magic).
    pub fn sniff(head: &[u8]) -> Option<Self> {
        match head {
            [0x1f, 0x8b, ..] => Some(Self::TarGz),
            [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Some(Self::Zip),
            _ => None,
        }
    }
}

/// Caps on one unpack.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Most bytes written in total.
    pub max_bytes: u64,
    /// Most entries.
    pub max_entries: u64,
    /// Most unpacked bytes per archive byte (past the first MiB).
    pub max_ratio: u64,
}

/// What an unpack wrote.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Unpacked {
    /// Entries written (files, dirs, symlinks).
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
}

/// Unpacks `archive` (a file below `root`) into `dest`, which must not exist
/// and is created; on any failure `dest` is removed again.
pub fn unpack(
    root: &Root,
    archive: &str,
    dest: &str,
    format: Option<Format>,
    caps: Caps,
) -> Result<Unpacked, FsError> {
    let arel = relative(archive)?;
    let drel = relative(dest)?;
    if drel.as_os_str().is_empty() {
        return Err(FsError::Kind(
            "unpack into a new directory, not the granted root".into(),
        ));
    }
    let mut options = OpenOptions::new();
    options.read(true)._cap_fs_ext_nonblock(true);
    let mut file = open(root.handle(), &arel, &options).map_err(|e| FsError::of(archive, e))?;
    let size = file.metadata().map_err(|e| FsError::of(archive, e))?.len();
    let mut head = [0u8; 4];
    let n = file.read(&mut head).map_err(|e| FsError::of(archive, e))?;
    file.rewind().map_err(|e| FsError::of(archive, e))?;
    let format = format
        .or_else(|| Format::sniff(&head[..n]))
        .ok_or_else(|| {
            FsError::Kind(format!(
                "`{archive}` is neither a gzip-compressed tar nor a zip archive"
            ))
        })?;
    create_dir(root.handle(), &drel, &DirOptions::new()).map_err(|e| FsError::of(dest, e))?;
    let result = (|| {
        let target = Root::from_handle(root.open_dir(dest)?);
        let mut sink = Sink {
            root: &target,
            seen: HashSet::new(),
            caps,
            archive_size: size,
            done: Unpacked::default(),
        };
        match format {
            Format::TarGz => unpack_tar(file, &mut sink)?,
            Format::Zip => unpack_zip(file, &mut sink)?,
        }
        Ok(sink.done)
    })();
    if result.is_err() {
        let _ = remove_dir_all(root.handle(), &drel);
    }
    result
}

/// What one entry is.
enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
}

struct Sink<'a> {
    root: &'a Root,
    seen: HashSet<String>,
    caps: Caps,
    archive_size: u64,
    done: Unpacked,
}

impl Sink<'_> {
    /// Checks `raw` and returns its normalised relative path (`None`: the
    /// destination itself, e.g. `./`).
    fn name(&mut self, raw: &[u8]) -> Result<Option<PathBuf>, FsError> {
        let shown = String::from_utf8_lossy(raw).into_owned();
        let refuse =
            |reason: &str| FsError::Kind(format!("archive entry `{shown}` is refused: {reason}"));
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(refuse("its name is not UTF-8"));
        };
        if text.chars().any(char::is_control) {
            return Err(refuse("its name contains control characters"));
        }
        let rel = relative(text).map_err(|e| match e {
            FsError::BadPath { reason, .. } => refuse(reason),
            other => other,
        })?;
        if rel.as_os_str().is_empty() {
            return Ok(None);
        }
        self.done.entries += 1;
        if self.done.entries > self.caps.max_entries {
            return Err(FsError::Limit(format!(
                "the archive holds more than {} entries (maxEntries)",
                self.caps.max_entries
            )));
        }
        let key = rel.to_string_lossy().to_lowercase();
        if !self.seen.insert(key) {
            return Err(refuse(
                "another entry has the same name after normalisation (`.` segments, repeated `/`, letter case)",
            ));
        }
        Ok(Some(rel))
    }

    fn place(&mut self, raw: &[u8], kind: Kind, data: &mut dyn Read) -> Result<(), FsError> {
        let Some(rel) = self.name(raw)? else {
            return Ok(());
        };
        let shown = rel.display().to_string();
        let parent = rel.parent().unwrap_or(Path::new(""));
        self.root.mkdir_all(parent, &shown)?;
        match kind {
            Kind::Dir => match create_dir(self.root.handle(), &rel, &DirOptions::new()) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // Made implicitly by an earlier entry inside it.
                    match stat(self.root.handle(), &rel, FollowSymlinks::No) {
                        Ok(m) if m.is_dir() => Ok(()),
                        _ => Err(FsError::Exists(shown)),
                    }
                }
                Err(e) => Err(FsError::of(&shown, e)),
            },
            Kind::Symlink(target) => {
                let target = String::from_utf8(target).map_err(|_| {
                    FsError::Kind(format!(
                        "archive entry `{shown}` is refused: its link target is not UTF-8"
                    ))
                })?;
                if !stays_inside(parent, &target) {
                    return Err(FsError::Kind(format!(
                        "archive entry `{shown}` is refused: it links to `{target}`, outside the app (only relative links inside it are kept)"
                    )));
                }
                symlink(Path::new(&target), self.root.handle(), &rel)
                    .map_err(|e| FsError::of(&shown, e))
            }
            Kind::File => {
                let mut options = OpenOptions::new();
                options.write(true).create_new(true);
                let mut out =
                    open(self.root.handle(), &rel, &options).map_err(|e| FsError::of(&shown, e))?;
                self.copy(data, &mut out, &shown)
            }
        }
    }

    /// Copies one file, counting against the byte and ratio caps as it goes.
    fn copy(&mut self, data: &mut dyn Read, out: &mut File, shown: &str) -> Result<(), FsError> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = data
                .read(&mut buf)
                .map_err(|e| FsError::Kind(format!("cannot read archive entry `{shown}`: {e}")))?;
            if n == 0 {
                return Ok(());
            }
            self.done.bytes += n as u64;
            if self.done.bytes > self.caps.max_bytes {
                return Err(FsError::Limit(format!(
                    "the archive unpacks to more than {} bytes (maxBytes)",
                    self.caps.max_bytes
                )));
            }
            let allowed = (1 << 20) + self.archive_size.saturating_mul(self.caps.max_ratio);
            if self.done.bytes > allowed {
                return Err(FsError::Limit(format!(
                    "the archive unpacks to more than {} times its size (maxRatio): a compression bomb?",
                    self.caps.max_ratio
                )));
            }
            out.write_all(&buf[..n])
                .map_err(|e| FsError::of(shown, e))?;
        }
    }
}

/// Whether a relative symlink `target` placed in `parent` stays inside the
/// destination, by the text alone (the open walk checks again).
fn stays_inside(parent: &Path, target: &str) -> bool {
    let target = Path::new(target);
    if target.has_root() || target.as_os_str().is_empty() {
        return false;
    }
    let mut depth = parent.components().count() as i64;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

fn unpack_tar(file: File, sink: &mut Sink<'_>) -> Result<(), FsError> {
    let bad = |e: io::Error| FsError::Kind(format!("the archive is not a valid tar.gz: {e}"));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&name).into_owned();
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(
                entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Link => {
                return Err(FsError::Kind(format!(
                    "archive entry `{shown}` is refused: hard links are not unpacked (store the file itself)"
                )));
            }
            other => {
                return Err(FsError::Kind(format!(
                    "archive entry `{shown}` is refused: only files, directories and symlinks are unpacked, not {other:?}"
                )));
            }
        };
        sink.place(&name, kind, &mut entry)?;
    }
    Ok(())
}

fn unpack_zip(file: File, sink: &mut Sink<'_>) -> Result<(), FsError> {
    let bad =
        |e: zip::result::ZipError| FsError::Kind(format!("the archive is not a valid zip: {e}"));
    let mut archive = zip::ZipArchive::new(file).map_err(bad)?;
    if archive.len() as u64 > sink.caps.max_entries {
        return Err(FsError::Limit(format!(
            "the archive holds {} entries; at most {} are unpacked (maxEntries)",
            archive.len(),
            sink.caps.max_entries
        )));
    }
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(bad)?;
        let name = entry.name_raw().to_vec();
        let shown = String::from_utf8_lossy(&name).into_owned();
        let file_type = entry.unix_mode().map(|m| m & 0o170000);
        if matches!(file_type, Some(0o020000 | 0o060000 | 0o010000 | 0o140000)) {
            return Err(FsError::Kind(format!(
                "archive entry `{shown}` is refused: devices, FIFOs and sockets are not unpacked"
            )));
        }
        let kind = if entry.is_symlink() {
            let mut target = Vec::new();
            (&mut entry)
                .take(4096)
                .read_to_end(&mut target)
                .map_err(|e| FsError::Kind(format!("cannot read archive entry `{shown}`: {e}")))?;
            Kind::Symlink(target)
        } else if entry.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        sink.place(&name, kind, &mut entry)?;
    }
    Ok(())
}

/// Packs directory `path` below `root` as `format`, at most `max` bytes of
/// archive. Entries are sorted, so the same tree packs the same way.
pub fn pack(root: &Root, path: &str, format: Format, max: u64) -> Result<Vec<u8>, FsError> {
    let dir = Root::from_handle(root.open_dir(path)?);
    let mut files = Vec::new();
    walk(&dir, PathBuf::new(), &mut files, 0)?;
    let too_big = || FsError::Limit(format!("`{path}` packs to more than {max} bytes"));
    let io = |e: io::Error| FsError::Io(path.to_owned(), e);
    match format {
        Format::TarGz => {
            let gz =
                flate2::write::GzEncoder::new(Capped::new(max), flate2::Compression::default());
            let mut tar = tar::Builder::new(gz);
            tar.follow_symlinks(false);
            for (rel, kind) in &files {
                let mut header = tar::Header::new_gnu();
                header.set_mtime(0);
                match kind {
                    Walked::Dir => {
                        header.set_entry_type(tar::EntryType::Directory);
                        header.set_mode(0o755);
                        header.set_size(0);
                        tar.append_data(&mut header, rel, io::empty()).map_err(io)?;
                    }
                    Walked::Link(target) => {
                        header.set_entry_type(tar::EntryType::Symlink);
                        header.set_mode(0o777);
                        header.set_size(0);
                        tar.append_link(&mut header, rel, target).map_err(io)?;
                    }
                    Walked::File(len) => {
                        header.set_entry_type(tar::EntryType::Regular);
                        header.set_mode(0o644);
                        header.set_size(*len);
                        let f = dir.open_file(rel)?;
                        tar.append_data(&mut header, rel, f.take(*len))
                            .map_err(io)?;
                    }
                }
            }
            let out = tar.into_inner().and_then(|gz| gz.finish()).map_err(|e| {
                if e.kind() == io::ErrorKind::StorageFull {
                    too_big()
                } else {
                    io(e)
                }
            })?;
            Ok(out.bytes)
        }
        Format::Zip => {
            let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(0o644);
            let zerr = |e: zip::result::ZipError| FsError::Io(path.to_owned(), io::Error::other(e));
            let mut written = 0u64;
            for (rel, kind) in &files {
                let name = rel.to_string_lossy().into_owned();
                match kind {
                    Walked::Dir => zip.add_directory(name, options).map_err(zerr)?,
                    Walked::Link(target) => zip
                        .add_symlink(name, target.to_string_lossy(), options)
                        .map_err(zerr)?,
                    Walked::File(len) => {
                        zip.start_file(name, options).map_err(zerr)?;
                        io::copy(&mut dir.open_file(rel)?.take(*len), &mut zip).map_err(io)?;
                        written += len;
                        // Deflate never grows data by much: stop well
                        // before packing far past the cap.
                        if written > max.saturating_mul(4) {
                            return Err(too_big());
                        }
                    }
                }
            }
            let out = zip.finish().map_err(zerr)?.into_inner();
            if out.len() as u64 > max {
                return Err(too_big());
            }
            Ok(out)
        }
    }
}

enum Walked {
    Dir,
    File(u64),
    Link(PathBuf),
}

fn walk(
    dir: &Root,
    here: PathBuf,
    out: &mut Vec<(PathBuf, Walked)>,
    depth: usize,
) -> Result<(), FsError> {
    if depth > 64 {
        return Err(FsError::Limit(format!(
            "`{}` is nested too deep",
            here.display()
        )));
    }
    let shown = here.display().to_string();
    let mut entries = Vec::new();
    for entry in read_dir(dir.handle(), at(&here)).map_err(|e| FsError::of(&shown, e))? {
        let entry = entry.map_err(|e| FsError::of(&shown, e))?;
        entries.push(entry.file_name());
    }
    entries.sort();
    for name in entries {
        let rel = here.join(&name);
        let meta = stat(dir.handle(), &rel, FollowSymlinks::No)
            .map_err(|e| FsError::of(&rel.display().to_string(), e))?;
        if meta.is_dir() {
            out.push((rel.clone(), Walked::Dir));
            walk(dir, rel, out, depth + 1)?;
        } else if meta.file_type().is_symlink() {
            let target = read_link_contents(dir.handle(), &rel)
                .map_err(|e| FsError::of(&rel.display().to_string(), e))?;
            out.push((rel, Walked::Link(target)));
        } else if meta.is_file() {
            out.push((rel, Walked::File(meta.len())));
        }
    }
    Ok(())
}

/// A `Vec` sink that refuses to grow past a size.
struct Capped {
    bytes: Vec<u8>,
    max: u64,
}

impl Capped {
    fn new(max: u64) -> Self {
        Self {
            bytes: Vec::new(),
            max,
        }
    }
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if (self.bytes.len() + buf.len()) as u64 > self.max {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
