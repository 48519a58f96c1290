//! The atomic writer on a real file system: modes, no-op refreshes, stale files, readers racing
//! many swaps, a full tmpfs, and symlinks planted in the volume.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hush_sidecar::Error;
use hush_sidecar::{AtomicWriter, DATA_LINK, OutputFile, WriteOutcome};

fn file<'a>(name: &'a str, mode: u32, bytes: &'a [u8]) -> OutputFile<'a> {
    OutputFile { name, mode, bytes }
}

fn dot_dirs(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn entries(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_links_and_exact_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let w = AtomicWriter::open(tmp.path()).unwrap();
    let out = w
        .write_set(&[
            file("a", 0o440, b"alpha"),
            file("b.env", 0o444, b"B=1\n"),
            file("c", 0o400, b""),
            file("d", 0o644, &[0, 255, 1, 254]),
        ])
        .unwrap();
    assert_eq!(out, WriteOutcome::Written);
    let root = tmp.path();
    assert_eq!(fs::read(root.join("a")).unwrap(), b"alpha");
    assert_eq!(fs::read(root.join("d")).unwrap(), [0, 255, 1, 254]);
    for (name, mode) in [("a", 0o440), ("b.env", 0o444), ("c", 0o400), ("d", 0o644)] {
        let link = fs::read_link(root.join(name)).unwrap();
        assert_eq!(link, PathBuf::from(format!("..data/{name}")));
        let m = fs::metadata(root.join(name)).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{name}");
        assert!(m.is_file());
    }
    let target = fs::read_link(root.join(DATA_LINK)).unwrap();
    assert!(target.to_string_lossy().starts_with(".."));
    assert_eq!(dot_dirs(root), [target.to_string_lossy().into_owned()]);
}

/// A volume with the pod's fsGroup is a setgid directory (the kubelet makes it so): each new set
/// must keep the bit, so its files get the pod's group and 0440 stays readable by the app. A
/// chmod that dropped it made the files the sidecar's group on a real node.
#[test]
fn a_setgid_volume_keeps_its_group_on_every_set() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::set_permissions(root, fs::Permissions::from_mode(0o2777)).unwrap();
    let gid = fs::metadata(root).unwrap().gid();
    let w = AtomicWriter::open(root).unwrap();
    w.write_set(&[file("db", 0o440, b"one")]).unwrap();
    w.write_set(&[file("db", 0o440, b"two")]).unwrap();
    let data = fs::canonicalize(root.join(DATA_LINK)).unwrap();
    let dir = fs::metadata(&data).unwrap();
    assert_eq!(
        dir.mode() & 0o2000,
        0o2000,
        "the set's directory keeps setgid"
    );
    assert_eq!(dir.gid(), gid);
    assert_eq!(fs::metadata(data.join("db")).unwrap().gid(), gid);
    assert_eq!(fs::read(root.join("db")).unwrap(), b"two");
}

#[test]
fn unchanged_refresh_is_a_no_op_and_changes_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let w = AtomicWriter::open(root).unwrap();
    let set1 = [file("a", 0o444, b"one"), file("b", 0o444, b"two")];
    assert_eq!(w.write_set(&set1).unwrap(), WriteOutcome::Written);
    let first = fs::read_link(root.join(DATA_LINK)).unwrap();
    assert_eq!(w.write_set(&set1).unwrap(), WriteOutcome::Unchanged);
    assert_eq!(fs::read_link(root.join(DATA_LINK)).unwrap(), first);
    // A new writer (a restarted sidecar) sees the same set as unchanged too.
    let w2 = AtomicWriter::open(root).unwrap();
    assert_eq!(w2.write_set(&set1).unwrap(), WriteOutcome::Unchanged);

    // A mode change alone is a change.
    let set2 = [file("a", 0o440, b"one"), file("b", 0o444, b"two")];
    assert_eq!(w.write_set(&set2).unwrap(), WriteOutcome::Written);
    let second = fs::read_link(root.join(DATA_LINK)).unwrap();
    assert_ne!(second, first);
    assert_eq!(
        dot_dirs(root),
        [second.to_string_lossy().into_owned()],
        "old dir removed"
    );

    // Content of the same length is a change.
    let set3 = [file("a", 0o440, b"ONE"), file("b", 0o444, b"two")];
    assert_eq!(w.write_set(&set3).unwrap(), WriteOutcome::Written);
    assert_eq!(fs::read(root.join("a")).unwrap(), b"ONE");

    // Dropping a file removes its link; adding one adds it.
    let set4 = [file("b", 0o444, b"two"), file("c", 0o444, b"three")];
    assert_eq!(w.write_set(&set4).unwrap(), WriteOutcome::Written);
    assert!(fs::symlink_metadata(root.join("a")).is_err());
    assert_eq!(fs::read(root.join("c")).unwrap(), b"three");
    let names: Vec<String> = entries(root)
        .into_iter()
        .filter(|n| !n.starts_with(".."))
        .collect();
    assert_eq!(names, ["b", "c"]);
}

#[test]
fn invalid_names_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let w = AtomicWriter::open(tmp.path()).unwrap();
    for bad in ["../x", "/abs", "a/../../b", "..data", "."] {
        let e = w.write_set(&[file(bad, 0o444, b"v")]).unwrap_err();
        assert!(matches!(e, Error::Render { .. }), "{bad}: {e}");
    }
    assert!(
        w.write_set(&[file("a", 0o444, b"1"), file("a", 0o444, b"2")])
            .is_err()
    );
    assert!(entries(tmp.path()).is_empty());
}

/// Content of file `name` in generation `g`: its own length and generation, so a partial or a
/// mixed read is visible.
fn content(g: usize, name: &str) -> Vec<u8> {
    let pad = "x".repeat((g * 37) % 5000);
    format!("{g}:{name}:{pad}:end").into_bytes()
}

fn parse_gen(bytes: &[u8], name: &str) -> usize {
    let s = std::str::from_utf8(bytes).expect("utf-8");
    let mut parts = s.splitn(3, ':');
    let g: usize = parts.next().unwrap().parse().expect("generation");
    assert_eq!(parts.next(), Some(name));
    assert_eq!(
        bytes,
        content(g, name).as_slice(),
        "partial or corrupt {name}"
    );
    g
}

#[test]
fn readers_never_see_a_mixed_or_partial_set() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let w = AtomicWriter::open(&root).unwrap();
    let names = ["a", "b", "c"];
    let write = |g: usize| {
        let bufs: Vec<Vec<u8>> = names.iter().map(|n| content(g, n)).collect();
        let set: Vec<OutputFile<'_>> = names
            .iter()
            .zip(&bufs)
            .map(|(n, b)| file(n, 0o444, b))
            .collect();
        w.write_set(&set).unwrap()
    };
    write(0);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let root = root.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut consistent = 0usize;
            let mut single = 0usize;
            loop {
                let finished = done.load(Ordering::SeqCst);
                // The consistent way: resolve ..data once, read every file below it.
                if let Ok(dir) = fs::File::open(root.join(DATA_LINK)) {
                    let base = PathBuf::from(format!("/proc/self/fd/{}", {
                        use std::os::fd::AsRawFd;
                        dir.as_raw_fd()
                    }));
                    let got: Result<Vec<Vec<u8>>, _> =
                        names.iter().map(|n| fs::read(base.join(n))).collect();
                    // ENOENT: the directory was retired between open and read; retry.
                    if let Ok(got) = got {
                        let gens: Vec<usize> = got
                            .iter()
                            .zip(names)
                            .map(|(b, n)| parse_gen(b, n))
                            .collect();
                        assert!(gens.iter().all(|g| *g == gens[0]), "mixed set {gens:?}");
                        consistent += 1;
                    }
                }
                // Through the stable per-file links: each file is complete.
                for n in names {
                    if let Ok(b) = fs::read(root.join(n)) {
                        parse_gen(&b, n);
                        single += 1;
                    }
                }
                if finished {
                    return (consistent, single);
                }
            }
        })
    };
    for g in 1..=300 {
        assert_eq!(write(g), WriteOutcome::Written);
    }
    done.store(true, Ordering::SeqCst);
    let (consistent, single) = reader.join().expect("reader saw a mixed or partial set");
    assert!(consistent >= 1 && single >= 1);
    // Only the last generation's directory remains.
    assert_eq!(dot_dirs(&root).len(), 1);
    assert_eq!(parse_gen(&fs::read(root.join("a")).unwrap(), "a"), 300);
}

/// A real 64 KiB tmpfs, unmounted on drop.
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    fn mount() -> SmallTmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0755", "hush-test"])
            .arg(dir.path())
            .status()
            .expect("run mount(8)");
        assert!(
            status.success(),
            "cannot mount a 64 KiB tmpfs at {} (needs root or CAP_SYS_ADMIN); the full-volume test cannot run here",
            dir.path().display()
        );
        SmallTmpfs { dir }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_tmpfs_keeps_the_old_set_and_names_the_file_not_the_value() {
    let fs_ = SmallTmpfs::mount();
    let root = fs_.dir.path();
    let w = AtomicWriter::open(root).unwrap();
    let old = [file("a", 0o440, b"old-a"), file("b", 0o440, b"old-b")];
    assert_eq!(w.write_set(&old).unwrap(), WriteOutcome::Written);
    let before = fs::read_link(root.join(DATA_LINK)).unwrap();

    let canary = b"CANARY-3f9a".repeat(10_000); // 110 KB: more than the volume holds.
    let err = w
        .write_set(&[file("a", 0o440, b"new-a"), file("big", 0o440, &canary)])
        .unwrap_err();
    let msg = format!("{err} / {err:?}");
    assert!(msg.contains("big"), "{msg}");
    assert!(!msg.contains("CANARY"), "{msg}");
    assert!(msg.contains("the previous files are unchanged"), "{msg}");
    match &err {
        Error::Output { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(28), "ENOSPC expected: {source}");
        }
        other => panic!("{other}"),
    }
    // The old set is intact and still current, and the partial directory is gone.
    assert_eq!(fs::read_link(root.join(DATA_LINK)).unwrap(), before);
    assert_eq!(fs::read(root.join("a")).unwrap(), b"old-a");
    assert_eq!(fs::read(root.join("b")).unwrap(), b"old-b");
    assert!(fs::symlink_metadata(root.join("big")).is_err());
    assert_eq!(dot_dirs(root), [before.to_string_lossy().into_owned()]);
    // And the volume recovers once the set fits.
    assert_eq!(
        w.write_set(&[file("a", 0o440, b"new-a")]).unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(fs::read(root.join("a")).unwrap(), b"new-a");
}

#[test]
fn planted_symlinks_are_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("victim"), b"untouched").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::os::unix::fs::symlink(outside.path().join("victim"), root.join("db")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("..data_tmp")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join(DATA_LINK)).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("..2020")).unwrap();

    let w = AtomicWriter::open(root).unwrap();
    assert_eq!(
        w.write_set(&[file("db", 0o444, b"secret"), file("victim", 0o444, b"x")])
            .unwrap(),
        WriteOutcome::Written
    );
    // Nothing outside changed.
    assert_eq!(
        fs::read(outside.path().join("victim")).unwrap(),
        b"untouched"
    );
    assert_eq!(entries(outside.path()), ["victim"]);
    assert_eq!(
        fs::metadata(outside.path().join("victim")).unwrap().mode() & 0o777,
        0o644 & !umask_bits()
    );
    // The volume now holds our links.
    assert_eq!(
        fs::read_link(root.join("db")).unwrap(),
        PathBuf::from("..data/db")
    );
    assert_eq!(fs::read(root.join("db")).unwrap(), b"secret");
    let data = fs::read_link(root.join(DATA_LINK)).unwrap();
    assert!(!data.is_absolute() && data.to_string_lossy().starts_with(".."));
    assert!(fs::symlink_metadata(root.join("..data_tmp")).is_err());

    // A directory where a file's link belongs is not replaced (nor descended into); the error
    // says the set was swapped, not that the old files were kept.
    fs::create_dir(root.join("dir1")).unwrap();
    fs::write(root.join("dir1").join("keep"), b"k").unwrap();
    let e = w.write_set(&[file("dir1", 0o444, b"v")]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("dir1") && !msg.contains("unchanged"), "{msg}");
    assert_eq!(fs::read(root.join("dir1").join("keep")).unwrap(), b"k");

    // A root that is itself a symlink is refused.
    let link_root = tempfile::tempdir().unwrap();
    let via = link_root.path().join("vol");
    std::os::unix::fs::symlink(root, &via).unwrap();
    assert!(AtomicWriter::open(&via).is_err());
}

fn umask_bits() -> u32 {
    let probe = tempfile::tempdir().unwrap();
    let p = probe.path().join("p");
    fs::write(&p, b"").unwrap();
    0o666 & !(fs::metadata(&p).unwrap().mode() & 0o777)
}
