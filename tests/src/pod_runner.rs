//! The pod runner: runs one container of a pod stored in the real kube-apiserver as a local
//! process, exactly as its spec says, because there is no kubelet here. It
//! - mints each projected service-account token with TokenRequest (the spec's audience and
//!   `expirationSeconds`, bound to the pod like the kubelet does),
//! - fills ConfigMap and Secret volumes (and projections) from the apiserver,
//! - makes `emptyDir`s temp dirs, `medium: Memory` ones real tmpfs mounts with the `sizeLimit`,
//! - resolves env: plain values, `fieldRef`, `secretKeyRef`, `configMapKeyRef`, `envFrom`, and
//!   `$(VAR)` in command and args,
//! - bind-mounts each volume at the spec's real path in a private mount namespace
//!   (`unshare -m --propagation private`), `readOnly` mounts as read-only remounts, and the root
//!   filesystem read-only when `readOnlyRootFilesystem` is set; the mount points it has to create
//!   on the host (`mkdir` is not namespaced) are removed when the last runner finishes,
//! - drops to the spec's `runAsUser`/`runAsGroup` (plus `fsGroup` and `supplementalGroups`) with no
//!   capabilities and `no_new_privs` (`setpriv`), then execs the command, mapping an image binary
//!   such as `hush-sidecar` to the locally built one.
//!
//! So a root-only shortcut fails here as it would in a real pod. If the machine refuses mount
//! namespaces (or `HUSH_POD_RUNNER_REMAP=1` is set), the runner falls back to path remapping: the
//! volumes are placed under a temp root at their spec paths and `HUSH_ROOT` is set for the
//! sidecar, which then resolves its `/hush/...` paths there; read-only mounts are then not
//! enforced. [`RunningContainer::sandbox`] says which one ran.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, Pod, PodSpec, Secret, ServiceAccount, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::env::unique_name;

/// How the container's filesystem view was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sandbox {
    /// A private mount namespace with bind mounts at the spec's paths.
    Namespace,
    /// No namespaces: volumes under a temp root, `HUSH_ROOT` set (read-only not enforced).
    Remapped,
}

/// What to run and how to find its binary.
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    /// The container's name (app or init container).
    pub container: String,
    /// Maps a command's program (as written in the spec, e.g. `hush-sidecar`) to a local binary.
    pub binaries: BTreeMap<String, PathBuf>,
    /// Extra env set after the spec's env (test-only knobs such as `HUSH_METRICS_ADDR`).
    pub extra_env: BTreeMap<String, String>,
    /// Overrides the spec's args (e.g. to run `check-config` with the same spec); `None` keeps them.
    pub args_override: Option<Vec<String>>,
    /// Overrides the spec's command; `None` keeps it.
    pub command_override: Option<Vec<String>>,
    /// Volumes already set up by another container of the same pod (volume name -> host dir,
    /// from [`RunningContainer::volumes`]): used as they are, as the kubelet shares a pod's
    /// volumes between its containers.
    pub shared_volumes: BTreeMap<String, PathBuf>,
}

/// One volume mount as set up for the process.
#[derive(Clone, Debug)]
pub struct MountInfo {
    pub volume: String,
    pub container_path: String,
    pub host_path: PathBuf,
    pub read_only: bool,
}

/// A running container.
#[derive(Debug)]
pub struct RunningContainer {
    pub child: Child,
    /// Temp directory holding every volume and the log.
    pub root: PathBuf,
    /// Volume name -> host directory.
    pub volumes: BTreeMap<String, PathBuf>,
    pub mounts: Vec<MountInfo>,
    pub sandbox: Sandbox,
    /// stdout and stderr of the process.
    pub log: PathBuf,
    /// The env the process got (for assertions; tests only ever use non-secret config here).
    pub env: BTreeMap<String, String>,
    tmpfs: Vec<PathBuf>,
    exit: Option<ExitStatus>,
    /// Shared lock on [`MountPoints`] while the container may use host mount points.
    mount_points: Option<MountPoints>,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    panic!("pod runner: {msg}")
}

/// Whether `unshare -m` works here (probed once).
pub fn namespaces_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        if std::env::var("HUSH_POD_RUNNER_REMAP").is_ok_and(|v| v == "1") {
            return false;
        }
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Parses the `sizeLimit` quantities the injector writes into bytes for tmpfs `size=`.
fn quantity_bytes(q: &str) -> Option<u64> {
    let idx = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (n, suffix) = q.split_at(idx);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match suffix {
        "" => 1,
        "k" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .unwrap_or_else(|e| fail(format!("mkdir {}: {e}", parent.display())));
    }
    fs::write(path, bytes).unwrap_or_else(|e| fail(format!("write {}: {e}", path.display())));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| fail(format!("chmod {}: {e}", path.display())));
}

/// Checks an `items[].path` like the apiserver does (relative, no `..`).
fn safe_rel(p: &str) -> &str {
    if p.starts_with('/') || p.split('/').any(|s| s == "..") {
        fail(format!("unsafe item path {p:?}"));
    }
    p
}

/// Writes a key/value map as files, honouring `items` (key -> path, mode) like the kubelet.
fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    what: &str,
) {
    match items {
        Some(items) => {
            for it in items {
                let v = data
                    .get(&it.key)
                    .unwrap_or_else(|| fail(format!("{what} has no key {:?}", it.key)));
                let mode = it.mode.map_or(default_mode, |m| m as u32);
                write_file(&dir.join(safe_rel(&it.path)), v, mode);
            }
        }
        None => {
            for (k, v) in data {
                write_file(&dir.join(safe_rel(k)), v, default_mode);
            }
        }
    }
}

struct Ctx<'a> {
    client: &'a Client,
    pod: &'a Pod,
    ns: String,
    spec: &'a PodSpec,
}

impl Ctx<'_> {
    async fn configmap(&self, name: &str, optional: bool) -> Option<BTreeMap<String, Vec<u8>>> {
        match Api::<ConfigMap>::namespaced(self.client.clone(), &self.ns)
            .get_opt(name)
            .await
        {
            Ok(Some(cm)) => {
                let mut out: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                for (k, v) in cm.binary_data.unwrap_or_default() {
                    out.insert(k, v.0);
                }
                Some(out)
            }
            Ok(None) if optional => None,
            // The controller-manager publishes this one in every namespace; none runs here, so
            // stand in for it with the apiserver's CA, which is what it would contain.
            Ok(None) if name == "kube-root-ca.crt" => Some(BTreeMap::from([(
                "ca.crt".to_string(),
                crate::env::TestEnv::load().kube_ca_pem().into_bytes(),
            )])),
            Ok(None) => fail(format!(
                "ConfigMap {}/{name} does not exist (the kubelet would keep the pod in ContainerCreating)",
                self.ns
            )),
            Err(e) => fail(format!("get ConfigMap {}/{name}: {e}", self.ns)),
        }
    }

    async fn secret(&self, name: &str, optional: bool) -> Option<BTreeMap<String, Vec<u8>>> {
        match Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .get_opt(name)
            .await
        {
            Ok(Some(s)) => {
                let mut out: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    out.insert(k, v.into_bytes());
                }
                Some(out)
            }
            Ok(None) if optional => None,
            Ok(None) => fail(format!(
                "Secret {}/{name} does not exist (the kubelet would keep the pod in ContainerCreating)",
                self.ns
            )),
            Err(e) => fail(format!("get Secret {}/{name}: {e}", self.ns)),
        }
    }

    async fn token(&self, audience: Option<&str>, seconds: Option<i64>) -> String {
        let sa = self
            .spec
            .service_account_name
            .as_deref()
            .unwrap_or("default");
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(seconds.unwrap_or(3600)),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: self.pod.metadata.name.clone(),
                    uid: self.pod.metadata.uid.clone(),
                }),
            },
            ..TokenRequest::default()
        };
        let out = Api::<ServiceAccount>::namespaced(self.client.clone(), &self.ns)
            .create_token_request(sa, &PostParams::default(), &req)
            .await
            .unwrap_or_else(|e| fail(format!("TokenRequest for {}/{sa}: {e}", self.ns)));
        out.status
            .map(|s| s.token)
            .unwrap_or_else(|| fail("TokenRequest returned no token"))
    }

    /// Fills a volume's host directory; returns whether it should be a tmpfs (and its size).
    async fn fill(&self, v: &Volume, dir: &Path, owner: (u32, u32)) -> Option<u64> {
        if let Some(ed) = &v.empty_dir {
            // The kubelet makes emptyDirs world-writable (0777); fsGroup adds setgid ownership.
            let mode = if self.fs_group().is_some() {
                0o2777
            } else {
                0o777
            };
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| fail(format!("chmod {}: {e}", dir.display())));
            if ed.medium.as_deref() == Some("Memory") {
                let size = ed
                    .size_limit
                    .as_ref()
                    .and_then(|q| quantity_bytes(&q.0))
                    .unwrap_or(64 << 20);
                return Some(size);
            }
            return None;
        }
        if let Some(cm) = &v.config_map {
            let mode = cm.default_mode.map_or(0o644, |m| m as u32);
            if let Some(data) = self.configmap(&cm.name, cm.optional == Some(true)).await {
                write_keys(
                    dir,
                    &data,
                    cm.items.as_ref(),
                    mode,
                    &format!("ConfigMap {}", cm.name),
                );
            }
            return None;
        }
        if let Some(s) = &v.secret {
            let name = s
                .secret_name
                .clone()
                .unwrap_or_else(|| fail("secret volume without secretName"));
            let mode = s.default_mode.map_or(0o644, |m| m as u32);
            if let Some(data) = self.secret(&name, s.optional == Some(true)).await {
                write_keys(
                    dir,
                    &data,
                    s.items.as_ref(),
                    mode,
                    &format!("Secret {name}"),
                );
            }
            return None;
        }
        if let Some(p) = &v.projected {
            let mode = p.default_mode.map_or(0o644, |m| m as u32);
            for src in p.sources.iter().flatten() {
                if let Some(t) = &src.service_account_token {
                    let token = self
                        .token(t.audience.as_deref(), t.expiration_seconds)
                        .await;
                    // The kubelet gives the token to the pod's user when it can (0600), as here.
                    let path = dir.join(safe_rel(&t.path));
                    write_file(&path, token.as_bytes(), 0o600);
                    chown(&path, Some(owner.0), Some(owner.1))
                        .unwrap_or_else(|e| fail(format!("chown {}: {e}", path.display())));
                } else if let Some(cm) = &src.config_map {
                    if let Some(data) = self.configmap(&cm.name, cm.optional == Some(true)).await {
                        write_keys(
                            dir,
                            &data,
                            cm.items.as_ref(),
                            mode,
                            &format!("ConfigMap {}", cm.name),
                        );
                    }
                } else if let Some(s) = &src.secret {
                    if let Some(data) = self.secret(&s.name, s.optional == Some(true)).await {
                        write_keys(
                            dir,
                            &data,
                            s.items.as_ref(),
                            mode,
                            &format!("Secret {}", s.name),
                        );
                    }
                } else if let Some(d) = &src.downward_api {
                    for item in d.items.iter().flatten() {
                        let Some(f) = &item.field_ref else {
                            fail(format!(
                                "downwardAPI resourceFieldRef in volume {} is not supported",
                                v.name
                            ));
                        };
                        let mode = item.mode.map_or(mode, |m| m as u32);
                        write_file(
                            &dir.join(safe_rel(&item.path)),
                            self.field(&f.field_path).as_bytes(),
                            mode,
                        );
                    }
                } else {
                    fail(format!(
                        "projected source kind of volume {} is not supported",
                        v.name
                    ));
                }
            }
            return None;
        }
        fail(format!(
            "volume {} has a type the pod runner does not support (emptyDir, configMap, secret, projected)",
            v.name
        ))
    }

    fn fs_group(&self) -> Option<i64> {
        self.spec.security_context.as_ref().and_then(|s| s.fs_group)
    }

    fn field(&self, path: &str) -> String {
        let meta = &self.pod.metadata;
        let sel = |map: &Option<BTreeMap<String, String>>, prefix: &str| -> Option<String> {
            let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
            map.as_ref()?.get(key).cloned()
        };
        match path {
            "metadata.name" => meta.name.clone().unwrap_or_default(),
            "metadata.namespace" => self.ns.clone(),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            "spec.serviceAccountName" => self.spec.service_account_name.clone().unwrap_or_default(),
            "spec.nodeName" => self
                .spec
                .node_name
                .clone()
                .unwrap_or_else(|| "pod-runner".into()),
            "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
            "status.podIPs" | "status.hostIPs" => "127.0.0.1".into(),
            p if p.starts_with("metadata.labels['") => {
                sel(&meta.labels, "metadata.labels['").unwrap_or_default()
            }
            p if p.starts_with("metadata.annotations['") => {
                sel(&meta.annotations, "metadata.annotations['").unwrap_or_default()
            }
            other => fail(format!("fieldRef {other} is not supported")),
        }
    }

    async fn env(&self, c: &Container) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert(
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        );
        out.insert(
            "HOSTNAME".to_string(),
            self.pod.metadata.name.clone().unwrap_or_default(),
        );
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            let data = if let Some(cm) = &from.config_map_ref {
                self.configmap(&cm.name, cm.optional == Some(true)).await
            } else if let Some(s) = &from.secret_ref {
                self.secret(&s.name, s.optional == Some(true)).await
            } else {
                None
            };
            for (k, v) in data.unwrap_or_default() {
                out.insert(
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v).into_owned(),
                );
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                expand(v, &out)
            } else if let Some(src) = &e.value_from {
                if let Some(f) = &src.field_ref {
                    self.field(&f.field_path)
                } else if let Some(k) = &src.secret_key_ref {
                    let data = self
                        .secret(&k.name, k.optional == Some(true))
                        .await
                        .unwrap_or_default();
                    match data.get(&k.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if k.optional == Some(true) => continue,
                        None => fail(format!("Secret {} has no key {}", k.name, k.key)),
                    }
                } else if let Some(k) = &src.config_map_key_ref {
                    let data = self
                        .configmap(&k.name, k.optional == Some(true))
                        .await
                        .unwrap_or_default();
                    match data.get(&k.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if k.optional == Some(true) => continue,
                        None => fail(format!("ConfigMap {} has no key {}", k.name, k.key)),
                    }
                } else {
                    fail(format!("env {} uses an unsupported valueFrom", e.name))
                }
            } else {
                String::new()
            };
            out.insert(e.name.clone(), value);
        }
        out
    }
}

/// Kubernetes' `$(VAR)` expansion (`$$` escapes); unknown references stay as written.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The mount points a private mount namespace needs on the host's root filesystem (`/hush/...`,
/// `/var/run/secrets/...`): `mkdir` is not namespaced, so the runner creates the missing ones
/// itself, records them in a list next to a lock file, and removes them (when empty) once no
/// runner in any process uses them any more. Every running container holds a shared `flock` on
/// the lock file from before it creates anything; the cleanup runs only under an exclusive one
/// taken without waiting, because removing a directory that is a mount point in another runner's
/// namespace would detach that runner's mount. Creating and recording is serialised by a second,
/// briefly held lock, so no runner ever waits for a lock while holding one another waits for.
struct MountPoints {
    _lock: fs::File,
}

impl std::fmt::Debug for MountPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MountPoints")
    }
}

/// Where the runner's lock files and list live: the system's lock directory (a tmpfs cleared at
/// boot), so they are not temp files left behind; the temp dir where there is none. The lock files
/// are never removed: unlinking a lock file while another process has it open splits the lock.
fn mount_points_dir() -> PathBuf {
    let run_lock = Path::new("/run/lock");
    if run_lock.is_dir() {
        run_lock.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn mount_points_lock_path() -> PathBuf {
    mount_points_dir().join("hush-pod-runner.lock")
}

fn mount_points_list_path() -> PathBuf {
    mount_points_dir().join("hush-pod-runner.created")
}

fn open_lock(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| fail(format!("open {}: {e}", path.display())))
}

impl MountPoints {
    /// Creates the missing directories of `targets` on the host and records them; returns the
    /// shared lock the container holds until it is dropped.
    fn prepare(targets: &[&str]) -> MountPoints {
        use rustix::fs::{FlockOperation, flock};
        let lock = open_lock(&mount_points_lock_path());
        flock(&lock, FlockOperation::LockShared)
            .unwrap_or_else(|e| fail(format!("lock the mount points: {e}")));
        let create = open_lock(&mount_points_dir().join("hush-pod-runner.create-lock"));
        flock(&create, FlockOperation::LockExclusive)
            .unwrap_or_else(|e| fail(format!("lock the mount-point list: {e}")));
        let mut created = Vec::new();
        for target in targets {
            let mut missing = Vec::new();
            let mut p = Path::new(target);
            while !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err() {
                missing.push(p.to_path_buf());
                p = p.parent().unwrap_or(Path::new(""));
            }
            for dir in missing.into_iter().rev() {
                match fs::create_dir(&dir) {
                    Ok(()) => created.push(dir),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => fail(format!("mkdir {}: {e}", dir.display())),
                }
            }
        }
        if !created.is_empty() {
            use std::io::Write as _;
            let mut list = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(mount_points_list_path())
                .unwrap_or_else(|e| fail(format!("open the mount-point list: {e}")));
            for dir in &created {
                writeln!(list, "{}", dir.display())
                    .unwrap_or_else(|e| fail(format!("record a mount point: {e}")));
            }
        }
        drop(create);
        MountPoints { _lock: lock }
    }

    /// Releases this container's lock and, if no other runner holds one, removes the recorded
    /// directories that are empty (deepest first). Best effort: nothing here fails a test.
    fn release(self) {
        use rustix::fs::{FlockOperation, flock};
        drop(self);
        let Ok(lock) = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(mount_points_lock_path())
        else {
            return;
        };
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            return; // Another container still runs; the last one cleans up.
        }
        let list = mount_points_list_path();
        let Ok(text) = fs::read_to_string(&list) else {
            return;
        };
        let unique: std::collections::BTreeSet<&str> =
            text.lines().filter(|l| l.starts_with('/')).collect();
        let mut dirs: Vec<&str> = unique.into_iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(Path::new(d).components().count()));
        let mut kept = Vec::new();
        for d in dirs {
            if fs::remove_dir(d).is_err() && Path::new(d).exists() {
                kept.push(d);
            }
        }
        let _ = if kept.is_empty() {
            fs::remove_file(&list)
        } else {
            fs::write(&list, kept.join("\n") + "\n")
        };
    }
}

/// Runs `spec.container` of `pod` (as read back from the apiserver) as a local process.
pub async fn run_container(client: &Client, pod: &Pod, spec: RunSpec) -> RunningContainer {
    let pod_spec = pod.spec.as_ref().unwrap_or_else(|| fail("pod has no spec"));
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| fail("pod has no namespace (read it back from the apiserver)"));
    let container = pod_spec
        .init_containers
        .iter()
        .flatten()
        .chain(pod_spec.containers.iter())
        .find(|c| c.name == spec.container)
        .unwrap_or_else(|| fail(format!("pod has no container {:?}", spec.container)));
    let ctx = Ctx {
        client,
        pod,
        ns,
        spec: pod_spec,
    };

    // Identity: container securityContext over the pod's.
    let psc = pod_spec.security_context.as_ref();
    let csc = container.security_context.as_ref();
    let uid = csc
        .and_then(|s| s.run_as_user)
        .or_else(|| psc.and_then(|s| s.run_as_user))
        .unwrap_or_else(|| {
            fail(format!(
                "container {} has no runAsUser (the runner needs a numeric user)",
                container.name
            ))
        });
    let gid = csc
        .and_then(|s| s.run_as_group)
        .or_else(|| psc.and_then(|s| s.run_as_group))
        .unwrap_or(uid);
    if uid == 0 {
        fail("runAsUser 0: the runner never runs containers as root");
    }
    let mut groups: Vec<i64> = Vec::new();
    if let Some(g) = ctx.fs_group() {
        groups.push(g);
    }
    for g in psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
    {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let read_only_root = csc.and_then(|s| s.read_only_root_filesystem) == Some(true);
    let owner = (uid as u32, ctx.fs_group().unwrap_or(gid) as u32);

    let sandbox = if namespaces_available() {
        Sandbox::Namespace
    } else {
        Sandbox::Remapped
    };
    let root = std::env::temp_dir().join(unique_name("hush-pod"));
    fs::create_dir_all(&root).unwrap_or_else(|e| fail(format!("mkdir {}: {e}", root.display())));
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).ok();

    // Volumes this container mounts.
    let mut volumes = BTreeMap::new();
    let mut tmpfs = Vec::new();
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let v = pod_spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| fail(format!("mount of unknown volume {}", m.name)));
        let host: PathBuf = match volumes
            .get(&m.name)
            .or_else(|| spec.shared_volumes.get(&m.name))
        {
            Some(p) => {
                let p = PathBuf::clone(p);
                volumes.insert(m.name.clone(), p.clone());
                p
            }
            None => {
                let dir = match sandbox {
                    Sandbox::Namespace => root.join("volumes").join(&m.name),
                    Sandbox::Remapped => root.join("fs").join(m.mount_path.trim_start_matches('/')),
                };
                fs::create_dir_all(&dir)
                    .unwrap_or_else(|e| fail(format!("mkdir {}: {e}", dir.display())));
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).ok();
                if let Some(size) = ctx.fill(v, &dir, owner).await {
                    let mode = if ctx.fs_group().is_some() {
                        "2777"
                    } else {
                        "0777"
                    };
                    let mut opts = format!("size={size},mode={mode}");
                    if let Some(g) = ctx.fs_group() {
                        opts.push_str(&format!(",gid={g}"));
                    }
                    let ok = Command::new("mount")
                        .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
                        .arg(&dir)
                        .status()
                        .is_ok_and(|s| s.success());
                    if ok {
                        tmpfs.push(dir.clone());
                    }
                }
                volumes.insert(m.name.clone(), dir.clone());
                dir
            }
        };
        let host = match &m.sub_path {
            Some(sp) if !sp.is_empty() => host.join(safe_rel(sp)),
            _ => host,
        };
        mounts.push(MountInfo {
            volume: m.name.clone(),
            container_path: m.mount_path.clone(),
            host_path: host,
            read_only: m.read_only == Some(true),
        });
    }

    // Env, command and args.
    let mut env = ctx.env(container).await;
    if sandbox == Sandbox::Remapped {
        env.insert(
            hush_contract::env::ROOT.into(),
            root.join("fs").display().to_string(),
        );
    }
    for (k, v) in &spec.extra_env {
        env.insert(k.clone(), v.clone());
    }
    let command = spec
        .command_override
        .clone()
        .or_else(|| container.command.clone())
        .unwrap_or_else(|| {
            fail(format!(
                "container {} has no command (the image's entrypoint is unknown here)",
                container.name
            ))
        });
    let program = command
        .first()
        .cloned()
        .unwrap_or_else(|| fail("empty command"));
    let binary = spec
        .binaries
        .get(&program)
        .cloned()
        .or_else(|| {
            Path::new(&program)
                .is_absolute()
                .then(|| PathBuf::from(&program))
        })
        .unwrap_or_else(|| {
            fail(format!(
                "no local binary for {program:?}: pass it in RunSpec::binaries"
            ))
        });
    let mut argv: Vec<String> = vec![binary.display().to_string()];
    argv.extend(command.iter().skip(1).map(|a| expand(a, &env)));
    match &spec.args_override {
        Some(a) => argv.extend(a.iter().cloned()),
        None => argv.extend(container.args.iter().flatten().map(|a| expand(a, &env))),
    }

    let mut setpriv = vec![
        "setpriv".to_string(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
    ];
    if groups.is_empty() {
        setpriv.push("--clear-groups".into());
    } else {
        setpriv.push(format!(
            "--groups={}",
            groups
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    setpriv.extend(
        [
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
        .map(String::from),
    );
    let workdir = container.working_dir.clone().unwrap_or_else(|| "/".into());

    let mut script = String::from("set -e\n");
    if sandbox == Sandbox::Namespace {
        for m in &mounts {
            let target = sh_quote(&m.container_path);
            script.push_str(&format!(
                "mkdir -p {target}\nmount --bind {} {target}\n",
                sh_quote(&m.host_path.display().to_string())
            ));
            if m.read_only {
                script.push_str(&format!("mount -o remount,bind,ro {target}\n"));
            }
        }
        if read_only_root {
            script.push_str("mount -o remount,bind,ro /\n");
        }
    }
    script.push_str(&format!("cd {}\n", sh_quote(&workdir)));
    script.push_str("exec");
    for a in setpriv.iter().chain(argv.iter()) {
        script.push(' ');
        script.push_str(&sh_quote(a));
    }
    script.push('\n');

    let mount_points = (sandbox == Sandbox::Namespace).then(|| {
        let targets: Vec<&str> = mounts.iter().map(|m| m.container_path.as_str()).collect();
        MountPoints::prepare(&targets)
    });
    let log = root.join("container.log");
    let out = fs::File::create(&log).unwrap_or_else(|e| fail(format!("create log: {e}")));
    let err = out
        .try_clone()
        .unwrap_or_else(|e| fail(format!("dup log: {e}")));
    let mut cmd = match sandbox {
        Sandbox::Namespace => {
            let mut c = Command::new("unshare");
            c.args([
                "-m",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                &script,
            ]);
            c
        }
        Sandbox::Remapped => {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", &script]);
            c
        }
    };
    cmd.env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| fail(format!("spawn {program}: {e}")));
    RunningContainer {
        child,
        root,
        volumes,
        mounts,
        sandbox,
        log,
        env,
        tmpfs,
        exit: None,
        mount_points,
    }
}

impl RunningContainer {
    /// The host directory of a volume.
    pub fn volume_path(&self, name: &str) -> &Path {
        self.volumes
            .get(name)
            .unwrap_or_else(|| fail(format!("the container does not mount volume {name}")))
    }

    /// The host path of a path inside the container, through its mounts.
    pub fn host_path(&self, container_path: &str) -> Option<PathBuf> {
        self.mounts
            .iter()
            .filter_map(|m| {
                let rest = Path::new(container_path)
                    .strip_prefix(&m.container_path)
                    .ok()?;
                Some((m.container_path.len(), m.host_path.join(rest)))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, p)| p)
    }

    /// Whether the sidecar's files were mounted read-only there.
    pub fn is_read_only(&self, container_path: &str) -> Option<bool> {
        self.mounts
            .iter()
            .find(|m| m.container_path == container_path)
            .map(|m| m.read_only)
    }

    /// What the process printed so far.
    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exit {
            return Some(s);
        }
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.exit = Some(s);
                    return Some(s);
                }
                Ok(None) if start.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => return None,
                Err(e) => fail(format!("wait: {e}")),
            }
        }
    }

    /// Sends SIGTERM (as the kubelet does) and waits up to 30 s, then SIGKILL.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(s) = self.exit {
            return s;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if let Some(s) = self.wait_timeout(Duration::from_secs(30)) {
            return s;
        }
        let _ = self.child.kill();
        let s = self
            .child
            .wait()
            .unwrap_or_else(|e| fail(format!("wait: {e}")));
        self.exit = Some(s);
        s
    }
}

impl Drop for RunningContainer {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for dir in &self.tmpfs {
            let _ = Command::new("umount").arg(dir).status();
        }
        if let Some(m) = self.mount_points.take() {
            m.release();
        }
        if std::env::var("HUSH_KEEP_POD_ROOT").is_err() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_paren_expansion_follows_kubernetes() {
        let env = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &env), "x-$(B)-$(A)-$");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("16Mi"), Some(16 << 20));
        assert_eq!(quantity_bytes("1M"), Some(1_000_000));
        assert_eq!(quantity_bytes("lots"), None);
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
    }
}
