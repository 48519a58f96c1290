//! File input and output for the CLI. Output with `-o` is atomic: the full content is written to a
//! new temporary file in the destination's directory (created exclusively, with the final mode
//! from the start: 0600 for plaintext, 0644 for sealed manifests), synced, then renamed over the
//! destination. A failure removes the temporary file, so there is never a partial output. Inputs are
//! read with a size cap before any parsing.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::yaml::MAX_INPUT_BYTES;
use crate::{Error, Result};

/// File mode for outputs holding plaintext secrets or identities.
pub const PRIVATE: u32 = 0o600;

/// File mode for sealed manifests (public by design).
pub const PUBLIC: u32 = 0o644;

/// A random hex suffix for temporary names.
pub fn random_suffix() -> String {
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
pub fn read_input(path: Option<&Path>) -> Result<Zeroizing<String>> {
    let (name, reader): (String, Box<dyn Read>) = match path {
        None => ("standard input".into(), Box::new(std::io::stdin())),
        Some(p) if p == Path::new("-") => ("standard input".into(), Box::new(std::io::stdin())),
        Some(p) => (
            p.display().to_string(),
            Box::new(std::fs::File::open(p).map_err(|e| Error::io(p, e))?),
        ),
    };
    let mut buf = Zeroizing::new(Vec::with_capacity(64 * 1024));
    reader
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(&name, e))?;
    crate::yaml::check_size(buf.len(), &name)?;
    let text = std::str::from_utf8(&buf).map_err(|_| Error::Yaml {
        what: name.clone(),
        detail: "not UTF-8 text; give a YAML or JSON manifest".into(),
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Writes `content` to `path` atomically with `mode`, or to standard output when `path` is `None`.
pub fn write_output(path: Option<&Path>, content: &[u8], mode: u32) -> Result<()> {
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
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<()> {
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

/// Reads a ConfigMap mounted as a volume (the kubelet's layout: one file per key, plus `..data` and
/// timestamped `..` directories, which are skipped) into the `data` map [`crate::open_value`]
/// takes. Refuses more than 2 MiB in total and values that are not UTF-8 (hush never writes such).
pub fn read_mounted_configmap(dir: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    const MAX_TOTAL: u64 = 2 * 1024 * 1024;
    let mut out = std::collections::BTreeMap::new();
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if !meta.is_file() {
            continue;
        }
        total += meta.len();
        if total > MAX_TOTAL {
            return Err(Error::InputTooLarge {
                what: format!("the ConfigMap mounted at {}", dir.display()),
                size: usize::try_from(total).unwrap_or(usize::MAX),
                limit: MAX_TOTAL as usize,
                hint: "a ConfigMap is at most 1 MiB; is this the right volume?",
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        out.insert(name, text);
    }
    Ok(out)
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

    #[test]
    fn mounted_configmap_layout_is_read_without_the_kubelet_entries() {
        let vol = std::env::temp_dir().join(format!("hush-vol-{}", random_suffix()));
        std::fs::create_dir_all(vol.join("..2026_01_01")).unwrap();
        std::fs::write(vol.join("..2026_01_01/_hush"), "{}").unwrap();
        std::os::unix::fs::symlink("..2026_01_01", vol.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/_hush", vol.join("_hush")).unwrap();
        let data = read_mounted_configmap(&vol).unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["_hush"]);
        assert_eq!(data["_hush"], "{}");
        std::fs::remove_dir_all(&vol).unwrap();
    }
}
