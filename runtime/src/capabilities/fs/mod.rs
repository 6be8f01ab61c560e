//! `fs`: files below directories the operator grants.
//!
//! Grant: `"fs": ["workerDirs", "/srv/shared"]` — a list of roots, each an
//! absolute directory or `workerDirs` (every `RUNTIME_WORKER_DIRS` entry, in
//! order). Like every grant, the manifest declares it and `buntime.jsonc` can
//! only narrow it (`"fs": ["workerDirs"]` keeps that entry, `false` revokes).
//! A call names a root by its index in `fs_roots` (`"root"`, default 0) and a
//! path relative to it; every path is checked as text (no absolute path, no
//! `..`) and then opened below a handle on the root (`root`), so no symlink
//! leads out. Refusals are `capability_denied` naming the grant to add.
//!
//! | function | input | result |
//! |---|---|---|
//! | `fs_roots` | none | `[{"root", "dir"}]` |
//! | `fs_list` | `{"root"?, "path"?, "limit"?}` | `[{"name", "kind", "size", "modified"}]`, by name |
//! | `fs_stat` | `{"root"?, "path"}` | `{"kind", "size", "modified"}` or `null` |
//! | `fs_read` | `{"root"?, "path"}` | `{"data": base64, "size"}` (at most [`MAX_READ_BYTES`]) |
//! | `fs_write` | `{"root"?, "path", "append"?, "createDirs"?}` and the bytes as a second block | `{"size"}` (replace is atomic) |
//! | `fs_mkdir` | `{"root"?, "path", "parents"?}` | `null` |
//! | `fs_rename` | `{"root"?, "from", "to", "exchange"?}` | `null` (atomic; a dir replaces only a missing or empty one; `exchange` swaps two existing entries) |
//! | `fs_remove` | `{"root"?, "path", "recursive"?}` | `null` |
//! | `fs_unpack` | `{"root"?, "archive", "dest", "format"?, "maxBytes"?, "maxEntries"?, "maxRatio"?}` | `{"entries", "bytes"}` (`archive`) |
//! | `fs_pack` | `{"root"?, "path", "format", "maxBytes"?}` | `{"data": base64, "size"}` |
//! | `fs_check_app` | `{"root"?, "path", "name", "version"?}` | `{"kind", "entry"}`: the dir validated as `buntime check` would serve it |

mod archive;
mod root;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

pub use archive::{Caps, Format, Unpacked, pack, unpack};
pub use root::{EntryInfo, FsError, Root, relative};

use super::args::{argument, parse, to_json};
use super::state::no_context;
use super::{Capability, CapabilitySpec, GrantContext, GrantValue, string_list};
use crate::capabilities::GuestContext;
use crate::wasm::{HostError, HostFunction, HostState, ResultEncoding};

/// Largest file `fs_read` returns.
pub const MAX_READ_BYTES: u64 = 8 << 20;
/// Largest block one `fs_write` takes.
pub const MAX_WRITE_BYTES: u64 = 16 << 20;
/// Largest file `fs_write` appends to.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Ceiling and default of `fs_unpack`'s `maxBytes`.
pub const MAX_UNPACK_BYTES: (u64, u64) = (1 << 30, 256 << 20);
/// Ceiling and default of `fs_unpack`'s `maxEntries`.
pub const MAX_UNPACK_ENTRIES: (u64, u64) = (100_000, 10_000);
/// Ceiling and default of `fs_unpack`'s `maxRatio`.
pub const MAX_UNPACK_RATIO: (u64, u64) = (1_000, 100);
/// Ceiling and default of `fs_pack`'s `maxBytes`.
pub const MAX_PACK_BYTES: (u64, u64) = (64 << 20, 16 << 20);
/// Most entries one `fs_list` returns.
const MAX_LIST: usize = 10_000;

/// The token for every worker dir in an `fs` grant.
pub const WORKER_DIRS: &str = "workerDirs";

/// The `fs` capability.
pub(super) struct FsSpec;

/// A parsed `fs` grant: the roots as declared.
#[derive(Debug, Clone, Default)]
pub struct FsGrant {
    /// `workerDirs` or absolute directories, in order.
    pub roots: Vec<String>,
}

impl CapabilitySpec for FsSpec {
    fn capability(&self) -> Capability {
        Capability::FS
    }

    fn syntax(&self) -> &'static str {
        "\"fs\": [\"workerDirs\", \"/absolute/dir\"]"
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        let roots = string_list(declared, "fs roots")?;
        if roots.is_empty() {
            return Ok(None);
        }
        for r in &roots {
            if r != WORKER_DIRS && !std::path::Path::new(r).is_absolute() {
                return Err(format!(
                    "`{r}` is neither `{WORKER_DIRS}` nor an absolute directory"
                ));
            }
        }
        Ok(Some(Arc::new(FsGrant { roots })))
    }

    fn host_functions(&self) -> Vec<HostFunction> {
        vec![
            HostFunction::new_sync(
                "fs_roots",
                Capability::FS,
                0,
                ResultEncoding::Envelope,
                |state, _| {
                    let dirs = granted_dirs(state)?;
                    let list: Vec<Value> = dirs
                        .iter()
                        .enumerate()
                        .map(|(i, d)| json!({"root": i, "dir": d.display().to_string()}))
                        .collect();
                    to_json(list)
                },
            ),
            function("fs_list", |root, input| {
                let req: PathReq = parse(input)?;
                let limit = req.limit.unwrap_or(MAX_LIST).min(MAX_LIST);
                to_json(root.list(req.path.as_deref().unwrap_or(""), limit)?)
            }),
            function("fs_stat", |root, input| {
                let req: PathReq = parse(input)?;
                to_json(root.stat(req.path.as_deref().unwrap_or(""))?)
            }),
            function("fs_read", |root, input| {
                let req: PathReq = parse(input)?;
                let bytes = root.read(req.path.as_deref().unwrap_or(""), MAX_READ_BYTES)?;
                to_json(json!({"size": bytes.len(), "data": b64(&bytes)}))
            }),
            function("fs_mkdir", |root, input| {
                let req: PathReq = parse(input)?;
                root.mkdir(req.path.as_deref().unwrap_or(""), req.parents)?;
                Ok(None)
            }),
            function("fs_rename", |root, input| {
                let req: RenameReq = parse(input)?;
                if req.exchange {
                    root.exchange(&req.from, &req.to)?;
                } else {
                    root.rename(&req.from, &req.to)?;
                }
                Ok(None)
            }),
            function("fs_remove", |root, input| {
                let req: PathReq = parse(input)?;
                root.remove(req.path.as_deref().unwrap_or(""), req.recursive)?;
                Ok(None)
            }),
            function("fs_unpack", |root, input| {
                let req: UnpackReq = parse(input)?;
                let caps = archive::Caps {
                    max_bytes: capped(req.max_bytes, MAX_UNPACK_BYTES),
                    max_entries: capped(req.max_entries, MAX_UNPACK_ENTRIES),
                    max_ratio: capped(req.max_ratio, MAX_UNPACK_RATIO),
                };
                to_json(archive::unpack(
                    root,
                    &req.archive,
                    &req.dest,
                    req.format,
                    caps,
                )?)
            }),
            function("fs_pack", |root, input| {
                let req: PackReq = parse(input)?;
                let max = capped(req.max_bytes, MAX_PACK_BYTES);
                let bytes = archive::pack(root, &req.path, req.format, max)?;
                to_json(json!({"size": bytes.len(), "data": b64(&bytes)}))
            }),
            write_function(),
            check_function(),
        ]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PathReq {
    #[serde(default, rename = "root")]
    _root: usize,
    path: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    parents: bool,
    #[serde(default)]
    recursive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameReq {
    #[serde(default, rename = "root")]
    _root: usize,
    from: String,
    to: String,
    #[serde(default)]
    exchange: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UnpackReq {
    #[serde(default, rename = "root")]
    _root: usize,
    archive: String,
    dest: String,
    format: Option<Format>,
    max_bytes: Option<u64>,
    max_entries: Option<u64>,
    max_ratio: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PackReq {
    #[serde(default, rename = "root")]
    _root: usize,
    path: String,
    format: Format,
    max_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WriteReq {
    #[serde(default, rename = "root")]
    _root: usize,
    path: String,
    #[serde(default)]
    append: bool,
    #[serde(default)]
    create_dirs: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckReq {
    #[serde(default, rename = "root")]
    _root: usize,
    path: String,
    name: String,
    version: Option<String>,
}

/// Every request names its root; peeked before the operation runs.
#[derive(Deserialize)]
struct RootOf {
    #[serde(default)]
    root: usize,
}

/// `requested` within `(ceiling, default)`.
fn capped(requested: Option<u64>, (ceiling, default): (u64, u64)) -> u64 {
    requested.unwrap_or(default).min(ceiling)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A few random hex digits for temporary names.
pub(crate) fn random_suffix() -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The directories the caller's grant names, `workerDirs` expanded.
fn granted_dirs(state: &HostState) -> Result<Vec<PathBuf>, HostError> {
    let cx = GuestContext::of(state).ok();
    let catalog = cx.as_ref().and_then(|cx| cx.host.catalog.as_deref());
    granted_roots(state.grants(), catalog).ok_or_else(no_context)
}

/// The roots `grants` holds for `fs`, in order, `workerDirs` expanded from
/// `catalog`; `None` when the grant names `workerDirs` and there is no
/// catalog to expand it from. No `fs` grant: none.
pub fn granted_roots(
    grants: &super::Grants,
    catalog: Option<&crate::routing::Catalog>,
) -> Option<Vec<PathBuf>> {
    let Some(grant) = grants.get::<FsGrant>(Capability::FS) else {
        return Some(Vec::new());
    };
    let mut dirs = Vec::new();
    for r in &grant.roots {
        if r == WORKER_DIRS {
            dirs.extend(catalog?.dirs().iter().cloned());
        } else {
            dirs.push(PathBuf::from(r));
        }
    }
    Some(dirs)
}

/// The root `index` of the caller's grant; a denial naming the grant when
/// there is no such root.
fn root_dir(state: &HostState, function: &str, index: usize) -> Result<PathBuf, HostError> {
    let dirs = granted_dirs(state)?;
    dirs.get(index).cloned().ok_or_else(|| {
        state.deny(
            Capability::FS,
            function,
            format!("fs root {index} is not granted ({} granted)", dirs.len()),
            format!("\"fs\": [\"{WORKER_DIRS}\", \"/absolute/dir\"]"),
        )
    })
}

/// One operation on an open root with the JSON argument; runs on the
/// blocking pool (file I/O must not stall an async worker).
type FsOp = fn(&Root, &[u8]) -> Result<Option<Vec<u8>>, HostError>;

fn function(name: &'static str, op: FsOp) -> HostFunction {
    HostFunction::new(
        name,
        Capability::FS,
        1,
        ResultEncoding::Envelope,
        move |state, args| {
            let prepared = prepare(state, name, args[0]);
            Box::pin(async move {
                let (dir, input, denials) = prepared?;
                let shown = dir.clone();
                tokio::task::spawn_blocking(move || {
                    let root = Root::open(&dir)?;
                    op(&root, &input)
                })
                .await
                .map_err(|e| HostError::new("internal", e.to_string()))?
                .map_err(|e| denials.note(&shown, e))
            })
        },
    )
}

/// What a blocking operation needs from the store, taken before it leaves.
fn prepare(
    state: &HostState,
    function: &str,
    handle: u64,
) -> Result<(PathBuf, Vec<u8>, Denials), HostError> {
    let input = argument(state, handle)?.to_vec();
    let which: RootOf = parse(&input)?;
    let dir = root_dir(state, function, which.root)?;
    Ok((
        dir,
        input,
        Denials {
            count: Box::new(state.denial_counter(Capability::FS)),
        },
    ))
}

/// Counts and logs denials found on the blocking pool, where the store is
/// not at hand, and names the granted directory in them.
struct Denials {
    count: Box<dyn Fn() + Send>,
}

impl Denials {
    fn note(&self, dir: &std::path::Path, e: HostError) -> HostError {
        if e.code != "capability_denied" {
            return e;
        }
        (self.count)();
        HostError::new(
            e.code,
            format!(
                "{} (the granted directory is `{}`)",
                e.message,
                dir.display()
            ),
        )
    }
}

impl From<FsError> for HostError {
    fn from(e: FsError) -> Self {
        let code = e.code();
        if code == "capability_denied" {
            return HostError::new(
                code,
                format!(
                    "{e}; every path must stay inside the granted directory: to reach another, add it to the manifest's `capabilities`: {{\"fs\": [\"/absolute/dir\"]}}"
                ),
            );
        }
        HostError::new(code, e.to_string())
    }
}

/// `fs_write(args, data)`: the bytes travel as their own block, not base64.
fn write_function() -> HostFunction {
    HostFunction::new(
        "fs_write",
        Capability::FS,
        2,
        ResultEncoding::Envelope,
        |state, args| {
            let prepared = prepare(state, "fs_write", args[0]).and_then(|p| {
                let data = argument(state, args[1])?.to_vec();
                Ok((p, data))
            });
            Box::pin(async move {
                let ((dir, input, denials), data) = prepared?;
                let req: WriteReq = parse(&input)?;
                if data.len() as u64 > MAX_WRITE_BYTES {
                    return Err(HostError::new(
                        "limit_exceeded",
                        format!(
                            "one fs_write takes at most {MAX_WRITE_BYTES} bytes; append the rest in further calls"
                        ),
                    ));
                }
                let shown = dir.clone();
                tokio::task::spawn_blocking(move || {
                    let root = Root::open(&dir)?;
                    if req.append {
                        let now = root.stat(&req.path)?;
                        if now.is_some_and(|s| s.size + data.len() as u64 > MAX_FILE_BYTES) {
                            return Err(HostError::new(
                                "limit_exceeded",
                                format!("`{}` would grow past {MAX_FILE_BYTES} bytes", req.path),
                            ));
                        }
                    }
                    root.write(&req.path, &data, req.append, req.create_dirs)?;
                    to_json(json!({"size": data.len()}))
                })
                .await
                .map_err(|e| HostError::new("internal", e.to_string()))?
                .map_err(|e| denials.note(&shown, e))
            })
        },
    )
}

/// `fs_check_app`: validates an app dir the way `buntime check` does
/// (`worker.jsonc`, the operator's ceiling, the module compiles and exports
/// `handle`), through the server's [`AppCheck`](super::AppCheck).
fn check_function() -> HostFunction {
    HostFunction::new(
        "fs_check_app",
        Capability::FS,
        1,
        ResultEncoding::Envelope,
        |state, args| {
            let checker =
                GuestContext::of(state).and_then(|cx| cx.host.app_check().ok_or_else(no_context));
            let prepared = prepare(state, "fs_check_app", args[0]);
            Box::pin(async move {
                let checker = checker?;
                let (dir, input, denials) = prepared?;
                let req: CheckReq = parse(&input)?;
                // Opened below the root first (no escape); the check then reads
                // the dir by path, as the server will.
                let opened = relative(&req.path)
                    .and_then(|rel| Root::open(&dir)?.open_dir(&req.path).map(|_| rel))
                    .map_err(|e| denials.note(&dir, e.into()))?;
                let path = dir.join(opened);
                tokio::task::spawn_blocking(move || {
                    checker
                        .check(&path, &req.name, req.version.as_deref())
                        .map_err(|m| HostError::new("invalid_app", m))
                        .and_then(to_json)
                })
                .await
                .map_err(|e| HostError::new("internal", e.to_string()))?
            })
        },
    )
}

#[cfg(test)]
mod tests;
