//! `hush edit`: decrypt a sealed file into a private temporary file, run `$VISUAL`/`$EDITOR` on it,
//! and re-seal only the values that changed (same MAC key, so unchanged values keep their
//! ciphertexts and the git diff shows only real changes). The plaintext lives in a fresh 0700
//! directory (preferably on a tmpfs: `$XDG_RUNTIME_DIR`, else `/dev/shm`, else the temp dir) in a
//! 0600 file, and is overwritten and removed on every exit path: success, error, editor failure,
//! and SIGTERM/SIGHUP (which also stop the editor). SIGINT is left to the editor, which uses it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::fsio;
use crate::{Error, Result};
use hush_sealed_format::format::LABEL;
use hush_sealed_format::sealed::{SealedConfigMap, open_set};
use hush_sealed_format::secret::Secret;

/// The outcome of an edit session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing changed; the file was not rewritten.
    Unchanged,
    /// The file was re-sealed.
    Resealed {
        /// Keys whose value changed.
        changed: usize,
        /// Keys added.
        added: usize,
        /// Keys removed.
        removed: usize,
    },
}

/// A private directory removed (with its files overwritten first) on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create() -> Result<Self> {
        let base = [
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
            Some(PathBuf::from("/dev/shm")),
        ]
        .into_iter()
        .flatten()
        .find(|p| p.is_dir() && !p.as_os_str().is_empty())
        .unwrap_or_else(std::env::temp_dir);
        let mut last = None;
        for candidate in [base, std::env::temp_dir()] {
            let dir = candidate.join(format!("hush-edit-{}", fsio::random_suffix()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(PrivateDir(dir)),
                Err(e) => last = Some(Error::io(&dir, e)),
            }
        }
        Err(last.unwrap_or_else(|| Error::Usage {
            message: "no temporary directory".into(),
        }))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for entry in entries.flatten() {
                let p = entry.path();
                // Best effort: overwrite before unlinking (editors may have left swap files too).
                if let Ok(meta) = std::fs::symlink_metadata(&p)
                    && meta.is_file()
                    && let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&p)
                {
                    let zeros = vec![0u8; meta.len().min(16 << 20) as usize];
                    let _ = f.write_all(&zeros).and_then(|()| f.sync_all());
                }
                let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const EDIT_BANNER: &str = "# hush edit: change, add or remove values, save and quit.\n\
# stringData holds text values, data holds base64 (binary) values. Empty the file to abort.\n";

/// Runs `editor` (a shell command line, like git's `core.editor`) on `path`, stopping it on
/// SIGTERM/SIGHUP.
fn run_editor(editor: &str, path: &Path) -> Result<()> {
    let signal = Arc::new(AtomicUsize::new(0));
    let mut ids = Vec::new();
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ] {
        let id = signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)
            .map_err(|e| Error::io("signal handler", e))?;
        ids.push(id);
    }
    let result = (|| {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            // `exec` so that the editor is our direct child and stopping it stops the editor.
            .arg(format!("exec {editor} \"$@\""))
            .arg(editor)
            .arg(path)
            .spawn()
            .map_err(|e| Error::Editor {
                reason: format!("cannot start editor `{editor}`: {e}; set $EDITOR"),
            })?;
        loop {
            match signal.load(Ordering::SeqCst) {
                0 => {}
                s if s == signal_hook::consts::SIGINT as usize => {
                    // The editor got it too and decides; keep waiting.
                    signal.store(0, Ordering::SeqCst);
                }
                s => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Interrupted { signal: s as i32 });
                }
            }
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(Error::Editor {
                        reason: format!("the editor exited with {status}; nothing was changed"),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(Error::io("editor", e)),
            }
        }
    })();
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    result
}

/// Edits the sealed file at `path` in place with `editor`.
pub(crate) fn edit(
    path: &Path,
    identities: &[hush_sealed_format::Identity],
    editor: &str,
) -> Result<Outcome> {
    let text = fsio::read_input(Some(path))?;
    let cm = SealedConfigMap::parse(&text, &path.display().to_string())?;
    let opened = open_set(
        &cm.data,
        &cm.namespace,
        &cm.name,
        hush_sealed_format::format::META_KEY,
        identities,
    )?;
    let old = opened.unseal(identities)?;

    let dir = PrivateDir::create()?;
    let file = dir.0.join(format!("{}.yaml", cm.name));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| Error::io(&file, e))?;
        let mut content = Zeroizing::new(String::from(EDIT_BANNER));
        content.push_str(&old.to_yaml(true));
        f.write_all(content.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&file, e))?;
    }
    run_editor(editor, &file)?;
    let edited = fsio::read_input(Some(&file))?;
    let meaningful = edited
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    if !meaningful {
        return Err(Error::Editor {
            reason: "the file was emptied; nothing was changed".into(),
        });
    }
    let new = Secret::parse(&edited, "the edited Secret").map_err(|e| Error::Editor {
        reason: format!("{e}; nothing was changed, run `hush edit` again"),
    })?;
    drop(edited);
    drop(dir);
    if new == old {
        return Ok(Outcome::Unchanged);
    }
    let mut labels = new.meta.labels.clone();
    labels.remove(LABEL);
    labels.insert(
        LABEL.to_owned(),
        hush_sealed_format::format::LABEL_VALUE.to_owned(),
    );
    let resealed = opened.reseal_changed(&old, &new, &labels)?;
    let mut resealed = resealed;
    resealed.annotations = cm.annotations.clone();
    fsio::write_atomic(path, resealed.to_yaml_checked()?.as_bytes(), fsio::PUBLIC)?;
    let changed = new
        .values
        .iter()
        .filter(|(k, v)| old.values.get(*k).is_some_and(|o| o != *v))
        .count();
    let added = new
        .values
        .keys()
        .filter(|k| !old.values.contains_key(*k))
        .count();
    let removed = old
        .values
        .keys()
        .filter(|k| !new.values.contains_key(*k))
        .count();
    Ok(Outcome::Resealed {
        changed,
        added,
        removed,
    })
}
