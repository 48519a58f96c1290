//! The pure mutation: a Pod plus the operator's configuration in, a JSON patch (or a denial) out,
//! with no IO. The annotations go through the sidecar's one parser (`hush_config`), the result is
//! merged with the operator's settings and handed to the sidecar as versioned JSON in
//! `HUSH_CONFIG`, and the patch inserts the native sidecar at `/spec/initContainers/0` together
//! with its volumes. Every name the sidecar reads back (container, volumes, paths, env vars,
//! subcommands, token audiences) comes from `hush_contract`, never a literal here. Every JSON
//! pointer is built from tokens (so `/` in an annotation key becomes `~1`), parent lists are added
//! only when absent. A pod that already carries our container (a reinvocation) gets only the
//! mounts of containers added since, so a second admission of an unchanged pod changes nothing.
//! With `hush.dev/env`, each chosen container's `command` gets the launcher inserted before it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use hush_config::{Mode, OnChange, SidecarConfig, VaultAuth};
use hush_contract::{
    ANNOTATION_PREFIX, AWS_SESSION_NAME, IDENTITY_KEY, IDENTITY_SECRET, METRICS_PORT_NAME,
    SIDECAR_BINARY, STATUS, STATUS_INJECTED, STS_AUDIENCE, VAULT_AUDIENCE, env as vars, launch,
    paths, subcommand, volumes,
};
use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, KeyToPath, Pod, ProjectedVolumeSource,
    SecretVolumeSource, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::InjectorConfig;
use crate::pod::{ContainerView, SpecView};

/// Name of the injected container (the contract's, re-exported for the tests).
pub use hush_contract::SIDECAR_CONTAINER as SIDECAR_NAME;
pub(crate) use hush_contract::volumes::RESERVED_PREFIX as RESERVED_VOLUME_PREFIX;

/// Why a pod was refused; a fixed, bounded set used as the metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenialReason {
    /// An annotation is unknown or has a bad value (the parser's problems).
    Annotations,
    /// The pod already uses a container or volume name the injector reserves.
    ReservedName,
    /// `hush.dev/containers` names a container the pod does not have.
    UnknownContainer,
    /// A chosen container already mounts something at the mount path.
    MountPathInUse,
    /// Signal notification needs a known, non-root `runAsUser` on the target.
    SignalTarget,
    /// The pod cannot be injected as given (no spec).
    InvalidPod,
    /// The pod carries a `hush-sidecar` container that Hush would not inject for it now.
    SidecarMismatch,
    /// The sidecar's environment would exceed what Linux lets one process start with.
    ConfigTooLarge,
    /// `hush.dev/env` chose a container with no `command`, or one that sets a variable itself.
    EnvTarget,
}

impl DenialReason {
    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DenialReason::Annotations => "annotations",
            DenialReason::ReservedName => "reserved_name",
            DenialReason::UnknownContainer => "unknown_container",
            DenialReason::MountPathInUse => "mount_path_in_use",
            DenialReason::SignalTarget => "signal_target",
            DenialReason::InvalidPod => "invalid_pod",
            DenialReason::SidecarMismatch => "sidecar_mismatch",
            DenialReason::ConfigTooLarge => "config_too_large",
            DenialReason::EnvTarget => "env_target",
        }
    }
}

/// A refusal with a message meant for the person running `kubectl apply`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenialReason,
    pub message: String,
}

impl Denial {
    fn new(reason: DenialReason, message: impl Into<String>) -> Denial {
        Denial {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hush: {}", self.message)
    }
}

fn ptr<'t>(tokens: impl IntoIterator<Item: Into<Token<'t>>>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

/// The value of one `add`. The k8s-openapi objects stay typed until the patch is written, so they
/// are serialised once, straight into the answer's bytes; the sidecar container is JSON already
/// ([`sidecar_json`]). Fields come out in the same order as through a `serde_json::Value` (sorted
/// by name, as k8s-openapi writes them), so the bytes are those of [`Ops::into_patch`]
/// (`tests/golden.rs` compares the two for every case).
#[derive(Serialize)]
#[serde(untagged)]
enum Val {
    Json(Value),
    Volume(Box<Volume>),
    Mount(VolumeMount),
    /// JSON bytes, written as they are ([`Ops::write`] never hands this variant to serde).
    #[serde(skip_serializing)]
    Raw(Vec<u8>),
}

/// One JSON Patch `add`.
struct Add {
    path: PointerBuf,
    value: Val,
}

/// The operations of a patch, in order.
#[derive(Default)]
pub(crate) struct Ops(Vec<Add>);

impl Ops {
    fn add(&mut self, path: PointerBuf, value: Val) {
        self.0.push(Add { path, value });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends the patch as JSON to `out`: each operation in the field order of json_patch's
    /// `PatchOperation::Add` (`op`, `path`, `value`).
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.push(b'[');
        for (i, op) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"op":"add","path":"#);
            push_str(out, op.path.as_str());
            out.extend_from_slice(br#","value":"#);
            match &op.value {
                Val::Raw(bytes) => out.extend_from_slice(bytes),
                typed => serde_json::to_writer(&mut *out, typed)?,
            }
            out.push(b'}');
        }
        out.push(b']');
        Ok(())
    }

    /// The same operations as a `json_patch::Patch` (what [`mutate()`] returns).
    fn into_patch(self) -> Patch {
        Patch(
            self.0
                .into_iter()
                .map(|op| {
                    // k8s-openapi types serialise to JSON objects and `Raw` is JSON we wrote; a
                    // failure would be a bug in one of them.
                    let value = match op.value {
                        Val::Raw(bytes) => serde_json::from_slice(&bytes),
                        typed => serde_json::to_value(&typed),
                    };
                    PatchOperation::Add(AddOperation {
                        path: op.path,
                        value: value.unwrap_or(Value::Null),
                    })
                })
                .collect(),
        )
    }
}

/// The sidecar we injected, if the pod already carries it (not just a status annotation, which a
/// user may set): an init container of our name with the config env, and its index for messages.
fn injected_sidecar<'s, 'a>(spec: &'s SpecView<'a>) -> Option<(usize, &'s ContainerView<'a>)> {
    spec.init_containers
        .iter()
        .flatten()
        .enumerate()
        .find(|(_, c)| {
            c.name == SIDECAR_NAME && c.env.iter().flatten().any(|e| e.name == vars::CONFIG)
        })
}

/// Linux refuses to start a process with any one `NAME=value` environment string (NUL included)
/// longer than 32 pages (`MAX_ARG_STRLEN`, 128 KiB), with E2BIG: a pod admitted with a larger
/// `HUSH_CONFIG` would be stored and scheduled, and then its sidecar could never start. So the
/// size is checked here, where the user still sees the message in `kubectl apply`.
pub const MAX_ENV_STRING_BYTES: usize = 128 * 1024;

fn check_env_size(config_json: &str) -> Result<(), Denial> {
    let size = vars::CONFIG.len() + 1 + config_json.len() + 1;
    if size <= MAX_ENV_STRING_BYTES {
        return Ok(());
    }
    Err(Denial::new(
        DenialReason::ConfigTooLarge,
        format!(
            "the sidecar's configuration (its {} env var) would be {size} bytes, over the {MAX_ENV_STRING_BYTES} bytes Linux allows for one environment string, so the sidecar could never start; use fewer or smaller hush.dev/template-* annotations, or fewer files",
            vars::CONFIG
        ),
    ))
}

/// Fails when a chosen container already mounts something at the secrets path.
fn check_mount_path_free(spec: &SpecView<'_>, t: Target, mount_path: &str) -> Result<(), Denial> {
    let c = container(spec, t);
    if c.volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path.trim_end_matches('/') == mount_path.trim_end_matches('/'))
    {
        let (field, i) = field_of(t);
        return Err(Denial::new(
            DenialReason::MountPathInUse,
            format!(
                "spec.{field}[{i}] (\"{}\") already mounts a volume at {mount_path}; choose another path with hush.dev/mount-path",
                c.name
            ),
        ));
    }
    Ok(())
}

/// Adds the read-only secrets mount to one chosen container (and its `volumeMounts` list when it
/// has none).
fn add_app_mount(ops: &mut Ops, spec: &SpecView<'_>, t: Target, app_mount: &VolumeMount) {
    let (field, i) = field_of(t);
    let list = || {
        PointerBuf::from_tokens([
            Token::new("spec"),
            Token::new(field),
            Token::from(i),
            Token::new("volumeMounts"),
        ])
    };
    if container(spec, t).volume_mounts.is_none() {
        ops.add(list(), Val::Json(json!([])));
    }
    let mut item = list();
    item.push_back(Token::new("-"));
    ops.add(item, Val::Mount(app_mount.clone()));
}

/// `hush.dev/env`: a chosen container must have a `command` (the injector never looks up an
/// image's entrypoint: admission makes no calls) and must not set one of the variables itself.
fn check_env_target(spec: &SpecView<'_>, t: Target, sc: &SidecarConfig) -> Result<(), Denial> {
    let c = container(spec, t);
    let (field, i) = field_of(t);
    if !c.has_command {
        return Err(Denial::new(
            DenialReason::EnvTarget,
            format!(
                "annotation \"hush.dev/env\": spec.{field}[{i}] (\"{}\") has no command, and Hush never looks up an image's entrypoint; set the container's command (and args) to what the image runs, or leave this container out with hush.dev/containers",
                c.name
            ),
        ));
    }
    if let Some(e) = c
        .env
        .iter()
        .flatten()
        .find(|e| sc.env.iter().any(|h| h.name == e.name))
    {
        return Err(Denial::new(
            DenialReason::EnvTarget,
            format!(
                "annotation \"hush.dev/env\": spec.{field}[{i}] (\"{}\") already sets {} in its env; remove it there or from hush.dev/env",
                c.name, e.name
            ),
        ));
    }
    Ok(())
}

/// Makes a chosen container start through the launcher: `<mount>/.hush-launch <mount> --` is
/// inserted before its command, whose entries and `args` stay as they were.
fn add_launcher(ops: &mut Ops, t: Target, mount_path: &str) {
    let (field, i) = field_of(t);
    let dir = mount_path.trim_end_matches('/');
    let words = [
        format!("{dir}/{}", launch::FILE),
        dir.to_string(),
        launch::SEPARATOR.to_string(),
    ];
    for (n, w) in words.into_iter().enumerate() {
        ops.add(
            PointerBuf::from_tokens([
                Token::new("spec"),
                Token::new(field),
                Token::from(i),
                Token::new("command"),
                Token::from(n),
            ]),
            Val::Json(json!(w)),
        );
    }
}

/// A later admission of a pod we already injected: with `reinvocationPolicy: IfNeeded` the
/// apiserver calls the webhook again after other webhooks ran, and a container one of them added
/// must get the secrets mount too. Nothing else changes. The sidecar already there must be the one
/// Hush would inject now (its `HUSH_CONFIG` equal to what these annotations give), or a pod could
/// bring its own `hush-sidecar` with a config that bypasses the operator's rules (allowed roles,
/// stores, bounds).
///
/// A container added since gets the mount but never the `hush.dev/env` launcher: Hush rewrites
/// only the commands the pod's author wrote and saw admitted (docs/env.md).
fn reinvocation(
    spec: &SpecView<'_>,
    existing: (usize, &ContainerView<'_>),
    sc: &SidecarConfig,
    config_json: &str,
) -> Result<Ops, Denial> {
    let (index, sidecar) = existing;
    let config = sidecar
        .env
        .iter()
        .flatten()
        .find(|e| e.name == vars::CONFIG)
        .and_then(|e| e.value.as_deref());
    if config != Some(config_json) {
        return Err(Denial::new(
            DenialReason::SidecarMismatch,
            format!(
                "spec.initContainers[{index}] (\"{SIDECAR_NAME}\") is not the sidecar Hush injects for this pod's annotations (its {} differs); remove that container from the manifest and let Hush inject it",
                vars::CONFIG
            ),
        ));
    }
    let app_mount = mount(volumes::SECRETS, &sc.mount_path, true);
    let mut ops = Ops::default();
    for t in choose_targets(spec, sc.containers.as_deref())? {
        let c = container(spec, t);
        if c.name == SIDECAR_NAME
            || c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == volumes::SECRETS)
        {
            continue;
        }
        check_mount_path_free(spec, t, &sc.mount_path)?;
        add_app_mount(&mut ops, spec, t, &app_mount);
    }
    Ok(ops)
}

fn has_hush_annotations(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .keys()
        .any(|k| k.starts_with(ANNOTATION_PREFIX) && k != STATUS)
}

fn check_reserved(spec: &SpecView<'_>) -> Result<(), Denial> {
    let with_mounts = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| ("containers", i, c.name.as_ref(), c.volume_mounts.as_deref()))
        .chain(
            spec.init_containers
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, c)| {
                    (
                        "initContainers",
                        i,
                        c.name.as_ref(),
                        c.volume_mounts.as_deref(),
                    )
                }),
        );
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| ("ephemeralContainers", i, c.name.as_ref(), None));
    for (field, i, name, mounts) in with_mounts.chain(ephemeral) {
        if name == SIDECAR_NAME {
            return Err(Denial::new(
                DenialReason::ReservedName,
                format!(
                    "spec.{field}[{i}].name: \"{SIDECAR_NAME}\" is reserved for the container Hush injects; rename that container"
                ),
            ));
        }
        // A container of the pod's own that mounts a volume Hush is about to add would get it on
        // its own terms (read-write, another path): it could replace the secret files or the env
        // launcher that the other containers read. Hush alone mounts its volumes, read-only for
        // apps.
        for (j, m) in mounts.into_iter().flatten().enumerate() {
            if m.name.starts_with(RESERVED_VOLUME_PREFIX) {
                return Err(Denial::new(
                    DenialReason::ReservedName,
                    format!(
                        "spec.{field}[{i}].volumeMounts[{j}]: mounts \"{}\", a volume Hush injects; remove that mount: Hush mounts the secrets read-only into the containers hush.dev/containers chooses, at hush.dev/mount-path",
                        m.name
                    ),
                ));
            }
        }
    }
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if v.name.starts_with(RESERVED_VOLUME_PREFIX) {
            return Err(Denial::new(
                DenialReason::ReservedName,
                format!(
                    "spec.volumes[{i}].name: \"{}\" uses the prefix \"{RESERVED_VOLUME_PREFIX}\", which is reserved for the volumes Hush injects; rename that volume",
                    v.name
                ),
            ));
        }
    }
    Ok(())
}

/// A container of the pod that gets the secrets mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    App(usize),
    Init(usize),
}

fn choose_targets(spec: &SpecView<'_>, wanted: Option<&[String]>) -> Result<Vec<Target>, Denial> {
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let Some(wanted) = wanted else {
        let mut all: Vec<Target> = (0..spec.containers.len()).map(Target::App).collect();
        all.extend((0..inits.len()).map(Target::Init));
        return Ok(all);
    };
    let mut out = Vec::new();
    for name in wanted {
        let found = if let Some(i) = spec.containers.iter().position(|c| c.name == **name) {
            Some(Target::App(i))
        } else {
            inits
                .iter()
                .position(|c| c.name == **name)
                .map(Target::Init)
        };
        if let Some(t) = found {
            if !out.contains(&t) {
                out.push(t);
            }
        } else {
            let known: Vec<&str> = spec
                .containers
                .iter()
                .chain(inits.iter())
                .map(|c| c.name.as_ref())
                .collect();
            return Err(Denial::new(
                DenialReason::UnknownContainer,
                format!(
                    "annotation \"hush.dev/containers\": the pod has no container \"{name}\"; its containers are: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(out)
}

fn container<'s, 'a>(spec: &'s SpecView<'a>, t: Target) -> &'s ContainerView<'a> {
    match t {
        Target::App(i) => &spec.containers[i],
        Target::Init(i) => &spec.init_containers.as_deref().unwrap_or_default()[i],
    }
}

fn field_of(t: Target) -> (&'static str, usize) {
    match t {
        Target::App(i) => ("containers", i),
        Target::Init(i) => ("initContainers", i),
    }
}

/// The UID and GID the sidecar runs as: the operator's, or in signal mode the target's.
fn sidecar_ids(
    spec: &SpecView<'_>,
    targets: &[Target],
    sc: &SidecarConfig,
    cfg: &InjectorConfig,
) -> Result<(i64, i64), Denial> {
    let default = (cfg.sidecar.run_as_user, cfg.sidecar.run_as_group);
    if !matches!(sc.on_change, OnChange::Signal { .. }) {
        return Ok(default);
    }
    let pod_sc = spec.security_context.as_ref();
    let apps: Vec<Target> = targets
        .iter()
        .copied()
        .filter(|t| matches!(t, Target::App(_)))
        .collect();
    let considered = if apps.is_empty() {
        targets.to_vec()
    } else {
        apps
    };
    let mut ids: Option<(i64, Option<i64>)> = None;
    for t in considered {
        let c = container(spec, t);
        let csc = c.security_context.as_ref();
        let uid = csc
            .and_then(|s| s.run_as_user)
            .or_else(|| pod_sc.and_then(|s| s.run_as_user));
        let gid = csc
            .and_then(|s| s.run_as_group)
            .or_else(|| pod_sc.and_then(|s| s.run_as_group));
        let Some(uid) = uid.filter(|u| *u > 0) else {
            return Err(Denial::new(
                DenialReason::SignalTarget,
                format!(
                    "annotation \"hush.dev/on-change\": signal notification runs the sidecar as the target container's user, but container \"{}\" sets no non-root runAsUser (set securityContext.runAsUser on it or on the pod)",
                    c.name
                ),
            ));
        };
        match ids {
            None => ids = Some((uid, gid)),
            Some((u, _)) if u != uid => {
                return Err(Denial::new(
                    DenialReason::SignalTarget,
                    "annotation \"hush.dev/on-change\": the chosen containers run as different users; name the one to signal in hush.dev/containers",
                ));
            }
            Some(_) => {}
        }
    }
    Ok(ids.map_or(default, |(u, g)| (u, g.unwrap_or(default.1))))
}

fn dirname(file: &str) -> String {
    Path::new(file)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_string())
}

fn basename(file: &str) -> String {
    Path::new(file)
        .file_name()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn memory_dir(name: &str, size: &str) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity(size.to_string())),
        }),
        ..Volume::default()
    }
}

/// A projected ServiceAccount token for `audience` at `file`, and the sidecar's read-only mount of
/// its directory.
fn token_volume(name: &str, audience: &str, expiration: i64, file: &str) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: name.to_string(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(audience.to_string()),
                    expiration_seconds: Some(expiration),
                    path: basename(file),
                }),
                ..VolumeProjection::default()
            }]),
            default_mode: None,
        }),
        ..Volume::default()
    };
    (volume, mount(name, &dirname(file), true))
}

/// The volumes and the sidecar's mounts for one config.
fn volumes_and_mounts(sc: &SidecarConfig, cfg: &InjectorConfig) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = vec![
        memory_dir(volumes::SECRETS, &cfg.sidecar.secrets_size_limit),
        memory_dir(volumes::STATE, "1Mi"),
    ];
    let mut mounts = vec![
        mount(volumes::SECRETS, paths::SECRETS_DIR, false),
        mount(volumes::STATE, paths::STATE_DIR, false),
    ];
    if sc.has_vault() {
        match sc.auth {
            VaultAuth::Kubernetes => {
                let audience = sc
                    .operator
                    .vault
                    .as_ref()
                    .map_or(VAULT_AUDIENCE, |v| v.audience.as_str());
                let expiration = cfg.vault_token_expiration_seconds;
                let token = token_volume(volumes::TOKEN, audience, expiration, paths::TOKEN_FILE);
                volumes.push(token.0);
                mounts.push(token.1);
            }
            VaultAuth::AppRole | VaultAuth::Token => {}
        }
    }
    if let Some(secret) = &sc.credentials_secret {
        volumes.push(Volume {
            name: volumes::CREDENTIALS.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount(volumes::CREDENTIALS, paths::CREDENTIALS_DIR, true));
    }
    // The STS token only with a role to assume: without `hush.dev/aws-role-arn` the SDK's default
    // chain decides (EKS Pod Identity, or an IRSA env that EKS's own webhook adds), and a token
    // file without a role would make the sidecar refuse to start.
    if sc.has_aws() && sc.aws_role_arn.is_some() {
        let audience = sc
            .operator
            .aws
            .as_ref()
            .map_or(STS_AUDIENCE, |a| a.audience.as_str());
        let expiration = cfg.aws_token_expiration_seconds;
        let token = token_volume(
            volumes::AWS_TOKEN,
            audience,
            expiration,
            paths::AWS_TOKEN_FILE,
        );
        volumes.push(token.0);
        mounts.push(token.1);
    }
    if sc.has_sealed() {
        for (i, cm) in sc.sealed_configmaps().iter().enumerate() {
            let name = format!("{}{i}", volumes::SEALED_PREFIX);
            volumes.push(Volume {
                name: name.clone(),
                config_map: Some(ConfigMapVolumeSource {
                    name: cm.clone(),
                    optional: Some(false),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            });
            let path = Path::new(paths::SEALED_DIR).join(cm);
            mounts.push(mount(&name, &path.to_string_lossy(), true));
        }
        volumes.push(Volume {
            name: volumes::IDENTITY.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(IDENTITY_SECRET.to_string()),
                items: Some(vec![KeyToPath {
                    key: IDENTITY_KEY.to_string(),
                    path: basename(paths::IDENTITY_FILE),
                    mode: None,
                }]),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount(
            volumes::IDENTITY,
            &dirname(paths::IDENTITY_FILE),
            true,
        ));
    }
    (volumes, mounts)
}

/// Appends `s` as a JSON string literal, escaped by serde_json.
fn push_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s)
        .expect("a str always serialises, and writing into a Vec never fails");
}

/// A JSON object or array being written into the answer's bytes, for [`sidecar_json`]: `item`
/// starts the next element (after a comma), `key` the next field; every string goes through
/// [`push_str`].
struct Seq<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
    end: u8,
}

impl<'o> Seq<'o> {
    fn open(out: &'o mut Vec<u8>, start: u8, end: u8) -> Seq<'o> {
        out.push(start);
        Seq {
            out,
            first: true,
            end,
        }
    }

    fn object(out: &'o mut Vec<u8>) -> Seq<'o> {
        Seq::open(out, b'{', b'}')
    }

    fn array(out: &'o mut Vec<u8>) -> Seq<'o> {
        Seq::open(out, b'[', b']')
    }

    /// Returns the buffer for the next element, after a comma unless it is the first.
    fn item(&mut self) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out
    }

    /// Writes `"key":` and returns the buffer for the value.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        let out = self.item();
        push_str(out, key);
        out.push(b':');
        out
    }

    fn str(&mut self, key: &str, value: &str) {
        push_str(self.key(key), value);
    }

    fn raw(&mut self, key: &str, value: &str) {
        self.key(key).extend_from_slice(value.as_bytes());
    }

    fn strs(&mut self, key: &str, values: &[&str]) {
        let mut list = Seq::array(self.key(key));
        for v in values {
            push_str(list.item(), v);
        }
        list.close();
    }

    fn close(self) {
        self.out.push(self.end);
    }
}

/// One `EnvVar` with a value.
fn write_env_value(out: &mut Vec<u8>, name: &str, value: &str) {
    let mut e = Seq::object(out);
    e.str("name", name);
    e.str("value", value);
    e.close();
}

/// One `EnvVar` from the downward API: `{"name":..,"valueFrom":{"fieldRef":{..}}}`.
fn write_env_field(out: &mut Vec<u8>, name: &str, path: &str) {
    let mut e = Seq::object(out);
    e.str("name", name);
    let mut from = Seq::object(e.key("valueFrom"));
    let mut field = Seq::object(from.key("fieldRef"));
    field.str("apiVersion", "v1");
    field.str("fieldPath", path);
    field.close();
    from.close();
    e.close();
}

/// `"key":{"name":"quantity",...}` of a resources map; nothing when it is empty (k8s-openapi
/// leaves an empty map out).
fn write_quantities(o: &mut Seq<'_>, key: &str, map: &BTreeMap<String, String>) {
    if map.is_empty() {
        return;
    }
    let mut q = Seq::object(o.key(key));
    for (k, v) in map {
        q.str(k, v);
    }
    q.close();
}

/// The injected container's JSON, written field by field in the order k8s-openapi writes a
/// `Container` (sorted by name): building the typed `Container` and serialising it through serde
/// was a tenth of an admission. `tests/golden.rs` checks the bytes against the committed patches,
/// and [`Ops::into_patch`] parses them back into a typed value for [`mutate()`]'s callers.
fn sidecar_json(
    sc: &SidecarConfig,
    config_json: &str,
    cfg: &InjectorConfig,
    ids: (i64, i64),
    mounts: &[VolumeMount],
) -> Vec<u8> {
    let native = sc.mode == Mode::Sidecar;
    let mut values: Vec<(&str, &str)> = Vec::new();
    if sc.has_aws() {
        if let Some(arn) = &sc.aws_role_arn {
            values.push((vars::AWS_WEB_IDENTITY_TOKEN_FILE, paths::AWS_TOKEN_FILE));
            values.push((vars::AWS_ROLE_ARN, arn));
            values.push((vars::AWS_ROLE_SESSION_NAME, AWS_SESSION_NAME));
        }
        if let Some(aws) = &sc.operator.aws {
            values.push((vars::AWS_REGION, &aws.region));
            if let Some(ep) = &aws.endpoint {
                values.push((vars::AWS_ENDPOINT_URL, ep));
            }
        }
    }
    let fetch_secs = i32::try_from(sc.operator.fetch_deadline.as_secs()).unwrap_or(3600);
    let mut out = Vec::with_capacity(2 * config_json.len() + 2048);
    let mut c = Seq::object(&mut out);
    c.strs(
        "args",
        &[if native {
            subcommand::RUN
        } else {
            subcommand::ONCE
        }],
    );
    c.strs("command", &[SIDECAR_BINARY]);
    let mut env = Seq::array(c.key("env"));
    write_env_value(env.item(), vars::CONFIG, config_json);
    for (name, path) in [
        (vars::POD_NAME, "metadata.name"),
        (vars::POD_NAMESPACE, "metadata.namespace"),
        (vars::SERVICE_ACCOUNT, "spec.serviceAccountName"),
        (vars::NODE_NAME, "spec.nodeName"),
    ] {
        write_env_field(env.item(), name, path);
    }
    for (name, value) in values {
        write_env_value(env.item(), name, value);
    }
    env.close();
    c.str("image", &cfg.sidecar.image);
    c.str("imagePullPolicy", &cfg.sidecar.image_pull_policy);
    c.str("name", SIDECAR_NAME);
    if native {
        let mut ports = Seq::array(c.key("ports"));
        let mut port = Seq::object(ports.item());
        port.raw("containerPort", &sc.operator.metrics_port.to_string());
        port.str("name", METRICS_PORT_NAME);
        port.str("protocol", "TCP");
        port.close();
        ports.close();
    }
    let mut res = Seq::object(c.key("resources"));
    write_quantities(&mut res, "limits", &cfg.sidecar.resources.limits);
    write_quantities(&mut res, "requests", &cfg.sidecar.resources.requests);
    res.close();
    if native {
        c.str("restartPolicy", "Always");
    }
    c.raw(
        "securityContext",
        &format!(
            r#"{{"allowPrivilegeEscalation":false,"capabilities":{{"drop":["ALL"]}},"privileged":false,"readOnlyRootFilesystem":true,"runAsGroup":{},"runAsNonRoot":true,"runAsUser":{},"seccompProfile":{{"type":"RuntimeDefault"}}}}"#,
            ids.1, ids.0
        ),
    );
    if native {
        let mut probe = Seq::object(c.key("startupProbe"));
        let mut exec = Seq::object(probe.key("exec"));
        exec.strs("command", &[SIDECAR_BINARY, subcommand::PROBE]);
        exec.close();
        probe.raw(
            "failureThreshold",
            &fetch_secs.saturating_add(30).to_string(),
        );
        probe.raw("periodSeconds", "1");
        probe.raw("timeoutSeconds", "1");
        probe.close();
    }
    c.str("terminationMessagePolicy", "FallbackToLogsOnError");
    let mut list = Seq::array(c.key("volumeMounts"));
    for m in mounts {
        // The sidecar's mounts come from `mount()`: a name, a path and read-only. A field added
        // there must be written here too; the debug builds (every test) check it.
        debug_assert!(
            m.mount_propagation.is_none()
                && m.recursive_read_only.is_none()
                && m.sub_path.is_none()
                && m.sub_path_expr.is_none(),
            "sidecar_json writes only name, mountPath and readOnly of a mount"
        );
        let mut o = Seq::object(list.item());
        o.str("mountPath", &m.mount_path);
        o.str("name", &m.name);
        if let Some(ro) = m.read_only {
            o.raw("readOnly", if ro { "true" } else { "false" });
        }
        o.close();
    }
    list.close();
    c.close();
    out
}

fn denial_from_parser(e: hush_config::Error) -> Denial {
    Denial::new(DenialReason::Annotations, e.to_string())
}

/// Computes the patch for one pod: empty when the pod does not opt in; for a pod already injected,
/// only the mounts of containers added since ([`reinvocation`]).
pub fn mutate(pod: &Pod, cfg: &InjectorConfig, namespace: &str) -> Result<Patch, Denial> {
    let spec = pod.spec.as_ref().map(SpecView::of);
    let ops = mutate_view(
        pod.metadata.annotations.as_ref(),
        spec.as_ref(),
        cfg,
        namespace,
    )?;
    Ok(ops.into_patch())
}

/// [`mutate()`] on the parts of a pod it reads: its annotations (only the `hush.dev/` ones
/// matter) and its spec.
pub(crate) fn mutate_view(
    annotations: Option<&BTreeMap<String, String>>,
    spec: Option<&SpecView<'_>>,
    cfg: &InjectorConfig,
    namespace: &str,
) -> Result<Ops, Denial> {
    let empty = BTreeMap::new();
    let annotations = annotations.unwrap_or(&empty);
    if !has_hush_annotations(annotations) {
        return Ok(Ops::default());
    }
    let Some(spec) = spec else {
        return Err(Denial::new(DenialReason::InvalidPod, "the pod has no spec"));
    };
    let pod_fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
    let set_fs_group = pod_fs_group.is_none() && cfg.pod_security.allow_fs_group;
    let mut settings = cfg.operator.clone();
    settings.allowed_roles = cfg.allowed_roles_for(namespace);
    settings.fs_group = if set_fs_group {
        Some(cfg.pod_security.fs_group)
    } else {
        pod_fs_group
    };
    let Some(sc) = hush_config::annotations::check(annotations, namespace, &settings)
        .map_err(denial_from_parser)?
    else {
        return Ok(Ops::default());
    };
    let config_json = sc.to_json();
    if let Some(existing) = injected_sidecar(spec) {
        return reinvocation(spec, existing, &sc, &config_json);
    }
    check_reserved(spec)?;
    check_env_size(&config_json)?;
    let targets = choose_targets(spec, sc.containers.as_deref())?;
    for &t in &targets {
        check_mount_path_free(spec, t, &sc.mount_path)?;
        if !sc.env.is_empty() {
            check_env_target(spec, t, &sc)?;
        }
    }
    let ids = sidecar_ids(spec, &targets, &sc, cfg)?;
    let (volumes, sidecar_mounts) = volumes_and_mounts(&sc, cfg);
    let sidecar = sidecar_json(&sc, &config_json, cfg, ids, &sidecar_mounts);

    let mut ops = Ops::default();
    ops.add(
        ptr(["metadata", "annotations", STATUS]),
        Val::Json(json!(STATUS_INJECTED)),
    );
    if set_fs_group {
        if spec.security_context.is_none() {
            ops.add(
                ptr(["spec", "securityContext"]),
                Val::Json(json!({ "fsGroup": cfg.pod_security.fs_group })),
            );
        } else {
            ops.add(
                ptr(["spec", "securityContext", "fsGroup"]),
                Val::Json(json!(cfg.pod_security.fs_group)),
            );
        }
    }
    if matches!(sc.on_change, OnChange::Signal { .. }) && spec.share_process_namespace != Some(true)
    {
        ops.add(
            ptr(["spec", "shareProcessNamespace"]),
            Val::Json(json!(true)),
        );
    }
    if spec.volumes.is_none() {
        ops.add(ptr(["spec", "volumes"]), Val::Json(json!([])));
    }
    for v in volumes {
        ops.add(ptr(["spec", "volumes", "-"]), Val::Volume(Box::new(v)));
    }
    let app_mount = mount(volumes::SECRETS, &sc.mount_path, true);
    for &t in &targets {
        add_app_mount(&mut ops, spec, t, &app_mount);
        if !sc.env.is_empty() {
            add_launcher(&mut ops, t, &sc.mount_path);
        }
    }
    // Last, so the user's init container indexes above are still their own.
    if spec.init_containers.is_none() {
        ops.add(ptr(["spec", "initContainers"]), Val::Json(json!([])));
    }
    ops.add(
        PointerBuf::from_tokens([
            Token::new("spec"),
            Token::new("initContainers"),
            Token::from(0usize),
        ]),
        Val::Raw(sidecar),
    );
    Ok(ops)
}
