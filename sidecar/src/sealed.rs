//! The `sealed:<configmap>/<key>` source: a value that `hush seal` put in Git as an age ciphertext,
//! decrypted inside the pod, so the plaintext never reaches etcd. The injector mounts the sealed
//! ConfigMap at `SEALED_DIR/<configmap>/` and the namespace's `hush-identity` Secret at
//! `IDENTITY_FILE`, both into the sidecar container only. This provider reads the whole mounted set
//! (the MAC covers every key, so one value cannot be checked alone), reads the identity into a
//! zeroized buffer, and hands both to [`hush_sealed_format::open_value`], which checks the binding to this
//! pod's namespace and the referenced name, verifies the MAC and decrypts through age's streaming
//! decryptor into a pre-sized zeroized buffer.
//!
//! Volumes are read the way the kubelet writes them: `<key> -> ..data/<key>` links and a `..data`
//! link to a timestamped directory that is swapped atomically on update. The provider follows
//! exactly one link, `..data`, and only to a sibling directory whose name starts with `..`; it
//! opens every file with `O_NOFOLLOW` relative to that directory, so any other link (to
//! `/etc/shadow`, say) is refused, and it re-reads when `..data` moved while it read, so a
//! half-updated set is never decrypted. Sizes are capped at the 1 MiB ConfigMap limit.
//!
//! The cheap check is a SHA-256 over the mounted files ([`Version::Opaque`]): when the ConfigMap is
//! re-applied with new values, the kubelet updates the volume and the next refresh fetches again.
//! Binding, MAC and decryption failures are permanent and name the object and key, never a value.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use hush_sealed_format::format::{MAX_CONFIGMAP_BYTES, META_KEY};
use hush_sealed_format::keys::{IDENTITY_KEY, IDENTITY_SECRET};
use rustix::fs::{Dir, Mode, OFlags};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::provider::{Check, Fetched, LocalBoxFuture, Provider, Version};
use crate::runtime::Paths;
use crate::secret::{SecretBytes, SecretValue};
use hush_config::ErrorClass;
use hush_config::{SidecarConfig, SourceRef};
use hush_contract::paths;

const STORE: &str = "sealed";
/// The kubelet's link to the current timestamped directory of a ConfigMap or Secret volume.
const DATA_LINK: &str = "..data";
/// Most data keys we read from one ConfigMap (a sealed value is a few hundred bytes at least).
const MAX_ENTRIES: usize = 8192;
/// Largest identity file we read (an X25519 identity file is about 200 bytes).
const MAX_IDENTITY_BYTES: usize = 16 * 1024;
/// How often to re-read a volume whose `..data` moved while we read it.
const SNAPSHOT_ATTEMPTS: usize = 3;

/// Decrypts `sealed:` references with the namespace's identity.
#[derive(Debug)]
pub(crate) struct SealedProvider {
    namespace: String,
    sealed_dir: PathBuf,
    identity_file: PathBuf,
}

/// One consistent read of a mounted sealed ConfigMap.
struct Mounted {
    data: BTreeMap<String, String>,
    digest: String,
}

impl SealedProvider {
    /// The provider for a pod: its namespace from the config, the mount paths from `paths` (which
    /// tests re-root with `HUSH_ROOT`).
    pub(crate) fn new(cfg: &SidecarConfig, paths: &Paths) -> Result<SealedProvider> {
        Ok(SealedProvider::with_paths(
            &cfg.namespace,
            fixed_path(paths, paths::SEALED_DIR),
            fixed_path(paths, paths::IDENTITY_FILE),
        ))
    }

    /// A provider reading ConfigMaps under `sealed_dir` and the identity from `identity_file`.
    pub(crate) fn with_paths(namespace: &str, sealed_dir: PathBuf, identity_file: PathBuf) -> Self {
        SealedProvider {
            namespace: namespace.to_owned(),
            sealed_dir,
            identity_file,
        }
    }

    fn configmap_dir(&self, configmap: &str) -> PathBuf {
        self.sealed_dir.join(configmap)
    }

    /// Reads the mounted ConfigMap `configmap` (every key, for the MAC) and its digest.
    fn read_configmap(&self, configmap: &str) -> Result<Mounted> {
        let dir = self.configmap_dir(configmap);
        let object = format!("sealed ConfigMap {}/{configmap}", self.namespace);
        let data = read_volume(&dir).map_err(|e| match e.kind() {
            ErrorKind::NotFound => permanent(format!(
                "{object} is not mounted at {}: the injector mounts every ConfigMap that a \
                 `sealed:` annotation names, so recreate the pod from its annotated template",
                dir.display()
            )),
            _ => volume_error(&object, &dir, e),
        })?;
        let digest = digest(&data);
        Ok(Mounted { data, digest })
    }

    /// Reads the namespace's identity file into a zeroized buffer.
    fn identity_file(&self) -> Result<Zeroizing<Vec<u8>>> {
        let path = &self.identity_file;
        let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
            (Some(d), Some(n)) => (d, n),
            _ => {
                return Err(Error::Config {
                    field: "identity file".into(),
                    reason: format!("{} is not a file path", path.display()),
                });
            }
        };
        read_volume_file_zeroized(dir, name).map_err(|e| match e.kind() {
            ErrorKind::NotFound => permanent(format!(
                "{} is not mounted at {}: create it with `hush keygen --namespace {ns} | \
                 kubectl apply -f -` (then seal for its public key), and recreate the pod",
                self.identity_what(),
                path.display(),
                ns = self.namespace
            )),
            _ => volume_error(&self.identity_what(), path, e),
        })
    }

    fn identity_what(&self) -> String {
        format!(
            "the age identity (Secret {IDENTITY_SECRET}, key {IDENTITY_KEY}, in namespace {})",
            self.namespace
        )
    }

    /// Reads, checks and decrypts one sealed value.
    fn open(&self, configmap: &str, key: &str) -> Result<Fetched> {
        let object = format!("sealed ConfigMap {}/{configmap}", self.namespace);
        let at = |detail: String| format!("{configmap}/{key}: {detail}");
        if key == META_KEY {
            return Err(permanent(at(format!(
                "`{META_KEY}` holds hush's metadata, not a value; reference one of the data keys"
            ))));
        }
        let mounted = self.read_configmap(configmap)?;
        if !mounted.data.contains_key(META_KEY) {
            return Err(permanent(at(format!(
                "{object} has no `{META_KEY}` key, so it is not a sealed ConfigMap; apply the \
                 output of `hush seal`"
            ))));
        }
        if !mounted.data.contains_key(key) {
            let available: Vec<&str> = mounted
                .data
                .keys()
                .filter(|k| *k != META_KEY)
                .map(String::as_str)
                .collect();
            return Err(permanent(at(format!(
                "{object} has no key `{key}` (it has: {}); fix the `sealed:` reference, or seal \
                 a Secret with that key and apply it",
                available.join(", ")
            ))));
        }
        let bytes = self.identity_file()?;
        let unusable = |reason: String| {
            permanent(format!(
                "{}: {reason}; recreate it with `hush keygen --namespace {}`",
                self.identity_what(),
                self.namespace
            ))
        };
        let text =
            std::str::from_utf8(&bytes).map_err(|_| unusable("it is not UTF-8 text".into()))?;
        let identity =
            hush_sealed_format::parse_identity(text).map_err(|e| unusable(e.to_string()))?;
        let value = hush_sealed_format::open_value(
            &mounted.data,
            &self.namespace,
            configmap,
            key,
            &identity,
        )
        .map_err(|e| sealer_error(e, configmap, key, &self.namespace))?;
        tracing::debug!(
            configmap,
            key,
            bytes = value.len(),
            "sealed value decrypted"
        );
        Ok(Fetched {
            value: SecretValue::Single(SecretBytes::new(value)),
            version: Version::Opaque(mounted.digest),
        })
    }

    fn check_all(&self, held: &[(&SourceRef, &Version)]) -> Vec<Result<Check>> {
        let mut digests: BTreeMap<&str, Result<String>> = BTreeMap::new();
        held.iter()
            .map(|(source, version)| {
                let SourceRef::Sealed { configmap, .. } = source else {
                    return Err(not_sealed(source));
                };
                let current = digests
                    .entry(configmap.as_str())
                    .or_insert_with(|| self.read_configmap(configmap).map(|m| m.digest));
                match (current, version) {
                    (Ok(d), Version::Opaque(held)) if d == held => Ok(Check::Unchanged),
                    (Ok(_), _) => Ok(Check::Changed),
                    (Err(e), _) => Err(same_error(e)),
                }
            })
            .collect()
    }
}

impl Provider for SealedProvider {
    fn fetch<'a>(&'a mut self, source: &'a SourceRef) -> LocalBoxFuture<'a, Result<Fetched>> {
        Box::pin(async move {
            match source {
                SourceRef::Sealed { configmap, key } => self.open(configmap, key),
                other => Err(not_sealed(other)),
            }
        })
    }

    fn check<'a>(
        &'a mut self,
        held: &'a [(&'a SourceRef, &'a Version)],
    ) -> LocalBoxFuture<'a, Vec<Result<Check>>> {
        Box::pin(async move { self.check_all(held) })
    }
}

/// `fixed` (an absolute `/hush/...` path) under the root that `paths` uses. [`Paths`] re-roots
/// its own paths for tests but has no accessor for these two, so the root is taken from one it has.
fn fixed_path(paths: &Paths, fixed: &str) -> PathBuf {
    let secrets = paths.secrets_dir();
    let depth = Path::new(paths::SECRETS_DIR).components().count() - 1;
    let root = secrets.ancestors().nth(depth).unwrap_or(Path::new("/"));
    root.join(fixed.trim_start_matches('/'))
}

/// A copy of a store error (one failed read answers every reference to that ConfigMap).
fn same_error(e: &Error) -> Error {
    e.copy_as_store(STORE)
}

fn permanent(reason: String) -> Error {
    Error::store(STORE, ErrorClass::Permanent, reason)
}

fn not_sealed(source: &SourceRef) -> Error {
    permanent(format!(
        "the sealed provider was given a {} reference",
        source.kind().as_str()
    ))
}

/// Sorts a volume read failure: a broken layout or a permission problem needs a person
/// (permanent); anything else may pass (transient).
fn volume_error(what: &str, path: &Path, e: io::Error) -> Error {
    let class = match e.kind() {
        ErrorKind::InvalidData | ErrorKind::PermissionDenied | ErrorKind::FileTooLarge => {
            ErrorClass::Permanent
        }
        _ => ErrorClass::Transient,
    };
    Error::store(
        STORE,
        class,
        format!("reading {what} at {}: {e}", path.display()),
    )
}

/// Maps a `hush_sealed_format` error into a store error naming the reference. Its messages name the
/// object and key, never a value; only the decryption hint is rewritten for a pod.
fn sealer_error(
    e: hush_sealed_format::Error,
    configmap: &str,
    key: &str,
    namespace: &str,
) -> Error {
    let class = if e.is_permanent() {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    };
    let detail = match e {
        hush_sealed_format::Error::Decrypt { object, what } => format!(
            "cannot decrypt {what} of {object} with the namespace's identity (Secret \
             {IDENTITY_SECRET} in {namespace}): it was not sealed to that identity's public key, \
             or the ciphertext is damaged. Re-seal it for the public key in the \
             hush.dev/recipient annotation of that Secret (`hush verify` lists a file's recipients)"
        ),
        other => other.to_string(),
    };
    Error::store(STORE, class, format!("{configmap}/{key}: {detail}"))
}

/// SHA-256 over the (key, value) pairs, length-prefixed, as lowercase hex.
fn digest(data: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg)
}

/// A volume directory opened for reading: the directory itself, and the directory its files are
/// read from (the `..data` target in the kubelet's layout, else the directory itself).
struct Snapshot {
    top: OwnedFd,
    files: OwnedFd,
    target: Option<CString>,
}

fn open_dir(dirfd: impl std::os::fd::AsFd, path: impl rustix::path::Arg) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dirfd,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The target of `..data`, if the link exists. It must be a sibling entry named `..<something>`.
fn data_target(top: &OwnedFd) -> io::Result<Option<CString>> {
    let target = match rustix::fs::readlinkat(top, DATA_LINK, Vec::new()) {
        Ok(t) => t,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::INVAL) => {
            return Err(invalid(format!("{DATA_LINK} is not a symbolic link")));
        }
        Err(e) => return Err(e.into()),
    };
    let bytes = target.as_bytes();
    let ok = bytes.starts_with(b"..")
        && bytes.len() > 2
        && bytes.len() <= 255
        && !bytes.contains(&b'/')
        && bytes != DATA_LINK.as_bytes();
    if !ok {
        return Err(invalid(format!(
            "{DATA_LINK} points outside the volume (only a sibling `..<timestamp>` directory is \
             followed)"
        )));
    }
    Ok(Some(target))
}

impl Snapshot {
    fn open(dir: &Path) -> io::Result<Snapshot> {
        let top = open_dir(rustix::fs::CWD, dir)?;
        let target = data_target(&top)?;
        let files = match &target {
            Some(t) => open_dir(&top, t.as_c_str()).map_err(|e| match e.kind() {
                // The kubelet swapped `..data` and removed the old directory: read again.
                ErrorKind::NotFound => io::Error::new(ErrorKind::Interrupted, "..data moved"),
                _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                    invalid(format!("{DATA_LINK} points at another link"))
                }
                _ => e,
            })?,
            None => top.try_clone()?,
        };
        Ok(Snapshot { top, files, target })
    }

    /// Whether `..data` still points where it did when the snapshot was opened.
    fn unchanged(&self) -> io::Result<bool> {
        Ok(data_target(&self.top)? == self.target)
    }

    /// Opens one regular file of the snapshot without following links.
    fn open_file(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.files,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP => invalid(format!(
                "`{name}` is a symbolic link outside the kubelet's {DATA_LINK} layout"
            )),
            other => other.into(),
        })?;
        let file = File::from(fd);
        if !file.metadata()?.file_type().is_file() {
            return Err(invalid(format!("`{name}` is not a regular file")));
        }
        Ok(file)
    }

    /// The data keys: every entry but `.`, `..` and the kubelet's own `..*` entries.
    fn names(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in Dir::read_from(&self.files)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name.starts_with(b"..") || name == b"." {
                continue;
            }
            let name = std::str::from_utf8(name)
                .map_err(|_| invalid("a file name is not UTF-8".into()))?;
            if out.len() == MAX_ENTRIES {
                return Err(io::Error::new(
                    ErrorKind::FileTooLarge,
                    format!("more than {MAX_ENTRIES} keys"),
                ));
            }
            out.push(name.to_owned());
        }
        Ok(out)
    }
}

/// Reads `f` to its end, at most `limit` bytes in total (`used` already spent).
fn read_capped(mut f: File, name: &str, used: &mut usize) -> io::Result<Vec<u8>> {
    let left = MAX_CONFIGMAP_BYTES.saturating_sub(*used);
    let mut buf = Vec::new();
    (&mut f).take(left as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > left {
        return Err(io::Error::new(
            ErrorKind::FileTooLarge,
            format!(
                "the files are over {MAX_CONFIGMAP_BYTES} bytes (the ConfigMap limit) at `{name}`"
            ),
        ));
    }
    *used += buf.len();
    Ok(buf)
}

/// Runs `read` on one snapshot of the volume at `dir`, and again if the kubelet swapped `..data`
/// meanwhile, so the result always comes from a single version of the volume.
fn with_snapshot<T>(dir: &Path, mut read: impl FnMut(&Snapshot) -> io::Result<T>) -> io::Result<T> {
    for _ in 0..SNAPSHOT_ATTEMPTS {
        let snap = match Snapshot::open(dir) {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        match read(&snap) {
            Ok(v) if snap.unchanged()? => return Ok(v),
            Ok(_) => {}
            // A file of the old version was removed under us.
            Err(e)
                if e.kind() == ErrorKind::NotFound
                    && snap.target.is_some()
                    && !snap.unchanged()? => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        ErrorKind::Interrupted,
        "the volume kept changing while it was read",
    ))
}

/// Reads every file of a ConfigMap volume as one consistent set.
fn read_volume(dir: &Path) -> io::Result<BTreeMap<String, String>> {
    with_snapshot(dir, |snap| {
        let mut data = BTreeMap::new();
        let mut used = 0;
        for name in snap.names()? {
            let bytes = read_capped(snap.open_file(&name)?, &name, &mut used)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| invalid(format!("`{name}` is not UTF-8 text")))?;
            data.insert(name, text);
        }
        Ok(data)
    })
}

/// Reads one file of a Secret volume into a zeroized buffer sized up front.
fn read_volume_file_zeroized(dir: &Path, name: &str) -> io::Result<Zeroizing<Vec<u8>>> {
    with_snapshot(dir, |snap| {
        let mut f = snap.open_file(name)?;
        let mut buf = Zeroizing::new(vec![0u8; MAX_IDENTITY_BYTES]);
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                return Err(io::Error::new(
                    ErrorKind::FileTooLarge,
                    format!("`{name}` is over {MAX_IDENTITY_BYTES} bytes"),
                ));
            }
            match f.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    })
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const NS: &str = "team-a";

    struct Fixture {
        _tmp: tempfile::TempDir,
        provider: SealedProvider,
        sealed: PathBuf,
        recipient: String,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let generated = hush_sealed_format::keys::generate();
            let id_dir = tmp.path().join("identity");
            std::fs::create_dir_all(&id_dir).unwrap();
            std::fs::write(id_dir.join("identity"), generated.identity_file.as_bytes()).unwrap();
            let sealed = tmp.path().join("sealed");
            std::fs::create_dir_all(&sealed).unwrap();
            let provider = SealedProvider::with_paths(NS, sealed.clone(), id_dir.join("identity"));
            Fixture {
                _tmp: tmp,
                provider,
                sealed,
                recipient: generated.recipient,
            }
        }

        /// Seals a Secret `name` for this fixture's identity and returns its data.
        fn seal(&self, name: &str, values: &[(&str, &[u8])]) -> BTreeMap<String, String> {
            let secret = hush_sealed_format::Secret {
                name: name.into(),
                namespace: Some(NS.into()),
                meta: hush_sealed_format::format::SecretMeta {
                    type_: "Opaque".into(),
                    ..Default::default()
                },
                values: values
                    .iter()
                    .map(|(k, v)| {
                        let value =
                            hush_sealed_format::SecretValue::new(Zeroizing::new(v.to_vec()));
                        ((*k).to_owned(), value)
                    })
                    .collect(),
            };
            let recipient = self.recipient.clone();
            hush_sealed_format::seal(&secret, NS, hush_sealed_format::Scope::Strict, &[recipient])
                .unwrap()
                .data
        }

        /// Mounts `data` as plain files (as the pod runner does).
        fn mount_plain(&self, cm: &str, data: &BTreeMap<String, String>) {
            let dir = self.sealed.join(cm);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (k, v) in data {
                std::fs::write(dir.join(k), v).unwrap();
            }
        }

        /// Mounts `data` as the kubelet does: `..<ts>/`, `..data -> ..<ts>`, `<k> -> ..data/<k>`,
        /// swapping `..data` atomically when called again.
        fn mount_kubelet(&self, cm: &str, data: &BTreeMap<String, String>, ts: &str) {
            let dir = self.sealed.join(cm);
            std::fs::create_dir_all(dir.join(ts)).unwrap();
            for (k, v) in data {
                std::fs::write(dir.join(ts).join(k), v).unwrap();
            }
            symlink(ts, dir.join("..data_tmp")).unwrap();
            std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
            for k in data.keys() {
                let _ = std::fs::remove_file(dir.join(k));
                symlink(format!("..data/{k}"), dir.join(k)).unwrap();
            }
        }

        fn fetch(&mut self, cm: &str, key: &str) -> Result<Fetched> {
            let source = SourceRef::Sealed {
                configmap: cm.into(),
                key: key.into(),
            };
            futures_lite_block_on(self.provider.fetch(&source))
        }

        fn check(&mut self, cm: &str, version: &Version) -> Check {
            let source = SourceRef::Sealed {
                configmap: cm.into(),
                key: "password".into(),
            };
            let held = [(&source, version)];
            let mut out = futures_lite_block_on(self.provider.check(&held));
            out.remove(0).unwrap()
        }
    }

    fn futures_lite_block_on<T>(f: LocalBoxFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn single(f: &Fetched) -> &[u8] {
        match &f.value {
            SecretValue::Single(b) => b.expose(),
            other => panic!("{other:?}"),
        }
    }

    const BINARY: &[u8] = &[0, 1, 2, 0xff, 0xfe, b'\n', 0x80];

    #[test]
    fn decrypts_plain_and_kubelet_layouts_byte_for_byte_and_checks_cheaply() {
        let mut fx = Fixture::new();
        let data = fx.seal("db", &[("password", b"canary-pw-1"), ("cert", BINARY)]);
        fx.mount_plain("db", &data);
        let f = fx.fetch("db", "password").unwrap();
        assert_eq!(single(&f), b"canary-pw-1");
        assert_eq!(single(&fx.fetch("db", "cert").unwrap()), BINARY);
        let Version::Opaque(d) = &f.version else {
            panic!("{:?}", f.version)
        };
        assert_eq!(d.len(), 64);
        assert_eq!(fx.check("db", &f.version), Check::Unchanged);

        // The kubelet's layout of the same data reads the same; a re-applied ConfigMap with a
        // new value is seen by the cheap check and fetched.
        let _ = std::fs::remove_dir_all(fx.sealed.join("db"));
        fx.mount_kubelet("db", &data, "..2025_01_01_00_00_00.1");
        let again = fx.fetch("db", "password").unwrap();
        assert_eq!(single(&again), b"canary-pw-1");
        assert_eq!(fx.check("db", &f.version), Check::Unchanged);
        let newer = fx.seal("db", &[("password", b"canary-pw-2"), ("cert", BINARY)]);
        fx.mount_kubelet("db", &newer, "..2025_01_01_00_00_01.2");
        assert_eq!(fx.check("db", &f.version), Check::Changed);
        assert_eq!(single(&fx.fetch("db", "password").unwrap()), b"canary-pw-2");
    }

    #[test]
    fn moved_values_and_foreign_objects_fail_permanently_naming_object_and_key() {
        let mut fx = Fixture::new();
        let mut data = fx.seal("db", &[("password", b"canary-pw-3"), ("user", b"canary-u")]);
        let (p, u) = (data["password"].clone(), data["user"].clone());
        data.insert("password".into(), u);
        data.insert("user".into(), p);
        fx.mount_plain("db", &data);
        let e = fx.fetch("db", "password").unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.class(), ErrorClass::Permanent, "{msg}");
        assert!(
            msg.contains("db/password") && msg.contains(&format!("{NS}/db")),
            "{msg}"
        );
        assert!(!msg.contains("canary"), "{msg}");

        // A ConfigMap sealed for another name, applied under this one: a binding error.
        let other = fx.seal("other", &[("password", b"canary-pw-4")]);
        fx.mount_plain("db", &other);
        let msg = fx.fetch("db", "password").unwrap_err().to_string();
        assert!(
            msg.contains("not bound") && msg.contains("db/password") && !msg.contains("canary"),
            "{msg}"
        );
    }

    #[test]
    fn missing_pieces_are_permanent_and_say_how_to_fix_them() {
        let mut fx = Fixture::new();
        let e = fx.fetch("absent", "password").unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("is not mounted"), "{e}");

        let data = fx.seal("db", &[("password", b"canary-pw-5")]);
        fx.mount_plain("db", &data);
        let msg = fx.fetch("db", "passwd").unwrap_err().to_string();
        assert!(
            msg.contains("no key `passwd`") && msg.contains("it has: password"),
            "{msg}"
        );

        std::fs::remove_file(&fx.provider.identity_file).unwrap();
        let e = fx.fetch("db", "password").unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(
            msg.contains("hush-identity") && msg.contains(&format!("hush keygen --namespace {NS}")),
            "{msg}"
        );

        // An identity the value was not sealed to: coarse, permanent, no value.
        std::fs::write(
            &fx.provider.identity_file,
            hush_sealed_format::keys::generate()
                .identity_file
                .as_bytes(),
        )
        .unwrap();
        let e = fx.fetch("db", "password").unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("cannot decrypt"), "{e}");
    }

    #[test]
    fn links_other_than_the_kubelet_layout_are_refused() {
        let mut fx = Fixture::new();
        let data = fx.seal("db", &[("password", b"canary-pw-6")]);
        fx.mount_plain("db", &data);
        let dir = fx.sealed.join("db");
        std::fs::remove_file(dir.join("password")).unwrap();
        let outside = fx._tmp.path().join("outside");
        std::fs::write(&outside, &data["password"]).unwrap();
        symlink(&outside, dir.join("password")).unwrap();
        let e = fx.fetch("db", "password").unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("symbolic link"), "{e}");

        // `..data` may only point at a sibling `..<timestamp>` directory.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let elsewhere = fx._tmp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        for (k, v) in &data {
            std::fs::write(elsewhere.join(k), v).unwrap();
        }
        symlink(&elsewhere, dir.join("..data")).unwrap();
        let e = fx.fetch("db", "password").unwrap_err();
        assert!(e.to_string().contains("outside the volume"), "{e}");
    }

    #[test]
    fn a_kubelet_update_during_a_read_is_read_again_from_the_new_version() {
        let fx = Fixture::new();
        let v1 = fx.seal("db", &[("password", b"canary-pw-7")]);
        let v2 = fx.seal("db", &[("password", b"canary-pw-8")]);
        let dir = fx.sealed.join("db");
        fx.mount_kubelet("db", &v1, "..ts1");
        for remove_old in [false, true] {
            let mut calls = 0;
            let read = with_snapshot(&dir, |snap| {
                calls += 1;
                if calls == 1 {
                    fx.mount_kubelet("db", &v2, "..ts2");
                    if remove_old {
                        std::fs::remove_dir_all(dir.join("..ts1")).unwrap();
                    }
                }
                let mut s = String::new();
                snap.open_file("password")?.read_to_string(&mut s)?;
                Ok(s)
            })
            .unwrap();
            assert_eq!(calls, 2);
            assert_eq!(read, v2["password"]);
            // Back to v1 for the next round.
            std::fs::remove_dir_all(&dir).unwrap();
            fx.mount_kubelet("db", &v1, "..ts1");
        }
    }

    #[test]
    fn fixed_paths_follow_the_test_root() {
        let p = Paths::from_env(&BTreeMap::from([(
            crate::runtime::ROOT_ENV.to_string(),
            "/tmp/r".to_string(),
        )]));
        assert_eq!(
            fixed_path(&p, paths::SEALED_DIR),
            PathBuf::from("/tmp/r/hush/sealed")
        );
        assert_eq!(
            fixed_path(&Paths::default(), paths::IDENTITY_FILE),
            PathBuf::from(paths::IDENTITY_FILE)
        );
    }
}
