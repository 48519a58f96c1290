//! Puts the `hush.dev/env` launcher and its spec into the secrets volume before the sidecar reports
//! started, so the app containers the injector rewrote can start through it (docs/env.md). The
//! launcher is a separate static binary shipped beside `hush-sidecar` (in the image, and in a
//! cargo target dir); the sidecar copies it because the secrets volume is the one memory-backed
//! volume the app already mounts read-only, and a file the sidecar writes there is executable by
//! the app and cannot be changed by it. Both files are written to a temporary name relative to a
//! descriptor of the volume root with `O_NOFOLLOW`, fsynced, and renamed into place, so a restarted
//! sidecar replaces them atomically and never follows a planted link. The spec holds names only
//! (`NAME=<file>` lines): the values stay in the secret files, which the launcher reads at start.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::error::{Error, Result};
use hush_config::SidecarConfig;
use hush_contract::launch;

/// Where the launcher binary is: beside the running `hush-sidecar`.
fn launcher_source() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::Io {
        path: "/proc/self/exe".into(),
        source: e,
    })?;
    Ok(exe.with_file_name(launch::BINARY))
}

/// The spec the launcher reads: one `NAME=<file>` line per variable, in annotation order.
pub(crate) fn spec_text(cfg: &SidecarConfig) -> String {
    cfg.env
        .iter()
        .map(|e| format!("{}={}\n", e.name, e.file))
        .collect()
}

/// Copies the launcher and writes the spec into `secrets_dir`, when the pod uses `hush.dev/env`.
pub(crate) fn install(cfg: &SidecarConfig, secrets_dir: &Path) -> Result<()> {
    if cfg.env.is_empty() {
        return Ok(());
    }
    let source = launcher_source()?;
    let binary = std::fs::read(&source).map_err(|e| Error::Io {
        path: source.display().to_string(),
        source: std::io::Error::new(
            e.kind(),
            format!(
                "{e}; hush.dev/env needs the launcher {} beside hush-sidecar (the hush-sidecar image of this release has it)",
                launch::BINARY
            ),
        ),
    })?;
    let root = rustix::fs::open(
        secrets_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Io {
        path: secrets_dir.display().to_string(),
        source: e.into(),
    })?;
    put(&root, secrets_dir, launch::FILE, &binary, 0o555)?;
    put(
        &root,
        secrets_dir,
        launch::SPEC_FILE,
        spec_text(cfg).as_bytes(),
        0o444,
    )?;
    tracing::info!(
        variables = cfg.env.len(),
        launcher_bytes = binary.len(),
        "env launcher installed"
    );
    Ok(())
}

/// Writes `bytes` to `name` in `root` atomically: a temporary file, fchmod, fsync, rename.
fn put(root: &OwnedFd, dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = format!("{name}.tmp");
    let err = |op: &'static str, e: rustix::io::Errno| Error::Output {
        file: dir.join(name).display().to_string(),
        op,
        kept_previous: true,
        source: e.into(),
    };
    match rustix::fs::unlinkat(root, tmp.as_str(), AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(err("remove", e)),
    }
    let fd = rustix::fs::openat(
        root,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| err("create", e))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(|e| Error::Output {
        file: dir.join(name).display().to_string(),
        op: "write",
        kept_previous: true,
        source: e,
    })?;
    rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(|e| err("chmod", e))?;
    rustix::fs::fsync(&file).map_err(|e| err("fsync", e))?;
    drop(file);
    rustix::fs::renameat(root, tmp.as_str(), root, name).map_err(|e| err("rename", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hush_config::{EnvSpec, OperatorSettings};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn installs_the_launcher_and_spec_read_only() {
        let dir = std::env::temp_dir().join(format!("hush-launch-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = SidecarConfig {
            env: vec![
                EnvSpec {
                    name: "B".into(),
                    file: "b".into(),
                },
                EnvSpec {
                    name: "A".into(),
                    file: "a".into(),
                },
            ],
            ..SidecarConfig::defaults("ns", &OperatorSettings::default())
        };
        assert_eq!(spec_text(&cfg), "B=b\nA=a\n");
        // The unit test binary has no launcher beside it; put the spec only.
        let root =
            rustix::fs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        put(&root, &dir, launch::SPEC_FILE, b"A=a\n", 0o444).unwrap();
        put(&root, &dir, launch::SPEC_FILE, b"A=b\n", 0o444).unwrap();
        let spec = dir.join(launch::SPEC_FILE);
        assert_eq!(std::fs::read(&spec).unwrap(), b"A=b\n");
        let mode = std::fs::metadata(&spec).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o444);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
