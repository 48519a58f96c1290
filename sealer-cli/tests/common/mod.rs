//! Shared helpers for the sealer's integration tests: fixed identities from `testdata/identities`,
//! the `hush` binary, and the reference `age` CLI (which must be installed: tests never skip).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hush_sealed_format::format::SecretMeta;
use hush_sealed_format::secret::SecretValue;
use hush_sealer::Secret;
use zeroize::Zeroizing;

pub(crate) fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

pub(crate) fn identity_path(name: &str) -> PathBuf {
    testdata().join("identities").join(format!("{name}.txt"))
}

pub(crate) fn identity(name: &str) -> hush_sealer::Identity {
    hush_sealer::parse_identity(&std::fs::read_to_string(identity_path(name)).unwrap()).unwrap()
}

pub(crate) fn recipient(name: &str) -> String {
    identity(name).to_public().to_string()
}

pub(crate) fn hush() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hush"));
    c.env_remove("HUSH_IDENTITY_FILE");
    c
}

/// Runs `cmd` with `input` on its standard input; both outputs are captured.
pub(crate) fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The reference age CLI. Fails (never skips) when it is missing.
pub(crate) fn age_cli(bin: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "the reference `{bin}` CLI is not on PATH; run `scripts/test-env up` (it installs age)"
    );
    Command::new(bin)
}

pub(crate) fn val(b: &[u8]) -> SecretValue {
    SecretValue::new(Zeroizing::new(b.to_vec()))
}

/// The Secret most tests seal: text, multi-line and binary values.
pub(crate) fn sample_secret() -> Secret {
    let mut values = BTreeMap::new();
    values.insert("password".to_owned(), val(b"hunter2"));
    values.insert("user".to_owned(), val(b"admin"));
    values.insert("bin".to_owned(), val(&[0, 1, 2, 255, b'\n', 0x80]));
    values.insert("config".to_owned(), val(b"a: 1\nb: 2\n"));
    Secret {
        name: "db".into(),
        namespace: Some("prod".into()),
        meta: SecretMeta {
            type_: "Opaque".into(),
            labels: [("app".to_owned(), "db".to_owned())].into(),
            annotations: [("team".to_owned(), "payments".to_owned())].into(),
            immutable: None,
        },
        values,
    }
}

/// A unique scratch directory under the target dir.
pub(crate) fn scratch(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("hush-test-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
