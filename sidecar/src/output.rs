//! Atomic writes of the secrets volume, following the kubelet's AtomicWriter: every set of files
//! goes into a fresh `..<timestamp>` directory inside the volume root, is fsynced, and becomes
//! visible with one atomic `rename` of a `..data_tmp` symlink over `..data`. Each file is reached
//! through a stable symlink `<name> -> ..data/<name>`. So a reader that opens `..data` once sees a
//! complete, consistent set, and a failure at any step (a full tmpfs, say) leaves the previous set
//! exactly as it was.
//!
//! Everything is done relative to a directory descriptor of the volume root with `O_NOFOLLOW`, so a
//! symlink planted in the volume is never followed: `..data` is resolved by reading the link and
//! checking that it names a `..`-prefixed directory inside the root. Modes are set with `fchmod`
//! exactly as given; there is no chown (the sidecar has no capabilities). Errors name the file and
//! the operation, never the content. An unchanged set is detected by comparing with what is on
//! disk, so a refresh that changes nothing writes nothing and reports [`WriteOutcome::Unchanged`].
//! There is one writer per volume (the sidecar); readers need no locking.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use hush_contract::names::check_file_name;

/// The symlink that points at the current set.
pub const DATA_LINK: &str = "..data";
/// The temporary symlink renamed over [`DATA_LINK`].
pub(crate) const DATA_TMP_LINK: &str = "..data_tmp";

/// One file of a set.
#[derive(Clone, Copy)]
pub struct OutputFile<'a> {
    /// File name (validated again here).
    pub name: &'a str,
    /// Permission bits, set with `fchmod`.
    pub mode: u32,
    /// Content. Never logged.
    pub bytes: &'a [u8],
}

impl std::fmt::Debug for OutputFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputFile")
            .field("name", &self.name)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// What [`AtomicWriter::write_set`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Content and modes were already on disk; nothing was swapped (no notification is due).
    Unchanged,
    /// A new set was swapped in.
    Written,
}

/// Writes sets of files into one volume root.
pub struct AtomicWriter {
    root: PathBuf,
    root_fd: OwnedFd,
}

impl std::fmt::Debug for AtomicWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicWriter")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// An error before the swap: the previous set is intact.
fn io_err(file: &str, op: &'static str, e: impl Into<std::io::Error>) -> Error {
    Error::Output {
        file: file.to_string(),
        op,
        kept_previous: true,
        source: e.into(),
    }
}

/// An error after the swap: the new set is visible, but a per-file link could not be made.
fn late_err(e: Error) -> Error {
    match e {
        Error::Output {
            file, op, source, ..
        } => Error::Output {
            file,
            op,
            kept_previous: false,
            source,
        },
        other => other,
    }
}

impl AtomicWriter {
    /// Opens the volume root (which must be a directory, not a symlink).
    pub fn open(root: impl AsRef<Path>) -> Result<AtomicWriter> {
        let root = root.as_ref().to_path_buf();
        let root_fd = rustix::fs::open(
            &root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::Io {
            path: root.display().to_string(),
            source: e.into(),
        })?;
        Ok(AtomicWriter { root, root_fd })
    }

    /// The volume root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory `..data` points at, if it is a valid one.
    pub fn current_dir(&self) -> Option<String> {
        let target = rustix::fs::readlinkat(&self.root_fd, DATA_LINK, Vec::new()).ok()?;
        let target = target.to_str().ok()?;
        let valid = target.starts_with("..")
            && target.len() > 2
            && !target.contains('/')
            && target != DATA_LINK
            && target != DATA_TMP_LINK;
        valid.then(|| target.to_string())
    }

    /// Makes `files` the visible set: a no-op returning [`WriteOutcome::Unchanged`] when names,
    /// modes and contents are already on disk, otherwise an atomic swap. On error the previous
    /// set is intact and the partial new directory is removed.
    pub fn write_set(&self, files: &[OutputFile<'_>]) -> Result<WriteOutcome> {
        let mut names = BTreeSet::new();
        for f in files {
            check_file_name(f.name).map_err(|reason| Error::Render {
                file: hush_contract::names::short(f.name),
                reason,
            })?;
            if !names.insert(f.name) {
                return Err(Error::Render {
                    file: f.name.to_string(),
                    reason: "the file appears twice in the set".into(),
                });
            }
            if f.mode & !0o777 != 0 {
                return Err(Error::Render {
                    file: f.name.to_string(),
                    reason: format!("invalid mode {:o}", f.mode),
                });
            }
        }

        let current = self.current_dir();
        if let Some(cur) = &current
            && self.matches(cur, files)
        {
            self.ensure_links(&names)?;
            self.remove_stale(&names, Some(cur));
            return Ok(WriteOutcome::Unchanged);
        }

        // A write killed before its swap (SIGKILL, OOM) leaves its `..<timestamp>` directory; on a
        // small tmpfs it and the current set can leave no room for the next set, and every later
        // write would fail. Nothing but the current set is needed now, so drop the rest first.
        self.remove_stale_dirs(current.as_deref());
        let new_dir = self.make_dir()?;
        if let Err(e) = self.fill_dir(&new_dir, files) {
            self.remove_dir(&new_dir);
            return Err(e);
        }
        if let Err(e) = self.swap(&new_dir) {
            self.remove_dir(&new_dir);
            return Err(e);
        }
        // The new set is visible; the rest is cleanup and link maintenance.
        self.ensure_links(&names).map_err(late_err)?;
        self.remove_stale(&names, Some(&new_dir));
        let _ = rustix::fs::fsync(&self.root_fd);
        Ok(WriteOutcome::Written)
    }

    /// Whether `dir` holds exactly `files` with the same modes and contents.
    fn matches(&self, dir: &str, files: &[OutputFile<'_>]) -> bool {
        let Ok(dfd) = rustix::fs::openat(
            &self.root_fd,
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        let Ok(on_disk) = list(&dfd) else {
            return false;
        };
        if on_disk.len() != files.len() || files.iter().any(|f| !on_disk.contains(f.name)) {
            return false;
        }
        files.iter().all(|f| same_file(&dfd, f))
    }

    /// Creates a fresh `..<timestamp>` directory.
    fn make_dir(&self) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!(
                "..{}.{:09}_{}_{n}",
                now.as_secs(),
                now.subsec_nanos(),
                std::process::id()
            );
            match rustix::fs::mkdirat(&self.root_fd, name.as_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    // The umask may have narrowed it; readers need to traverse it. Keep the
                    // setgid bit it inherited from a volume with the pod's fsGroup: without it
                    // the files would get the sidecar's own group, and 0440 would lock the app
                    // out (seen on a real kubelet).
                    if let Ok(fd) = self.open_dir(&name) {
                        let setgid = rustix::fs::fstat(&fd)
                            .map(|st| st.st_mode & 0o2000)
                            .unwrap_or(0);
                        let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755 | setgid));
                    }
                    return Ok(name);
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(io_err("..<timestamp>", "create directory", e)),
            }
        }
        Err(io_err(
            "..<timestamp>",
            "create directory",
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ))
    }

    fn open_dir(&self, name: &str) -> rustix::io::Result<OwnedFd> {
        rustix::fs::openat(
            &self.root_fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }

    /// Writes every file into `dir`, fsyncs each and the directory.
    fn fill_dir(&self, dir: &str, files: &[OutputFile<'_>]) -> Result<()> {
        let dfd = self
            .open_dir(dir)
            .map_err(|e| io_err(dir, "open directory", e))?;
        for f in files {
            let fd = rustix::fs::openat(
                &dfd,
                f.name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| io_err(f.name, "create", e))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(f.bytes)
                .map_err(|e| io_err(f.name, "write", e))?;
            rustix::fs::fchmod(&file, Mode::from_raw_mode(f.mode))
                .map_err(|e| io_err(f.name, "chmod", e))?;
            file.sync_all().map_err(|e| io_err(f.name, "fsync", e))?;
        }
        rustix::fs::fsync(&dfd).map_err(|e| io_err(dir, "fsync", e))?;
        Ok(())
    }

    /// Points `..data` at `dir` with one rename.
    fn swap(&self, dir: &str) -> Result<()> {
        match rustix::fs::unlinkat(&self.root_fd, DATA_TMP_LINK, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(io_err(DATA_TMP_LINK, "remove", e)),
        }
        rustix::fs::symlinkat(dir, &self.root_fd, DATA_TMP_LINK)
            .map_err(|e| io_err(DATA_TMP_LINK, "symlink", e))?;
        if let Err(e) = rustix::fs::renameat(&self.root_fd, DATA_TMP_LINK, &self.root_fd, DATA_LINK)
        {
            let _ = rustix::fs::unlinkat(&self.root_fd, DATA_TMP_LINK, AtFlags::empty());
            return Err(io_err(DATA_LINK, "rename", e));
        }
        Ok(())
    }

    /// Makes each `<name>` a symlink to `..data/<name>`, replacing anything else but a directory.
    fn ensure_links(&self, names: &BTreeSet<&str>) -> Result<()> {
        for name in names {
            let want = format!("{DATA_LINK}/{name}");
            match rustix::fs::readlinkat(&self.root_fd, *name, Vec::new()) {
                Ok(t) if t.to_bytes() == want.as_bytes() => continue,
                _ => {}
            }
            // Create under a temporary name, then rename over whatever is there (rename replaces
            // a file or a symlink itself and never follows it).
            let tmp = format!("..{name}.tmp");
            let _ = rustix::fs::unlinkat(&self.root_fd, tmp.as_str(), AtFlags::empty());
            rustix::fs::symlinkat(want.as_str(), &self.root_fd, tmp.as_str())
                .map_err(|e| io_err(name, "symlink", e))?;
            if let Err(e) = rustix::fs::renameat(&self.root_fd, tmp.as_str(), &self.root_fd, *name)
            {
                let _ = rustix::fs::unlinkat(&self.root_fd, tmp.as_str(), AtFlags::empty());
                return Err(io_err(name, "rename symlink", e));
            }
        }
        Ok(())
    }

    /// Removes every `..` directory but `keep` (the set `..data` points at) and stale temporary
    /// links. Best effort: a leftover is retried on the next write.
    fn remove_stale_dirs(&self, keep: Option<&str>) {
        let Ok(entries) = list_typed(&self.root_fd) else {
            return;
        };
        for (name, ty) in entries {
            if name == DATA_LINK || Some(name.as_str()) == keep {
                continue;
            }
            if let Some(rest) = name.strip_prefix("..") {
                if ty == FileType::Directory && !rest.is_empty() {
                    self.remove_dir(&name);
                } else if ty == FileType::Symlink {
                    // A stale ..data_tmp or ..<name>.tmp link.
                    let _ = rustix::fs::unlinkat(&self.root_fd, name.as_str(), AtFlags::empty());
                }
            }
        }
    }

    /// Removes per-file links no longer in the set and every `..` directory but `keep`.
    /// Best effort: a leftover is retried on the next write.
    fn remove_stale(&self, names: &BTreeSet<&str>, keep: Option<&str>) {
        self.remove_stale_dirs(keep);
        let Ok(entries) = list_typed(&self.root_fd) else {
            return;
        };
        for (name, ty) in entries {
            if name.starts_with("..") {
                continue;
            }
            if ty == FileType::Symlink && !names.contains(name.as_str()) {
                let ours = rustix::fs::readlinkat(&self.root_fd, name.as_str(), Vec::new())
                    .map(|t| t.to_bytes().starts_with(b"..data/"))
                    .unwrap_or(false);
                if ours {
                    let _ = rustix::fs::unlinkat(&self.root_fd, name.as_str(), AtFlags::empty());
                }
            }
        }
    }

    /// Removes a `..` directory and the plain files in it (it never holds anything else).
    fn remove_dir(&self, dir: &str) {
        if let Ok(dfd) = self.open_dir(dir)
            && let Ok(entries) = list_typed(&dfd)
        {
            for (name, ty) in entries {
                if ty != FileType::Directory {
                    let _ = rustix::fs::unlinkat(&dfd, name.as_str(), AtFlags::empty());
                }
            }
        }
        let _ = rustix::fs::unlinkat(&self.root_fd, dir, AtFlags::REMOVEDIR);
    }
}

/// Whether `dir/<f.name>` is a regular file with `f`'s mode and content.
fn same_file(dir: &OwnedFd, f: &OutputFile<'_>) -> bool {
    let Ok(fd) = rustix::fs::openat(
        dir,
        f.name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(&fd) else {
        return false;
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_mode & 0o7777 != f.mode
        || u64::try_from(st.st_size).ok() != Some(f.bytes.len() as u64)
    {
        return false;
    }
    let mut buf = Zeroizing::new(vec![0u8; f.bytes.len()]);
    let mut file = std::fs::File::from(fd);
    if file.read_exact(&mut buf).is_err() {
        return false;
    }
    // Nothing more after the expected length.
    let mut extra = [0u8; 1];
    if !matches!(file.read(&mut extra), Ok(0)) {
        return false;
    }
    bool::from(buf.as_slice().ct_eq(f.bytes))
}

fn list(dir: &OwnedFd) -> rustix::io::Result<BTreeSet<String>> {
    Ok(list_typed(dir)?.into_iter().map(|(n, _)| n).collect())
}

/// Entries of a directory (without `.` and `..`) and their types, from `lstat`.
fn list_typed(dir: &OwnedFd) -> rustix::io::Result<Vec<(String, FileType)>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(dir.as_fd())? {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let Ok(name) = std::str::from_utf8(bytes) else {
            continue;
        };
        let ty = match entry.file_type() {
            FileType::Unknown => rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode))
                .unwrap_or(FileType::Unknown),
            t => t,
        };
        out.push((name.to_string(), ty));
    }
    Ok(out)
}
