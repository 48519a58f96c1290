//! Regression tests for what the fault suite (`scripts/faults`, docs/faults.md) found, at the
//! smallest scale that shows it. Each names its case in `bench/results/faults.md`. A test for a bug
//! that is not fixed yet is `#[ignore]`d with the reason, so `cargo test -- --ignored` reproduces
//! it and the fix removes the attribute.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use hush_sidecar::{AtomicWriter, OutputFile, WriteOutcome};
use hush_tests::faults::{Tmpfs, synthetic_value};

fn set(version: u64, names: &[&str], len: usize) -> Vec<(String, Vec<u8>)> {
    names
        .iter()
        .map(|n| (n.to_string(), synthetic_value(version, n, len).into_bytes()))
        .collect()
}

fn files(set: &[(String, Vec<u8>)]) -> Vec<OutputFile<'_>> {
    set.iter()
        .map(|(name, bytes)| OutputFile {
            name,
            mode: 0o444,
            bytes,
        })
        .collect()
}

/// Case 3 (c): a write killed before its swap (SIGKILL, OOM; case 2b) leaves its partial
/// `..<timestamp>` directory. Before the fix only a *successful* write removed stale directories,
/// so when the partial directory and the current set left no room for a new set, every later write
/// failed with ENOSPC and the volume never caught up, in this process or a restarted one (the
/// emptyDir outlives the container). Now a write first drops every `..` directory but the current
/// set. Needs root (it mounts a tmpfs).
#[test]
fn a_partial_directory_from_a_killed_write_does_not_block_the_next_set() {
    let dir = std::env::temp_dir().join(format!("hush-regress-3c-{}", std::process::id()));
    let mnt = Tmpfs::mount(&dir, "256k").expect("mount a tmpfs (run as root)");
    let names = ["a", "b", "c"];
    let len = 40 * 1024;

    let v1 = set(1, &names, len);
    let w = AtomicWriter::open(mnt.path()).unwrap();
    assert_eq!(w.write_set(&files(&v1)).unwrap(), WriteOutcome::Written);

    // What a writer killed between filling its directory and the swap leaves behind.
    let partial = mnt.path().join("..1000000000.000000000_1_0");
    std::fs::create_dir(&partial).unwrap();
    for (name, bytes) in set(2, &names, len) {
        std::fs::write(partial.join(name), bytes).unwrap();
    }

    // A restarted sidecar (a fresh writer) writes the next version: 120 KiB, and 240 of the 256
    // KiB are taken by the current set and the partial directory.
    let v3 = set(3, &names, len);
    let w = AtomicWriter::open(mnt.path()).unwrap();
    let r = w.write_set(&files(&v3));
    assert!(
        matches!(r, Ok(WriteOutcome::Written)),
        "the new set did not fit beside the stale partial directory: {r:?}"
    );
    for (name, bytes) in &v3 {
        assert_eq!(&std::fs::read(mnt.path().join(name)).unwrap(), bytes);
    }
    assert!(
        !partial.exists(),
        "the stale partial directory is still there"
    );
    drop(mnt);
    let _ = std::fs::remove_dir(&dir);
}
