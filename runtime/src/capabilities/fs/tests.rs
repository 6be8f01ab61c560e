//! The `fs` resolver and the unpacker against every way out: `..`,
//! absolute paths, symlinks pointing out (files, dirs, in the middle of a
//! path, swapped in for a dir), hostile archive entries and bombs.

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::archive::{Caps, Format, pack, unpack};
use super::root::{FsError, Root};

const CAPS: Caps = Caps {
    max_bytes: 1 << 20,
    max_entries: 100,
    max_ratio: 100,
};

/// A root `granted/` with `granted/a.txt`, next to `secret.txt` outside it.
fn setup() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().expect("tempdir");
    let granted = dir.path().join("granted");
    std::fs::create_dir_all(granted.join("sub")).expect("mkdir");
    std::fs::write(granted.join("a.txt"), "inside").expect("write");
    std::fs::write(dir.path().join("secret.txt"), "outside").expect("write");
    std::fs::create_dir_all(dir.path().join("elsewhere")).expect("mkdir");
    symlink(dir.path().join("secret.txt"), granted.join("leak")).expect("symlink");
    symlink("../elsewhere", granted.join("out")).expect("symlink");
    symlink("sub", granted.join("in")).expect("symlink");
    let root = Root::open(&granted).expect("root");
    (dir, root)
}

fn denied(r: Result<impl std::fmt::Debug, FsError>) {
    match r {
        Err(e) => assert_eq!(e.code(), "capability_denied", "{e}"),
        Ok(v) => panic!("not denied: {v:?}"),
    }
}

#[test]
fn dot_dot_and_absolute_paths_are_refused_by_every_operation() {
    let (dir, root) = setup();
    for bad in [
        "../secret.txt",
        "sub/../../secret.txt",
        "/etc/passwd",
        "sub\\..\\x",
        "a\0b",
    ] {
        denied(root.read(bad, 1 << 20));
        denied(root.stat(bad));
        denied(root.list(bad, 10));
        denied(root.write(bad, b"x", false, true));
        denied(root.mkdir(bad, true));
        denied(root.remove(bad, true));
        denied(root.rename("a.txt", bad));
        denied(root.rename(bad, "b.txt"));
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("secret.txt")).unwrap(),
        "outside"
    );
    assert!(std::fs::read(dir.path().join("granted/a.txt")).is_ok());
}

#[test]
fn symlinks_pointing_out_are_not_followed() {
    let (dir, root) = setup();
    denied(root.read("leak", 1 << 20));
    denied(root.list("out", 10));
    denied(root.read("out/x", 1 << 20));
    denied(root.write("out/new.txt", b"x", false, false));
    denied(root.write("leak", b"x", true, false));
    denied(root.mkdir("out/d", false));
    denied(root.rename("a.txt", "out/a.txt"));
    assert!(!dir.path().join("elsewhere/new.txt").exists());
    assert!(!dir.path().join("elsewhere/a.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("secret.txt")).unwrap(),
        "outside"
    );
    // Removing a link removes the link, never what it points at.
    root.remove("out", true).expect("remove link");
    assert!(dir.path().join("elsewhere").is_dir());
    // A symlink inside is followed.
    root.write("in/x.txt", b"via link", false, false)
        .expect("write");
    assert_eq!(root.read("sub/x.txt", 100).unwrap(), b"via link");
    assert_eq!(root.stat("leak").unwrap().unwrap().kind, "symlink");
}

#[test]
fn a_dir_swapped_for_a_symlink_out_leads_nowhere() {
    let (dir, root) = setup();
    std::fs::remove_dir_all(dir.path().join("granted/sub")).unwrap();
    symlink(dir.path().join("elsewhere"), dir.path().join("granted/sub")).unwrap();
    denied(root.write("sub/x.txt", b"x", false, false));
    assert!(!dir.path().join("elsewhere/x.txt").exists());
}

#[test]
fn operations_inside_work_and_sizes_are_capped() {
    let (_dir, root) = setup();
    root.write("d/e/f.txt", b"hello", false, true)
        .expect("write");
    root.write("d/e/f.txt", b" world", true, false)
        .expect("append");
    assert_eq!(root.read("d/e/f.txt", 100).unwrap(), b"hello world");
    assert!(matches!(root.read("d/e/f.txt", 5), Err(FsError::Limit(_))));
    root.rename("d/e/f.txt", "d/g.txt").expect("rename");
    let names: Vec<String> = root
        .list("d", 10)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["e", "g.txt"]);
    assert!(matches!(root.list("", 1), Err(FsError::Limit(_))));
    assert!(matches!(
        root.remove("d", false),
        Err(FsError::Exists(_)) | Err(FsError::Io(..))
    ));
    root.remove("d", true).expect("remove");
    assert!(root.stat("d").unwrap().is_none());
    assert!(matches!(
        root.mkdir("a.txt", false),
        Err(FsError::Exists(_))
    ));
}

/// A tar.gz of `(name, kind, data)` written raw (names unchecked, as an
/// attacker would).
fn tar_gz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        let raw = &mut h.as_gnu_mut().unwrap().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.set_link_name_literal(std::str::from_utf8(data).unwrap())
                .unwrap();
            h.set_size(0);
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        } else {
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn put(root_dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::File::create(root_dir.join(name))
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn hostile_tar_entries_are_refused_and_nothing_is_left() {
    use tar::EntryType as T;
    let (dir, root) = setup();
    let granted = dir.path().join("granted");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            tar_gz(&[("../evil.txt", T::Regular, b"x")]),
            "`..`",
        ),
        (
            "nested",
            tar_gz(&[("a/../../evil.txt", T::Regular, b"x")]),
            "`..`",
        ),
        (
            "absolute",
            tar_gz(&[("/tmp/evil.txt", T::Regular, b"x")]),
            "absolute",
        ),
        (
            "link-out",
            tar_gz(&[("l", T::Symlink, b"../../secret.txt")]),
            "outside",
        ),
        (
            "link-abs",
            tar_gz(&[("l", T::Symlink, b"/etc/passwd")]),
            "outside",
        ),
        (
            "hard",
            tar_gz(&[("h", T::Link, b"/etc/passwd")]),
            "hard links",
        ),
        ("device", tar_gz(&[("dev", T::Char, b"")]), "only files"),
        ("fifo", tar_gz(&[("p", T::Fifo, b"")]), "only files"),
        (
            "collide",
            tar_gz(&[("a/b", T::Regular, b"1"), ("a/./b", T::Regular, b"2")]),
            "same name",
        ),
        (
            "case",
            tar_gz(&[("App.js", T::Regular, b"1"), ("app.js", T::Regular, b"2")]),
            "same name",
        ),
        (
            "link-then-write",
            tar_gz(&[
                ("x", T::Symlink, b"sub"),
                ("x/../../../evil.txt", T::Regular, b"x"),
            ]),
            "`..`",
        ),
    ];
    for (name, bytes, needle) in cases {
        put(&granted, "up.tgz", &bytes);
        let err = unpack(&root, "up.tgz", "stage", None, CAPS).expect_err(name);
        assert!(err.to_string().contains(needle), "{name}: {err}");
        assert!(
            !granted.join("stage").exists(),
            "{name}: staging left behind"
        );
    }
    assert!(!dir.path().join("evil.txt").exists());
    assert!(!Path::new("/tmp/evil.txt").exists());
}

#[test]
fn bombs_and_floods_are_capped() {
    use tar::EntryType as T;
    let (dir, root) = setup();
    let granted = dir.path().join("granted");
    // 4 MiB of zeros compresses to a few KiB: far past a ratio of 100.
    let zeros = vec![0u8; 4 << 20];
    put(&granted, "bomb.tgz", &tar_gz(&[("z", T::Regular, &zeros)]));
    let caps = Caps {
        max_bytes: 64 << 20,
        ..CAPS
    };
    let err = unpack(&root, "bomb.tgz", "stage", None, caps).unwrap_err();
    assert!(err.to_string().contains("maxRatio"), "{err}");
    let err = unpack(
        &root,
        "bomb.tgz",
        "stage",
        None,
        Caps {
            max_ratio: 100_000,
            ..CAPS
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("maxBytes"), "{err}");
    let many: Vec<(String, T, &[u8])> = (0..101)
        .map(|i| (format!("f{i}"), T::Regular, &b"x"[..]))
        .collect();
    let refs: Vec<(&str, T, &[u8])> = many.iter().map(|(n, k, d)| (n.as_str(), *k, *d)).collect();
    put(&granted, "many.tgz", &tar_gz(&refs));
    let err = unpack(&root, "many.tgz", "stage", None, CAPS).unwrap_err();
    assert!(err.to_string().contains("maxEntries"), "{err}");
    assert!(!granted.join("stage").exists());
}

#[test]
fn a_tree_packs_and_unpacks_identically_in_both_formats() {
    let (dir, root) = setup();
    let granted = dir.path().join("granted");
    root.write("app/worker.jsonc", b"{}", false, true).unwrap();
    root.write("app/public/index.html", b"<h1>hi</h1>", false, true)
        .unwrap();
    symlink("public/index.html", granted.join("app/home.html")).unwrap();
    for (format, file) in [(Format::TarGz, "a.tgz"), (Format::Zip, "a.zip")] {
        let bytes = pack(&root, "app", format, 1 << 20).unwrap();
        assert_eq!(Format::sniff(&bytes), Some(format));
        put(&granted, file, &bytes);
        let dest = format!("copy-{file}");
        let done = unpack(&root, file, &dest, None, CAPS).unwrap();
        assert_eq!(done.entries, 4, "{file}");
        assert_eq!(
            root.read(&format!("{dest}/public/index.html"), 100)
                .unwrap(),
            b"<h1>hi</h1>"
        );
        assert_eq!(
            root.read(&format!("{dest}/home.html"), 100).unwrap(),
            b"<h1>hi</h1>"
        );
    }
    assert!(matches!(
        pack(&root, "app", Format::TarGz, 10),
        Err(FsError::Limit(_))
    ));
}

#[test]
fn hostile_zip_entries_are_refused() {
    let (dir, root) = setup();
    let granted = dir.path().join("granted");
    for (name, needle) in [
        ("../evil.txt", "`..`"),
        ("/abs.txt", "absolute"),
        ("a\\..\\b", "backslash"),
    ] {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"x").unwrap();
        put(&granted, "up.zip", &zip.finish().unwrap().into_inner());
        let err = unpack(&root, "up.zip", "stage", None, CAPS).unwrap_err();
        assert!(err.to_string().contains(needle), "{name}: {err}");
        assert!(!granted.join("stage").exists());
    }
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.add_symlink(
        "l",
        "../../secret.txt",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    put(&granted, "up.zip", &zip.finish().unwrap().into_inner());
    let err = unpack(&root, "up.zip", "stage", None, CAPS).unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    assert!(!dir.path().join("evil.txt").exists());
}

#[test]
fn exchange_swaps_two_entries_and_stays_inside() {
    let (dir, root) = setup();
    let granted = dir.path().join("granted");
    root.write("sub/b.txt", b"other", false, false)
        .expect("write");
    root.exchange("a.txt", "sub/b.txt").expect("exchange");
    assert_eq!(
        std::fs::read_to_string(granted.join("a.txt")).unwrap(),
        "other"
    );
    assert_eq!(
        std::fs::read_to_string(granted.join("sub/b.txt")).unwrap(),
        "inside"
    );
    assert_eq!(
        root.exchange("a.txt", "missing").unwrap_err().code(),
        "not_found"
    );
    denied(root.exchange("a.txt", "../secret.txt"));
    denied(root.exchange("a.txt", "out/x"));
    assert!(root.exchange("", "a.txt").is_err());
    // A spooled file is created new, never over an existing one.
    assert_eq!(
        root.create_new("a.txt", false).unwrap_err().code(),
        "exists"
    );
    root.create_new("new/dir/f.upload", true).expect("create");
    denied(root.create_new("out/f.upload", true));
}
