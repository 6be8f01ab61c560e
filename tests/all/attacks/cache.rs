//! The compiled-module cache holds machine code the engine loads unchecked,
//! so nobody but the server's user may be able to put anything there; and
//! the arena memory goes only to modules the load-time rewrite produced.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use buntime::wasm::{ARENA_EXPORT, Engine, EngineConfig, GuestOptions, ModuleOrigin};
use buntime_fixtures as fx;

use crate::support;

fn cached_engine(dir: &Path) -> Engine {
    support::engine_with(EngineConfig::default().cache_dir(dir))
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").mode() & 0o777
}

/// Loads the basics fixture twice, each time with a new engine (a restart);
/// returns where the second load came from.
fn load_twice(dir: &Path) -> ModuleOrigin {
    let wasm = fx::bytes(fx::BASICS);
    cached_engine(dir)
        .load(&wasm, GuestOptions::new("basics"))
        .expect("load");
    cached_engine(dir)
        .load(&wasm, GuestOptions::new("basics"))
        .expect("load")
        .origin()
}

#[test]
fn the_cache_dir_is_created_owner_only_and_its_entries_too() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache").join("modules");
    assert_eq!(load_twice(&dir), ModuleOrigin::DiskCache);
    assert_eq!(mode(&dir), 0o700, "the cache dir");
    let files = entries(&dir);
    assert_eq!(
        files.len(),
        1,
        "one entry, no temporary file left: {files:?}"
    );
    assert_eq!(mode(&files[0]), 0o600, "the cache entry");
}

#[test]
fn a_cache_dir_others_can_write_to_is_not_used() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for bits in [0o777, 0o770, 0o702] {
        let dir = tmp.path().join(format!("open-{bits:o}"));
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bits)).expect("chmod");
        assert_eq!(
            load_twice(&dir),
            ModuleOrigin::Compiled,
            "a {bits:o} cache dir must not be used"
        );
        assert!(
            entries(&dir).is_empty(),
            "nothing written to a {bits:o} dir"
        );
    }
}

#[test]
fn a_cache_dir_owned_by_another_user_is_not_used() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("theirs");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    if std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).is_err() {
        eprintln!("skipped: handing a directory to another user needs root");
        return;
    }
    assert_eq!(load_twice(&dir), ModuleOrigin::Compiled);
    assert!(entries(&dir).is_empty());
}

#[test]
fn a_cache_dir_inside_a_dir_others_can_write_to_is_not_used() {
    // Whoever can write the parent can rename the cache dir away and put
    // their own in its place; a sticky parent (like /tmp) forbids that.
    let tmp = tempfile::tempdir().expect("tempdir");
    for (bits, used) in [(0o777, false), (0o1777, true)] {
        let parent = tmp.path().join(format!("parent-{bits:o}"));
        std::fs::create_dir(&parent).expect("mkdir");
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(bits)).expect("chmod");
        let dir = parent.join("cache");
        let want = if used {
            ModuleOrigin::DiskCache
        } else {
            ModuleOrigin::Compiled
        };
        assert_eq!(load_twice(&dir), want, "under a {bits:o} parent");
    }
}

#[test]
fn a_parent_writable_by_the_servers_own_group_is_accepted_another_group_is_not() {
    // A Kubernetes volume under `fsGroup`: root's, group-writable, setgid,
    // its group the pod's.
    let tmp = tempfile::tempdir().expect("tempdir");
    let parent = tmp.path().join("volume");
    std::fs::create_dir(&parent).expect("mkdir");
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o2775)).expect("chmod");
    // A new dir takes the process's group (no setgid parent here).
    let own = std::fs::metadata(&parent).expect("metadata").gid();
    assert_eq!(load_twice(&parent.join("cache")), ModuleOrigin::DiskCache);
    let other = tmp.path().join("shared");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o2775)).expect("chmod");
    if std::os::unix::fs::chown(&other, None, Some(own + 1)).is_err() {
        eprintln!("skipped: giving a directory to another group needs root");
        return;
    }
    assert_eq!(load_twice(&other.join("cache")), ModuleOrigin::Compiled);
}

#[test]
fn an_entry_others_can_write_to_is_not_loaded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert_eq!(load_twice(tmp.path()), ModuleOrigin::DiskCache);
    for entry in entries(tmp.path()) {
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    }
    let engine = cached_engine(tmp.path());
    let module = engine
        .load(&fx::bytes(fx::BASICS), GuestOptions::new("basics"))
        .expect("load");
    assert_eq!(module.origin(), ModuleOrigin::Compiled);
    assert_eq!(engine.stats().cache_rejected.get(), 1);
}

/// A link planted where a cache entry's temporary file goes must not be
/// written through: the file is created exclusively, under a name nobody
/// can guess. (The temporary name used to be the process id and the
/// writing thread's id.)
#[test]
fn a_link_planted_at_a_temporary_path_is_not_written_through() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"precious").expect("victim");

    let (id_tx, id_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let writer_dir = dir.clone();
    let writer = std::thread::spawn(move || {
        id_tx
            .send(format!("{:?}", std::thread::current().id()).replace(['(', ')'], ""))
            .expect("send");
        go_rx.recv().expect("go");
        cached_engine(&writer_dir)
            .load(&fx::bytes(fx::BASICS), GuestOptions::new("basics"))
            .expect("load");
    });
    let thread = id_rx.recv().expect("thread id");
    let planted = dir.join(format!(".tmp-{}-{thread}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).expect("plant");
    go_tx.send(()).expect("go");
    writer.join().expect("writer");

    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    let written: Vec<_> = entries(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(written.len(), 1, "the entry was still written");
    assert!(
        !std::fs::symlink_metadata(&written[0])
            .expect("entry")
            .is_symlink()
    );
}

/// A module that exports a memory under the arena's name is refused by the
/// rewrite and runs as it is; the host must not take that memory (the
/// guest's own, which it can write and grow) for its arena.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_exporting_the_arena_name_does_not_get_its_memory_used_as_the_arena() {
    let wat = format!(
        r#"(module
            (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
            (import "extism:host/env" "load_u64" (func $load64 (param i64) (result i64)))
            (import "extism:host/env" "store_u64" (func $store64 (param i64 i64)))
            (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
            (memory (export "{ARENA_EXPORT}") 1)
            ;; Writes its own memory where a block lands if that memory is
            ;; the arena, then makes the block the output.
            (func (export "probe") (result i32)
                (local $h i64) (local $out i64)
                (local.set $h (call $alloc (i64.const 8)))
                (local.set $out (call $alloc (i64.const 8)))
                (i64.store (i32.wrap_i64 (local.get $h)) (i64.const 0x4141414141414141))
                (call $store64 (local.get $out) (call $load64 (local.get $h)))
                (call $output_set (local.get $out) (i64.const 8))
                (i32.const 0)))"#
    );
    let err = buntime::wasm::rewrite_module(&wat::parse_str(&wat).expect("wat"))
        .expect_err("the rewrite refuses the reserved name");
    assert!(err.to_string().contains(ARENA_EXPORT), "{err}");

    let tmp = tempfile::tempdir().expect("tempdir");
    for engine in [support::engine(), cached_engine(tmp.path())] {
        let module = engine
            .load(wat.as_bytes(), GuestOptions::new("squatter"))
            .expect("a module the rewrite refuses still loads");
        let mut instance = module.instantiate().await.expect("instantiate");
        let out = instance.call("probe", Vec::new()).await.expect("probe");
        assert_eq!(
            &out.output[..],
            [0; 8],
            "the guest's memory is not the arena"
        );
    }
    // Not cached: the cache holds only the rewrite's output.
    assert!(entries(tmp.path()).is_empty());
}
