//! The built `hush-launch` binary on a volume laid out as the sidecar writes it: the command it
//! execs sees the values (found through `PATH`, with its own arguments), the launcher leaves no
//! process behind, and each failure is one line on stderr with a nonzero exit.

#![allow(clippy::unwrap_used)] // test code

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn volume(tag: &str, spec: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("hush-launch-exec-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let set = root.join("..2026_11_30_21_00_00.1");
    std::fs::create_dir_all(&set).unwrap();
    for (name, bytes) in files {
        std::fs::write(set.join(name), bytes).unwrap();
    }
    std::os::unix::fs::symlink("..2026_11_30_21_00_00.1", root.join("..data")).unwrap();
    std::fs::write(root.join(".hush-env"), spec).unwrap();
    root
}

fn launch(dir: &Path, cmd: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hush-launch"))
        .arg(dir)
        .arg("--")
        .args(cmd)
        .env("KEPT", "from-the-kubelet")
        .output()
        .unwrap()
}

#[test]
fn the_command_runs_with_the_values_and_its_own_args() {
    let dir = volume(
        "ok",
        "DB_PASSWORD=db\nAPI_KEY=api\n",
        &[("db", b"p4ss word\nwith a newline"), ("api", b"k-123")],
    );
    // `sh` has no `/`: found through PATH, as execvp does. `$0` is the exec'd program's own
    // argv[0], so the launcher is gone (no wrapper process prints this).
    let out = launch(
        &dir,
        &[
            "sh",
            "-c",
            r#"printf '%s|%s|%s|%s|%s' "$DB_PASSWORD" "$API_KEY" "$KEPT" "$0" "$1""#,
            "argzero",
            "first arg",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "p4ss word\nwith a newline|k-123|from-the-kubelet|argzero|first arg"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn failures_are_one_clear_line_and_a_nonzero_exit() {
    let dir = volume("bad", "DB=missing\n", &[]);
    let out = launch(&dir, &["true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("hush-launch: ") && err.contains("missing"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let dir = volume("nocmd", "DB=db\n", &[("db", b"v4lue-never-logged")]);
    let out = launch(&dir, &["/no/such/program"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot execute \"/no/such/program\""), "{err}");
    assert!(!err.contains("v4lue"), "the value is not in the message");

    // A planted symlink in place of the spec is refused, not followed.
    std::fs::remove_file(dir.join(".hush-env")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join(".hush-env")).unwrap();
    let out = launch(&dir, &["true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("symlink"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
