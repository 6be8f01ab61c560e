//! The `fs_*` host functions (grant: `"fs": ["workerDirs"]`), root 0: the
//! first worker dir. Arguments and results are JSON in the host's envelope;
//! `fs_write` takes its bytes as a second block.

use base64::Engine as _;
use buntime_pdk::abi::{HostErrorBody, HostResult};
use buntime_pdk::io::{free_block, read_block, write_block};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[allow(unsafe_code, reason = "imports are foreign functions by definition")]
mod imports {
    #[link(wasm_import_module = "extism:host/user")]
    unsafe extern "C" {
        pub(super) fn fs_list(h: u64) -> u64;
        pub(super) fn fs_stat(h: u64) -> u64;
        pub(super) fn fs_read(h: u64) -> u64;
        pub(super) fn fs_write(h: u64, data: u64) -> u64;
        pub(super) fn fs_mkdir(h: u64) -> u64;
        pub(super) fn fs_rename(h: u64) -> u64;
        pub(super) fn fs_remove(h: u64) -> u64;
        pub(super) fn fs_unpack(h: u64) -> u64;
        pub(super) fn fs_pack(h: u64) -> u64;
        pub(super) fn fs_check_app(h: u64) -> u64;
    }
}

fn internal(m: impl std::fmt::Display) -> HostErrorBody {
    HostErrorBody {
        code: "internal".into(),
        message: m.to_string(),
    }
}

fn block(bytes: &[u8]) -> Result<u64, HostErrorBody> {
    match write_block(bytes) {
        0 => Err(internal("the host has no room for the argument")),
        h => Ok(h),
    }
}

fn decode<T: DeserializeOwned>(handle: u64) -> Result<T, HostErrorBody> {
    if handle == 0 {
        return Err(internal("the host returned no result"));
    }
    let bytes = read_block(handle);
    free_block(handle);
    serde_json::from_slice::<HostResult<T>>(&bytes)
        .map_err(internal)?
        .into_result()
}

fn call<T: DeserializeOwned>(
    f: unsafe extern "C" fn(u64) -> u64,
    input: Value,
) -> Result<T, HostErrorBody> {
    let h = block(input.to_string().as_bytes())?;
    #[allow(unsafe_code, reason = "a host import")]
    // SAFETY: `h` is a live block holding the argument.
    let out = unsafe { f(h) };
    free_block(h);
    decode(out)
}

/// One entry of a listing.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Entry {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    /// Bytes.
    pub size: u64,
    /// Milliseconds since the epoch.
    pub modified: u64,
}

pub fn list(path: &str) -> Result<Vec<Entry>, HostErrorBody> {
    call(imports::fs_list, json!({"path": path}))
}

pub fn stat(path: &str) -> Result<Option<Entry>, HostErrorBody> {
    call(imports::fs_stat, json!({"path": path}))
}

#[derive(Deserialize)]
struct Data {
    data: String,
}

fn bytes_of(d: Data) -> Result<Vec<u8>, HostErrorBody> {
    base64::engine::general_purpose::STANDARD
        .decode(d.data)
        .map_err(internal)
}

pub fn read(path: &str) -> Result<Vec<u8>, HostErrorBody> {
    bytes_of(call(imports::fs_read, json!({"path": path}))?)
}

pub fn write(path: &str, data: &[u8], create_dirs: bool) -> Result<(), HostErrorBody> {
    let args = block(
        json!({"path": path, "createDirs": create_dirs})
            .to_string()
            .as_bytes(),
    )?;
    let data = match block(data) {
        Ok(h) => h,
        Err(e) => {
            free_block(args);
            return Err(e);
        }
    };
    #[allow(unsafe_code, reason = "a host import")]
    // SAFETY: both handles are live blocks.
    let out = unsafe { imports::fs_write(args, data) };
    free_block(args);
    free_block(data);
    decode::<Value>(out).map(|_| ())
}

pub fn mkdir(path: &str, parents: bool) -> Result<(), HostErrorBody> {
    call::<Value>(imports::fs_mkdir, json!({"path": path, "parents": parents})).map(|_| ())
}

pub fn rename(from: &str, to: &str) -> Result<(), HostErrorBody> {
    call::<Value>(imports::fs_rename, json!({"from": from, "to": to})).map(|_| ())
}

pub fn exchange(a: &str, b: &str) -> Result<(), HostErrorBody> {
    call::<Value>(
        imports::fs_rename,
        json!({"from": a, "to": b, "exchange": true}),
    )
    .map(|_| ())
}

pub fn remove(path: &str, recursive: bool) -> Result<(), HostErrorBody> {
    call::<Value>(
        imports::fs_remove,
        json!({"path": path, "recursive": recursive}),
    )
    .map(|_| ())
}

pub fn unpack(archive: &str, dest: &str, caps: Value) -> Result<Value, HostErrorBody> {
    let mut args = json!({"archive": archive, "dest": dest});
    if let (Some(a), Some(c)) = (args.as_object_mut(), caps.as_object()) {
        a.extend(c.clone());
    }
    call(imports::fs_unpack, args)
}

pub fn pack(path: &str, format: &str) -> Result<Vec<u8>, HostErrorBody> {
    bytes_of(call(
        imports::fs_pack,
        json!({"path": path, "format": format, "maxBytes": 16u64 << 20}),
    )?)
}

pub fn check_app(path: &str, name: &str, version: &str) -> Result<Value, HostErrorBody> {
    call(
        imports::fs_check_app,
        json!({"path": path, "name": name, "version": version}),
    )
}
