//! File input and output for the CLI. Output with `-o` is atomic: the full content is written to a
//! new temporary file in the destination's directory (created exclusively, with the final mode
//! from the start: 0600 for plaintext, 0644 for sealed manifests), synced, then renamed over the
//! destination. A failure removes the temporary file, so there is never a partial output. Inputs are
//! read with a size cap before any parsing.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{Error, Result};
use hush_sealed_format::yaml::MAX_INPUT_BYTES;

/// File mode for outputs holding plaintext secrets or identities.
pub(crate) const PRIVATE: u32 = 0o600;

/// File mode for sealed manifests (public by design).
pub(crate) const PUBLIC: u32 = 0o644;

/// A random hex suffix for temporary names.
pub(crate) fn random_suffix() -> String {
    let mut b = [0u8; 8];
    // Uniqueness, not secrecy; create_new below guards against collisions anyway.
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = (t as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads a file or, for `None` or `-`, standard input, refusing more than [`MAX_INPUT_BYTES`].
/// The buffer is zeroized on drop because it may hold a plaintext Secret.
pub(crate) fn read_input(path: Option<&Path>) -> Result<Zeroizing<String>> {
    // A file's buffer is sized from its length, so it never grows: every block freed here is
    // wiped (the CLI's allocator), and each regrowth would cost a copy and a wipe.
    let (name, reader, size): (String, Box<dyn Read>, usize) = match path {
        None => (
            "standard input".into(),
            Box::new(std::io::stdin()),
            64 * 1024,
        ),
        Some(p) if p == Path::new("-") => (
            "standard input".into(),
            Box::new(std::io::stdin()),
            64 * 1024,
        ),
        Some(p) => {
            let file = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
            let len = file.metadata().map_or(64 * 1024, |m| {
                usize::try_from(m.len()).unwrap_or(usize::MAX)
            });
            (p.display().to_string(), Box::new(file), len)
        }
    };
    let mut buf = Zeroizing::new(Vec::with_capacity(size.min(MAX_INPUT_BYTES) + 1));
    reader
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(&name, e))?;
    hush_sealed_format::yaml::check_size(buf.len(), &name)?;
    // The bytes move into the String (no copy); on an error they go back into a wiped buffer.
    String::from_utf8(std::mem::take(&mut *buf))
        .map(Zeroizing::new)
        .map_err(|e| {
            drop(Zeroizing::new(e.into_bytes()));
            Error::Yaml {
                what: name,
                detail: "not UTF-8 text; give a YAML or JSON manifest".into(),
            }
        })
}

/// Writes `content` to `path` atomically with `mode`, or to standard output when `path` is `None`.
pub(crate) fn write_output(path: Option<&Path>, content: &[u8], mode: u32) -> Result<()> {
    match path {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(content)
                .and_then(|()| out.flush())
                .map_err(|e| Error::io("standard output", e))
        }
        Some(p) if p == Path::new("-") => write_output(None, content, mode),
        Some(p) => write_atomic(p, content, mode),
    }
}

/// Removes a temporary file when dropped, unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Atomic write: temp file in the same directory, fsync, rename.
pub(crate) fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Usage {
            message: format!("{} is not a file path", path.display()),
        })?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{file_name}.hush-{}.tmp", random_suffix()));
    let mut guard = TempGuard(Some(tmp.clone()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(content)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    guard.0 = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("hush-fsio-{}", random_suffix()));
        std::fs::create_dir(&dir).unwrap();
        let p = dir.join("out.yaml");
        write_atomic(&p, b"one", PRIVATE).unwrap();
        write_atomic(&p, b"two", PRIVATE).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // A destination in a missing directory fails without leaving anything behind.
        assert!(write_atomic(&dir.join("missing/x"), b"x", PRIVATE).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
