//! The launcher behind `hush.dev/env`: it starts an app container's own command with secret values
//! in its environment, and then is gone. The injector rewrites a chosen container's `command` to
//! `<mount>/.hush-launch <mount> -- <command...>` (the `args` stay as they were); the sidecar has
//! copied this binary and the launch spec (`NAME=<file>` lines) into the secrets volume before its
//! startup probe passed. The launcher reads the spec and each named file from the tmpfs only, never
//! from its argv or env (which the pod spec, and so etcd, holds), refuses symlinks, validates the
//! names again, and `execve`s the command with the values added to the environment the kubelet
//! gave it, looking the command up in `PATH` when it has no `/` (as `execvp` does). No process of
//! ours stays in between. It is std only, with no dependencies but the names of `hush_contract`,
//! so the static binary stays small. Why it exists and its limits: docs/env.md.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use hush_contract::launch::{MAX_VALUE_BYTES, SEPARATOR, SPEC_FILE};
use hush_contract::names::{check_env_name, check_file_name};

/// `O_NOFOLLOW`, which std does not name; its value differs between architectures.
#[cfg(any(target_arch = "x86_64", target_arch = "riscv64", target_arch = "s390x"))]
const O_NOFOLLOW: i32 = 0o400_000;
#[cfg(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc64"
))]
const O_NOFOLLOW: i32 = 0o100_000;

/// The symlink to the current set of files (the sidecar's atomic writer).
const DATA_LINK: &str = "..data";
/// Most variables in one spec (the pod's annotations allow fewer).
const MAX_VARS: usize = 256;
/// Largest spec file.
const MAX_SPEC_BYTES: u64 = 64 << 10;
/// How often the set is read again when the sidecar swapped it while we read.
const ATTEMPTS: usize = 5;

/// Why the launcher could not start the app. It never holds a value.
#[derive(Debug)]
pub enum Error {
    /// The arguments are not `<secrets-dir> -- <command> [args...]`.
    Usage(String),
    /// A file of the secrets volume could not be read, or is not what it must be.
    File { path: PathBuf, reason: String },
    /// The launch spec is malformed.
    Spec { line: usize, reason: String },
    /// A value cannot be put into the environment.
    Value { name: String, reason: String },
    /// `execve` failed.
    Exec {
        command: String,
        source: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(r) => write!(
                f,
                "{r}; usage: hush-launch <secrets-dir> {SEPARATOR} <command> [args...] (the injector writes this command; let it inject the pod again)"
            ),
            Error::File { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::Spec { line, reason } => write!(f, "{SPEC_FILE} line {line}: {reason}"),
            Error::Value { name, reason } => write!(f, "environment variable {name}: {reason}"),
            Error::Exec { command, source } => write!(
                f,
                "cannot execute {command:?}: {source}; check the container's command (it must name a program in the image, with its full path or in PATH)"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// One variable of the spec: its name and the file in the secrets volume that holds its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub file: String,
}

/// Parses the launch spec: `NAME=<file>` lines, names POSIX portable and unique, files valid
/// secret file names.
pub fn parse_spec(text: &str) -> Result<Vec<Var>, Error> {
    let mut vars: Vec<Var> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| Error::Spec {
            line: i + 1,
            reason,
        };
        if line.is_empty() {
            continue;
        }
        let (name, file) = line
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=<file>".into()))?;
        check_env_name(name).map_err(bad)?;
        check_file_name(file).map_err(bad)?;
        if vars.iter().any(|v| v.name == name) {
            return Err(bad(format!("{name} is set twice")));
        }
        if vars.len() == MAX_VARS {
            return Err(bad(format!("more than {MAX_VARS} variables")));
        }
        vars.push(Var {
            name: name.into(),
            file: file.into(),
        });
    }
    Ok(vars)
}

/// Opens a regular file without following a symlink in its last component.
fn open_regular(path: &Path, max: u64) -> Result<(File, u64), Error> {
    let err = |reason: String| Error::File {
        path: path.to_path_buf(),
        reason,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(40) {
                err(
                    "is a symlink; the launcher never follows symlinks in the secrets volume"
                        .into(),
                )
            } else {
                err(e.to_string())
            }
        })?;
    let meta = f.metadata().map_err(|e| err(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(err("is not a regular file".into()));
    }
    if meta.size() > max {
        return Err(err(format!(
            "is {} bytes, over the {max} allowed",
            meta.size()
        )));
    }
    Ok((f, meta.size()))
}

/// Reads a whole file into a buffer of its exact size.
fn read_exact_size(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    let (mut f, size) = open_regular(path, max)?;
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0) + 1);
    let read = f
        .by_ref()
        .take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        });
    match read {
        Ok(n) if n as u64 > max => {
            wipe(&mut buf);
            Err(Error::File {
                path: path.to_path_buf(),
                reason: format!("grew over the {max} bytes allowed while it was read"),
            })
        }
        Ok(_) => Ok(buf),
        Err(e) => {
            wipe(&mut buf);
            Err(e)
        }
    }
}

/// Overwrites a buffer with zeros, in a way the optimiser keeps.
fn wipe(buf: &mut Vec<u8>) {
    buf.fill(0);
    std::hint::black_box(&buf);
    buf.clear();
}

/// The directory `..data` points at: a `..`-prefixed name directly inside `dir`.
fn current_set(dir: &Path) -> Result<PathBuf, Error> {
    let link = dir.join(DATA_LINK);
    let target = std::fs::read_link(&link).map_err(|e| Error::File {
        path: link.clone(),
        reason: format!("{e}; the sidecar has not written the secrets yet"),
    })?;
    let t = target.as_os_str().as_bytes();
    let valid = t.len() > 2 && t.starts_with(b"..") && !t.contains(&b'/') && t != b"..data";
    if !valid {
        return Err(Error::File {
            path: link,
            reason: "does not point at a set written by the sidecar".into(),
        });
    }
    let set = dir.join(target);
    let meta = std::fs::symlink_metadata(&set).map_err(|e| Error::File {
        path: set.clone(),
        reason: e.to_string(),
    })?;
    if !meta.file_type().is_dir() {
        return Err(Error::File {
            path: set,
            reason: "is not a directory".into(),
        });
    }
    Ok(set)
}

/// Reads every variable's value from one consistent set (the one `..data` points at); if the
/// sidecar swapped the set meanwhile, reads again.
pub fn read_values(dir: &Path, vars: &[Var]) -> Result<Vec<(OsString, OsString)>, Error> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let set = current_set(dir)?;
        match read_set(&set, vars) {
            Ok(values) => {
                if current_set(dir)? == set {
                    return Ok(values);
                }
                drop_values(values);
            }
            Err(e @ Error::File { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::File {
        path: dir.join(DATA_LINK),
        reason: "changed on every attempt; try again".into(),
    }))
}

fn read_set(set: &Path, vars: &[Var]) -> Result<Vec<(OsString, OsString)>, Error> {
    let mut out = Vec::with_capacity(vars.len());
    for v in vars {
        let mut value = match read_exact_size(&set.join(&v.file), MAX_VALUE_BYTES as u64) {
            Ok(value) => value,
            Err(e) => {
                drop_values(out);
                return Err(e);
            }
        };
        if value.contains(&0) {
            wipe(&mut value);
            drop_values(out);
            return Err(Error::Value {
                name: v.name.clone(),
                reason: format!(
                    "the file {} contains a NUL byte, which an environment variable cannot hold; mount the file instead",
                    v.file
                ),
            });
        }
        out.push((OsString::from(&v.name), OsString::from_vec(value)));
    }
    Ok(out)
}

fn drop_values(values: Vec<(OsString, OsString)>) {
    for (_, v) in values {
        let mut v = v.into_vec();
        wipe(&mut v);
    }
}

/// The parsed command line: the secrets directory, the program and its arguments.
pub fn parse_args(args: Vec<OsString>) -> Result<(PathBuf, OsString, Vec<OsString>), Error> {
    let mut it = args.into_iter().skip(1);
    let dir = it
        .next()
        .ok_or_else(|| Error::Usage("no secrets directory".into()))?;
    if !Path::new(&dir).is_absolute() {
        return Err(Error::Usage(
            "the secrets directory must be an absolute path".into(),
        ));
    }
    if it.next().as_deref() != Some(OsStr::new(SEPARATOR)) {
        return Err(Error::Usage(format!(
            "expected {SEPARATOR} after the secrets directory"
        )));
    }
    let program = it
        .next()
        .ok_or_else(|| Error::Usage("no command to run".into()))?;
    Ok((PathBuf::from(dir), program, it.collect()))
}

/// Reads the spec and the values, then execs the program; returns only on failure.
pub fn launch(args: Vec<OsString>) -> Error {
    let (dir, program, rest) = match parse_args(args) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let spec_path = dir.join(SPEC_FILE);
    let spec = match read_exact_size(&spec_path, MAX_SPEC_BYTES) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let vars = match std::str::from_utf8(&spec)
        .map_err(|_| Error::File {
            path: spec_path.clone(),
            reason: "is not UTF-8".into(),
        })
        .and_then(parse_spec)
    {
        Ok(v) => v,
        Err(e) => return e,
    };
    let values = match read_values(&dir, &vars) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&rest);
    // The values move into the Command; execve replaces this process's memory, and on a failed
    // exec the process exits at once.
    for (name, value) in values {
        cmd.env(name, value);
    }
    let source = cmd.exec();
    Error::Exec {
        command: program.to_string_lossy().into_owned(),
        source,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spec_lines() {
        let vars = parse_spec("A=db\nB_2=api-key\n").unwrap();
        assert_eq!(vars.len(), 2);
        assert_eq!(vars[1].name, "B_2");
        assert_eq!(vars[1].file, "api-key");
        for bad in [
            "A",
            "1A=db",
            "A=../x",
            "A=db\nA=x",
            "A=.hush-launch",
            "A-B=db",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn args_need_the_separator_and_a_command() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let (dir, prog, rest) = parse_args(a(&["l", "/s", "--", "sh", "-c", "x"])).unwrap();
        assert_eq!(dir, PathBuf::from("/s"));
        assert_eq!(prog, "sh");
        assert_eq!(rest, a(&["-c", "x"]));
        for bad in [
            &["l"][..],
            &["l", "/s"],
            &["l", "/s", "--"],
            &["l", "s", "--", "sh"],
            &["l", "/s", "sh"],
        ] {
            assert!(parse_args(a(bad)).is_err(), "{bad:?}");
        }
    }

    fn volume(files: &[(&str, &[u8])]) -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "hush-launch-test-{}-{}",
            std::process::id(),
            fastrand_like()
        ));
        let set = root.join("..2026_01_01");
        std::fs::create_dir_all(&set).unwrap();
        for (name, bytes) in files {
            std::fs::write(set.join(name), bytes).unwrap();
        }
        std::os::unix::fs::symlink("..2026_01_01", root.join(DATA_LINK)).unwrap();
        root
    }

    fn fastrand_like() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    fn var(name: &str, file: &str) -> Var {
        Var {
            name: name.into(),
            file: file.into(),
        }
    }

    #[test]
    fn values_come_from_the_current_set() {
        let root = volume(&[("db", b"s3cret\nline2")]);
        let v = read_values(&root, &[var("DB", "db")]).unwrap();
        assert_eq!(v[0].0, "DB");
        assert_eq!(v[0].1, "s3cret\nline2");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn symlinks_nul_bytes_and_missing_files_are_refused() {
        let root = volume(&[("nul", b"a\0b")]);
        std::os::unix::fs::symlink("/etc/hostname", root.join("..2026_01_01/link")).unwrap();
        let e = read_values(&root, &[var("L", "link")]).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        let e = read_values(&root, &[var("N", "nul")]).unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
        let e = read_values(&root, &[var("M", "missing")]).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_data_link_out_of_the_volume_is_refused() {
        let root = volume(&[]);
        std::fs::remove_file(root.join(DATA_LINK)).unwrap();
        std::os::unix::fs::symlink("/etc", root.join(DATA_LINK)).unwrap();
        assert!(read_values(&root, &[var("A", "passwd")]).is_err());
        std::fs::remove_dir_all(root).unwrap();
    }
}
