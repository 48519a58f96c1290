//! The one schema of Hush: [`SidecarConfig`], the typed and validated description of what one pod
//! needs, and [`OperatorSettings`], the operator's part of it. The injector builds a
//! `SidecarConfig` from pod annotations ([`SidecarConfig::from_annotations`]) and hands it to the
//! sidecar as versioned JSON in `HUSH_CONFIG` ([`SidecarConfig::to_json`]); the sidecar reads it back
//! with [`SidecarConfig::from_json`], which refuses unknown fields and other major versions and
//! re-validates everything, so a hand-edited pod spec gets the same checks as an annotation. The
//! config holds references only, never a secret.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::source::{SourceKind, SourceRef};
use hush_contract::names::{
    check_dns1123_label, check_dns1123_subdomain, check_env_name, check_file_name, short,
};

/// Major version of the `HUSH_CONFIG` JSON. The sidecar refuses any other.
pub const CONFIG_VERSION: u32 = 1;
/// The opt-in annotation.
pub(crate) const INJECT: &str = "hush.dev/inject";
/// Name of the env var that carries the config into the sidecar container.
pub const CONFIG_ENV: &str = hush_contract::env::CONFIG;
pub(crate) use hush_contract::{ANNOTATION_PREFIX, paths};

/// Bounds that hold whatever the operator sets.
pub mod limits {
    use std::time::Duration;
    /// Shortest refresh interval an operator may allow.
    pub const MIN_REFRESH: Duration = Duration::from_secs(5);
    /// Longest refresh interval an operator may allow (7 days).
    pub const MAX_REFRESH: Duration = Duration::from_secs(7 * 24 * 3600);
    /// Largest file the operator may allow (the tmpfs is small on purpose).
    pub const MAX_FILE_BYTES: u64 = 64 << 20;
    /// Most files per pod.
    pub const MAX_FILES: usize = 64;
    /// Largest template source.
    pub const MAX_TEMPLATE_BYTES: usize = 32 << 10;
    /// Longest fetch deadline.
    pub const MAX_FETCH_DEADLINE: Duration = Duration::from_secs(3600);
    /// Lowest metrics port (the sidecar runs without privileges).
    pub const MIN_METRICS_PORT: u16 = 1024;
}

/// Vault/OpenBao settings chosen by the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultSettings {
    /// `https://` address of the server.
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(HTTPS_URL_PATTERN), length(max = 520))
    )]
    pub addr: String,
    /// Inline PEM of the CA that signs the server's certificate; the system roots otherwise.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(PEM_PATTERN), length(max = MAX_CA_PEM_BYTES))
    )]
    pub ca_pem: Option<String>,
    /// Mount of the kubernetes auth method.
    #[serde(default = "default_auth_mount")]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(MOUNT_PATTERN), length(max = 128))
    )]
    pub auth_mount: String,
    /// Mount of the AppRole auth method.
    #[serde(default = "default_approle_mount")]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(MOUNT_PATTERN), length(max = 128))
    )]
    pub approle_mount: String,
    /// Audience of the projected token (the Vault role must expect it).
    #[serde(default = "default_vault_audience")]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(AUDIENCE_PATTERN), length(min = 1, max = 256))
    )]
    pub audience: String,
    /// Disables TLS verification. Operator only; never settable from an annotation.
    #[serde(default)]
    pub tls_skip_verify: bool,
    /// Vault Enterprise / OpenBao namespace of every request (login included) of pods that set no
    /// `hush.dev/vault-namespace`; the root namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(MOUNT_PATTERN), length(max = 256))
    )]
    pub namespace: Option<String>,
    /// The namespaces a pod may choose with `hush.dev/vault-namespace` (as the allowed roles are
    /// an allowlist); empty means pods cannot choose one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_namespaces: Vec<String>,
    /// Sidecars revoke the certificates they were issued from PKI references on SIGTERM (when
    /// the pod keeps `hush.dev/revoke-on-shutdown` on). Off by default: every revocation is an
    /// entry in the mount's CRL, and a certificate of a stopped pod expires on its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoke_certificates: bool,
}

impl VaultSettings {
    /// Settings for the server at `addr`, everything else default (as if only `addr` were given).
    pub fn new(addr: String) -> VaultSettings {
        VaultSettings {
            addr,
            ca_pem: None,
            auth_mount: default_auth_mount(),
            approle_mount: default_approle_mount(),
            audience: default_vault_audience(),
            tls_skip_verify: false,
            namespace: None,
            allowed_namespaces: Vec::new(),
            revoke_certificates: false,
        }
    }
}

impl AwsSettings {
    /// Settings for `region`, everything else default (as if only `region` were given).
    pub fn new(region: String) -> AwsSettings {
        AwsSettings {
            region,
            endpoint: None,
            audience: default_sts_audience(),
        }
    }
}

/// The largest inline CA bundle (`vault.caPem`). It travels in every sidecar's `HUSH_CONFIG`, one
/// environment string that Linux caps at 128 KiB, so it may take at most half of that and leave
/// the rest to the pod's own files and templates (the injector checks the total at admission).
pub(crate) const MAX_CA_PEM_BYTES: usize = 64 << 10;
/// The schema's picture of the rules in [`OperatorSettings::validate`] (which stays the authority).
#[cfg(feature = "schema")]
const HTTPS_URL_PATTERN: &str = r"^https://\S+$";
#[cfg(feature = "schema")]
const HTTP_URL_PATTERN: &str = r"^https?://\S+$";
#[cfg(feature = "schema")]
const PEM_PATTERN: &str = r"^\s*-----BEGIN CERTIFICATE-----[\s\S]*-----END CERTIFICATE-----\s*$";
#[cfg(feature = "schema")]
const MOUNT_PATTERN: &str = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$";
#[cfg(feature = "schema")]
const AUDIENCE_PATTERN: &str = r"^\S+$";
#[cfg(feature = "schema")]
const REGION_PATTERN: &str = r"^[a-z0-9-]{1,32}$";

fn default_auth_mount() -> String {
    "kubernetes".into()
}
fn default_approle_mount() -> String {
    "approle".into()
}
fn default_vault_audience() -> String {
    hush_contract::VAULT_AUDIENCE.into()
}
fn default_sts_audience() -> String {
    hush_contract::STS_AUDIENCE.into()
}

/// AWS settings chosen by the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsSettings {
    /// Region, e.g. `eu-west-1`.
    #[cfg_attr(feature = "schema", schemars(pattern(REGION_PATTERN)))]
    pub region: String,
    /// Endpoint override for Secrets Manager and STS (tests and the demo only).
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(HTTP_URL_PATTERN), length(max = 520))
    )]
    pub endpoint: Option<String>,
    /// Audience of the projected web-identity token.
    #[serde(default = "default_sts_audience")]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(AUDIENCE_PATTERN), length(min = 1, max = 256))
    )]
    pub audience: String,
}

/// Operator settings, merged into every [`SidecarConfig`]. The injector's config file holds exactly
/// this type as its `operator:` section (the per-pod fields `allowedRoles`, `allowSignal` and
/// `fsGroup` are filled in by the injector), so [`OperatorSettings::validate`] is the one rule set;
/// with the `schema` feature it also derives the JSON Schema the Helm chart's values are checked
/// against, bounds taken from [`limits`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OperatorSettings {
    /// Vault/OpenBao; `None` means `vault:` sources are refused.
    pub vault: Option<VaultSettings>,
    /// AWS Secrets Manager; `None` means `aws:` sources are refused.
    pub aws: Option<AwsSettings>,
    /// Port of the sidecar's `/metrics` on the pod IP.
    #[cfg_attr(feature = "schema", schemars(range(min = limits::MIN_METRICS_PORT)))]
    pub metrics_port: u16,
    /// Refresh interval when the pod sets none, in seconds.
    #[serde(with = "secs", rename = "defaultRefreshSeconds")]
    #[cfg_attr(feature = "schema", schemars(with = "u64", range(min = limits::MIN_REFRESH.as_secs(), max = limits::MAX_REFRESH.as_secs())))]
    pub default_refresh: Duration,
    /// Shortest `hush.dev/refresh` accepted, in seconds.
    #[serde(with = "secs", rename = "minRefreshSeconds")]
    #[cfg_attr(feature = "schema", schemars(with = "u64", range(min = limits::MIN_REFRESH.as_secs(), max = limits::MAX_REFRESH.as_secs())))]
    pub min_refresh: Duration,
    /// Longest `hush.dev/refresh` accepted, in seconds.
    #[serde(with = "secs", rename = "maxRefreshSeconds")]
    #[cfg_attr(feature = "schema", schemars(with = "u64", range(min = limits::MIN_REFRESH.as_secs(), max = limits::MAX_REFRESH.as_secs())))]
    pub max_refresh: Duration,
    /// Vault roles this namespace may use, already resolved by the injector; `None` = no allowlist.
    pub allowed_roles: Option<Vec<String>>,
    /// The operator allows `shareProcessNamespace`, so `on-change: signal:...` is accepted.
    pub allow_signal: bool,
    /// The pod's effective fsGroup, filled in by the injector: files default to 0440 with it,
    /// 0444 without.
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = i32::MAX)))]
    pub fs_group: Option<i64>,
    /// Largest file the sidecar writes (rendered size), in bytes.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = limits::MAX_FILE_BYTES)))]
    pub max_file_bytes: u64,
    /// How long the first fetch (and `hush-sidecar once`) may take before giving up, in seconds.
    #[serde(with = "secs", rename = "fetchDeadlineSeconds")]
    #[cfg_attr(feature = "schema", schemars(with = "u64", range(min = 1, max = limits::MAX_FETCH_DEADLINE.as_secs())))]
    pub fetch_deadline: Duration,
    /// Emit the audit trail: one JSON record per secret access (sidecar) and per admission
    /// decision (injector), on stdout (docs/audit.md). On unless the operator turns it off.
    pub audit: bool,
}

impl Default for OperatorSettings {
    fn default() -> Self {
        OperatorSettings {
            vault: None,
            aws: None,
            metrics_port: 9102,
            default_refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(10),
            max_refresh: Duration::from_secs(24 * 3600),
            allowed_roles: None,
            allow_signal: false,
            fs_group: None,
            max_file_bytes: 1 << 20,
            fetch_deadline: Duration::from_secs(120),
            audit: true,
        }
    }
}

impl OperatorSettings {
    /// Checks the operator's settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Error::Config {
            field: format!("operator.{field}"),
            reason,
        };
        if let Some(v) = &self.vault {
            check_https_url(&v.addr).map_err(|r| bad("vault.addr", r))?;
            if let Some(pem) = &v.ca_pem {
                check_pem_certificates(pem).map_err(|r| bad("vault.caPem", r))?;
            }
            check_mount(&v.auth_mount).map_err(|r| bad("vault.authMount", r))?;
            check_mount(&v.approle_mount).map_err(|r| bad("vault.approleMount", r))?;
            check_audience(&v.audience).map_err(|r| bad("vault.audience", r))?;
            if let Some(ns) = &v.namespace {
                check_vault_namespace(ns).map_err(|r| bad("vault.namespace", r))?;
            }
            for ns in &v.allowed_namespaces {
                check_vault_namespace(ns).map_err(|r| bad("vault.allowedNamespaces", r))?;
            }
        }
        if let Some(a) = &self.aws {
            if a.region.is_empty()
                || a.region.len() > 32
                || !a
                    .region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(bad("aws.region", "must look like eu-west-1".into()));
            }
            if let Some(e) = &a.endpoint {
                let rest = e
                    .strip_prefix("https://")
                    .or_else(|| e.strip_prefix("http://"));
                if !rest.is_some_and(|r| {
                    !r.is_empty()
                        && r.len() <= 512
                        && !r.chars().any(|c| c.is_control() || c.is_whitespace())
                }) {
                    return Err(bad(
                        "aws.endpoint",
                        "must be an http(s) URL with a host".into(),
                    ));
                }
            }
            check_audience(&a.audience).map_err(|r| bad("aws.audience", r))?;
        }
        if self.metrics_port < limits::MIN_METRICS_PORT {
            return Err(bad(
                "metricsPort",
                "must be between 1024 and 65535 (the sidecar runs without privileges)".into(),
            ));
        }
        for (name, d) in [
            ("minRefreshSeconds", self.min_refresh),
            ("maxRefreshSeconds", self.max_refresh),
            ("defaultRefreshSeconds", self.default_refresh),
        ] {
            if d < limits::MIN_REFRESH || d > limits::MAX_REFRESH {
                return Err(bad(
                    name,
                    format!(
                        "must be between {} and {} seconds",
                        limits::MIN_REFRESH.as_secs(),
                        limits::MAX_REFRESH.as_secs()
                    ),
                ));
            }
        }
        if self.min_refresh > self.max_refresh
            || self.default_refresh < self.min_refresh
            || self.default_refresh > self.max_refresh
        {
            return Err(bad(
                "defaultRefreshSeconds",
                "must satisfy minRefreshSeconds <= defaultRefreshSeconds <= maxRefreshSeconds"
                    .into(),
            ));
        }
        if let Some(roles) = &self.allowed_roles {
            for r in roles {
                check_role_name(r).map_err(|x| bad("allowedRoles", x))?;
            }
        }
        if let Some(g) = self.fs_group
            && !(0..=i64::from(i32::MAX)).contains(&g)
        {
            return Err(bad("fsGroup", "must be between 0 and 2147483647".into()));
        }
        if self.max_file_bytes == 0 || self.max_file_bytes > limits::MAX_FILE_BYTES {
            return Err(bad(
                "maxFileBytes",
                format!("must be between 1 and {}", limits::MAX_FILE_BYTES),
            ));
        }
        if self.fetch_deadline.is_zero() || self.fetch_deadline > limits::MAX_FETCH_DEADLINE {
            return Err(bad(
                "fetchDeadlineSeconds",
                format!(
                    "must be between 1 and {}",
                    limits::MAX_FETCH_DEADLINE.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// The default mode of a secret file: 0440 when the pod has an fsGroup, else 0444.
    pub fn default_file_mode(&self) -> u32 {
        if self.fs_group.is_some() {
            0o440
        } else {
            0o444
        }
    }
}

/// How the sidecar runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A native sidecar (`restartPolicy: Always`) that keeps the files fresh.
    #[default]
    Sidecar,
    /// A plain init container that fetches once and exits; never revokes.
    InitOnly,
}

/// How the sidecar logs in to Vault. Credentials never come from the config: they are read from
/// the projected token or from the Secret mounted at [`paths::CREDENTIALS_DIR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultAuth {
    /// The kubernetes auth method with the projected token at [`paths::TOKEN_FILE`].
    #[default]
    Kubernetes,
    /// AppRole: `role_id` and `secret_id` from the credentials Secret.
    AppRole,
    /// A static token: key `token` of the credentials Secret.
    Token,
}

/// A signal the sidecar may send on change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Signal {
    /// SIGHUP.
    Hup,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
    /// SIGQUIT.
    Quit,
}

impl Signal {
    /// All accepted signals.
    pub const ALL: [Signal; 6] = [
        Signal::Hup,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Term,
        Signal::Int,
        Signal::Quit,
    ];

    /// The name without the `SIG` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Usr1 => "USR1",
            Signal::Usr2 => "USR2",
            Signal::Term => "TERM",
            Signal::Int => "INT",
            Signal::Quit => "QUIT",
        }
    }

    fn parse(s: &str) -> Option<Signal> {
        let s = s.strip_prefix("SIG").unwrap_or(s);
        Signal::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// What to do after a consistent update of the files.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OnChange {
    /// Nothing; the app watches `..data` itself.
    #[default]
    None,
    /// POST to a loopback URL.
    Http {
        /// `http://127.0.0.1:<port>/...`, `http://[::1]:<port>/...` or `http://localhost:<port>/...`.
        url: String,
    },
    /// Send a signal to a process in the shared process namespace.
    Signal {
        /// The signal.
        signal: Signal,
        /// Process name (`/proc/<pid>/comm`).
        process: String,
    },
}

/// Output format of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The value byte for byte (one field).
    #[default]
    Raw,
    /// All fields as a JSON object.
    Json,
    /// All fields as `KEY=value` lines.
    Env,
    /// All fields as a YAML mapping.
    Yaml,
    /// A PKI certificate as one PEM bundle: certificate, chain, private key.
    Pem,
    /// The `hush.dev/template-<file>` template.
    Template,
}

impl Format {
    pub(crate) fn parse(s: &str) -> Option<Format> {
        match s {
            "raw" => Some(Format::Raw),
            "json" => Some(Format::Json),
            "env" => Some(Format::Env),
            "yaml" => Some(Format::Yaml),
            "pem" => Some(Format::Pem),
            _ => None,
        }
    }

    /// The annotation value / name of the format.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Json => "json",
            Format::Env => "env",
            Format::Yaml => "yaml",
            Format::Pem => "pem",
            Format::Template => "template",
        }
    }
}

/// One file in the secrets volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSpec {
    /// File name, validated by [`hush_contract::names::check_file_name`].
    pub name: String,
    /// Where the value comes from. `None` for a template-only file: its template reads other
    /// files of the pod (`files["name"]`) and has no secret of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// How it is rendered.
    pub format: Format,
    /// Template source when `format` is [`Format::Template`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Resolved permission bits: 0440 with an fsGroup, else 0444, or `mode-<file>`.
    pub mode: u32,
}

/// One environment variable of `hush.dev/env`: the app sees the content of a secret file under
/// this name (docs/env.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvSpec {
    /// The variable's name, POSIX portable ([`hush_contract::names::check_env_name`]).
    pub name: String,
    /// The file (one of [`SidecarConfig::files`]) whose content is the value.
    pub file: String,
}

/// Everything one sidecar needs, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarConfig {
    /// Always [`CONFIG_VERSION`] when built by this crate.
    pub version: u32,
    /// The pod's namespace (sealed bindings are checked against it).
    pub namespace: String,
    /// Sidecar or init-only.
    pub mode: Mode,
    /// Vault role (kubernetes auth).
    #[serde(default)]
    pub role: Option<String>,
    /// How to log in to Vault.
    pub auth: VaultAuth,
    /// Secret mounted at [`paths::CREDENTIALS_DIR`] for AppRole/token auth.
    #[serde(default)]
    pub credentials_secret: Option<String>,
    /// Refresh interval.
    #[serde(with = "secs", rename = "refreshSeconds")]
    pub refresh: Duration,
    /// Notification after an update.
    pub on_change: OnChange,
    /// Files, sorted by name.
    pub files: Vec<FileSpec>,
    /// Containers that get the mount; `None` = all app and later init containers.
    #[serde(default)]
    pub containers: Option<Vec<String>>,
    /// Where the app containers see the files.
    pub mount_path: String,
    /// IAM role for web identity.
    #[serde(default)]
    pub aws_role_arn: Option<String>,
    /// The Vault namespace this pod chose (`hush.dev/vault-namespace`), from the operator's
    /// allowlist; see [`SidecarConfig::vault_namespace`] for the one in effect.
    #[serde(default)]
    pub vault_namespace: Option<String>,
    /// Revoke leases and the token on SIGTERM (sidecar mode only).
    pub revoke_on_shutdown: bool,
    /// Environment variables set by the launcher in the chosen containers (`hush.dev/env`), in
    /// annotation order; empty when the pod sets none (and then absent from the JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvSpec>,
    /// The operator's settings.
    pub operator: OperatorSettings,
}

/// One problem with one field of a [`SidecarConfig`], from [`SidecarConfig::problems`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field as named in `HUSH_CONFIG`: `refreshSeconds`, `files[db].format`, `files`, ...
    pub field: String,
    /// What is wrong and how to fix it: the same words at admission and in `check-config`.
    pub reason: String,
    /// Other fields the rule read; the problem is dropped when one of them is wrong itself.
    reads: &'static [&'static str],
}

impl FieldProblem {
    fn new(field: &str, reason: String, reads: &'static [&'static str]) -> FieldProblem {
        FieldProblem {
            field: field.to_string(),
            reason,
            reads,
        }
    }
}

/// What the annotation parser could not turn into fields of a draft config.
#[derive(Clone, Debug, Default)]
pub(crate) struct Unparsed {
    /// Fields whose annotation did not parse; they hold a default.
    pub(crate) fields: BTreeSet<String>,
    /// Some `secret-` annotation (or a misspelt one) is invalid: the files are not all known.
    pub(crate) files_incomplete: bool,
    /// ... and one of those names a `vault:` or an `aws:` source.
    pub(crate) vault_hint: bool,
    pub(crate) aws_hint: bool,
}

impl SidecarConfig {
    /// A config with every pod-level field at its default (what a pod with only
    /// `hush.dev/inject` and no files would get): the starting point of the annotation parser, and
    /// of configs built in code, which set the fields they need with `..SidecarConfig::defaults()`.
    pub fn defaults(namespace: &str, operator: &OperatorSettings) -> SidecarConfig {
        SidecarConfig {
            version: CONFIG_VERSION,
            namespace: namespace.to_string(),
            mode: Mode::Sidecar,
            role: None,
            auth: VaultAuth::Kubernetes,
            credentials_secret: None,
            refresh: operator.default_refresh,
            on_change: OnChange::None,
            files: Vec::new(),
            containers: None,
            mount_path: paths::DEFAULT_APP_MOUNT_PATH.to_string(),
            aws_role_arn: None,
            vault_namespace: None,
            revoke_on_shutdown: true,
            env: Vec::new(),
            operator: operator.clone(),
        }
    }

    /// Builds the config from pod annotations (the injector's entry point). Requires
    /// `hush.dev/inject: "true"`; every problem is reported at once in
    /// [`Error::Annotations`]. See [`crate::annotations::check`] for pods that may not opt in.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        namespace: &str,
        operator: &OperatorSettings,
    ) -> Result<SidecarConfig> {
        crate::annotations::check(annotations, namespace, operator)?.ok_or_else(|| {
            Error::Annotations(vec![crate::error::AnnotationProblem {
                annotation: INJECT.into(),
                reason: "must be \"true\" for the pod to get a sidecar".into(),
            }])
        })
    }

    /// Serialises to the versioned `HUSH_CONFIG` JSON (`{"version":1,...}`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("SidecarConfig has only string keys and finite numbers")
    }

    /// Parses `HUSH_CONFIG` (the sidecar's entry point): refuses another major version naming
    /// both, refuses unknown fields, then re-validates everything.
    pub fn from_json(s: &str) -> Result<SidecarConfig> {
        #[derive(Deserialize)]
        struct Probe {
            version: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_str(s).map_err(Error::ConfigJson)?;
        match probe.version.as_ref().and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(CONFIG_VERSION) => {}
            Some(v) => {
                return Err(Error::ConfigVersion {
                    found: v.to_string(),
                    supported: CONFIG_VERSION,
                });
            }
            None => {
                return Err(Error::ConfigVersion {
                    found: probe
                        .version
                        .map_or_else(|| "none".to_string(), |v| short(&v.to_string())),
                    supported: CONFIG_VERSION,
                });
            }
        }
        let cfg: SidecarConfig = serde_json::from_str(s).map_err(Error::ConfigJson)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Re-checks every invariant that [`SidecarConfig::from_annotations`] establishes, and
    /// reports the first problem (the sidecar's `HUSH_CONFIG` check). [`SidecarConfig::problems`]
    /// lists them all.
    pub fn validate(&self) -> Result<()> {
        if self.version != CONFIG_VERSION {
            return Err(Error::ConfigVersion {
                found: self.version.to_string(),
                supported: CONFIG_VERSION,
            });
        }
        self.operator.validate()?;
        match self.problems().into_iter().next() {
            Some(p) => Err(Error::Config {
                field: p.field,
                reason: p.reason,
            }),
            None => Ok(()),
        }
    }

    /// Every problem of this config, each tagged with its field as named in `HUSH_CONFIG`
    /// (`refreshSeconds`, `files[db].format`, ...), in a fixed order. This is the one place where
    /// the rules between fields are written (refresh within the operator's bounds, nothing to
    /// notify or revoke in init-only mode, no store option without a source of that store, ...):
    /// the annotation parser reports these same problems under the annotation that sets the field.
    /// The operator's settings are checked apart, by [`OperatorSettings::validate`].
    pub fn problems(&self) -> Vec<FieldProblem> {
        self.problems_given(&Unparsed::default())
    }

    /// [`SidecarConfig::problems`] for a config whose `unparsed` parts hold defaults: rules that
    /// read one of them stay quiet, as do rules that need the complete list of files when it is
    /// not.
    pub(crate) fn problems_given(&self, unparsed: &Unparsed) -> Vec<FieldProblem> {
        let mut all = Vec::new();
        let mut bad = |field: &str, reason: String| {
            all.push(FieldProblem::new(field, reason, &[]));
        };
        if let Err(r) = check_dns1123_label(&self.namespace) {
            bad("namespace", format!("the pod's namespace is invalid: {r}"));
        }
        if self.files.is_empty() && !unparsed.files_incomplete {
            bad(
                "files",
                "at least one hush.dev/secret-<file> annotation is required".into(),
            );
        }
        if self.files.len() > limits::MAX_FILES {
            bad(
                "files",
                format!("at most {} files per pod", limits::MAX_FILES),
            );
        }
        if self.files.windows(2).any(|w| w[0].name >= w[1].name) {
            bad("files", "must be sorted by name without duplicates".into());
        }
        // What each template reads, found once: the checks below follow these edges.
        let reads = self.template_reads();
        for f in &self.files {
            let field = |x: &str| format!("files[{}].{x}", short(&f.name));
            if let Err(r) = check_file_name(&f.name) {
                bad("files[].name", r);
                continue;
            }
            if let Some(source) = &f.source {
                if let Err(r) = source.validate() {
                    bad(&field("source"), r);
                }
                match source.kind() {
                    SourceKind::Vault if self.operator.vault.is_none() => {
                        bad(&field("source"), NO_VAULT.into());
                    }
                    SourceKind::Aws if self.operator.aws.is_none() => {
                        bad(&field("source"), NO_AWS.into());
                    }
                    _ => {}
                }
            } else if f.template.is_none() {
                bad(&field("source"), TEMPLATE_ONLY.into());
            }
            if let Some(t) = &f.template
                && let Err(r) = check_template(t)
            {
                bad(&field("template"), r);
            } else if let Err(r) = self.check_reads(f, &reads, unparsed) {
                bad(&field("template"), r);
            }
            if let Err(r) = check_format(f.format, f.template.as_deref(), f.source.as_ref()) {
                bad(&field("format"), r);
            }
            if let Err(r) = check_mode_bits(f.mode) {
                bad(&field("mode"), r);
            }
        }
        if let Some(r) = &self.role
            && let Err(x) = check_role(r, &self.namespace, &self.operator)
        {
            bad("role", x);
        }
        if let Some(s) = &self.credentials_secret
            && let Err(r) = check_dns1123_subdomain(s)
        {
            bad("credentialsSecret", r);
        }
        if let Some(ns) = &self.vault_namespace
            && let Err(r) = check_pod_vault_namespace(ns, self.operator.vault.as_ref())
        {
            bad("vaultNamespace", r);
        }
        // Whether this pod uses Vault: an invalid `secret-` annotation that names vault: counts.
        let vault = self.has_vault() || unparsed.vault_hint;
        if (vault || !unparsed.files_incomplete)
            && let Err((field, reason)) = check_auth(
                self.auth,
                self.role.is_some(),
                self.credentials_secret.is_some(),
                vault,
            )
        {
            // "Only used with vault: sources" needs the list of files to be right.
            let reads: &[&str] = if vault {
                &["auth", "credentialsSecret"]
            } else {
                &["auth", "credentialsSecret", "files"]
            };
            all.push(FieldProblem::new(field, reason, reads));
        }
        let mut bad = |field: &str, reason: String| {
            all.push(FieldProblem::new(field, reason, &[]));
        };
        if self.refresh < self.operator.min_refresh || self.refresh > self.operator.max_refresh {
            bad(
                "refreshSeconds",
                format!(
                    "must be between {} and {} (operator limits)",
                    human(self.operator.min_refresh),
                    human(self.operator.max_refresh)
                ),
            );
        }
        match &self.on_change {
            OnChange::None => {}
            OnChange::Http { url } => {
                if let Err(r) = check_loopback_url(url) {
                    bad("onChange", r);
                }
            }
            OnChange::Signal { process, .. } => {
                if let Err(r) = check_process_name(process) {
                    bad("onChange", r);
                } else if !self.operator.allow_signal {
                    bad("onChange", NO_SIGNAL.into());
                }
            }
        }
        if self.mode == Mode::InitOnly && self.on_change != OnChange::None {
            bad("onChange", INIT_ONLY_NOTIFY.into());
        }
        if self.mode == Mode::InitOnly && self.revoke_on_shutdown {
            bad("revokeOnShutdown", INIT_ONLY_REVOKE.into());
        }
        if let Some(cs) = &self.containers
            && let Err(r) = check_containers(cs)
        {
            bad("containers", r);
        }
        if let Err(r) = check_mount_path(&self.mount_path) {
            bad("mountPath", r);
        }
        if let Some(arn) = &self.aws_role_arn {
            if let Err(r) = check_role_arn(arn) {
                bad("awsRoleArn", r);
            } else if !self.has_aws() && !unparsed.aws_hint && !unparsed.files_incomplete {
                all.push(FieldProblem::new(
                    "awsRoleArn",
                    ARN_WITHOUT_AWS.into(),
                    &["files"],
                ));
            }
        }
        if !self.env.is_empty() {
            if let Err(r) = check_env(&self.env) {
                all.push(FieldProblem::new("env", r, &[]));
            } else if !unparsed.files_incomplete
                && let Some(e) = self
                    .env
                    .iter()
                    .find(|e| !self.files.iter().any(|f| f.name == e.file))
            {
                all.push(FieldProblem::new(
                    "env",
                    format!(
                        "{} names the file \"{}\", but there is no hush.dev/secret-{} annotation; add it, or name one of the pod's secret files",
                        e.name,
                        short(&e.file),
                        short(&e.file)
                    ),
                    &["files"],
                ));
            }
        }
        // A rule that read a field which is itself wrong (or holds a default because its
        // annotation did not parse) says nothing useful: that field's own problem is reported.
        let mut wrong: BTreeSet<String> = unparsed.fields.clone();
        let mut out = Vec::new();
        for p in all {
            if unparsed.fields.contains(&p.field) || p.reads.iter().any(|r| wrong.contains(*r)) {
                continue;
            }
            wrong.insert(p.field.clone());
            out.push(p);
        }
        out
    }

    /// Files whose source is of `kind`, with that source.
    pub fn sources_of_kind(
        &self,
        kind: SourceKind,
    ) -> impl Iterator<Item = (&FileSpec, &SourceRef)> + '_ {
        self.files.iter().filter_map(move |f| {
            f.source
                .as_ref()
                .filter(|s| s.kind() == kind)
                .map(|s| (f, s))
        })
    }

    /// The files `f`'s template reads (`files["name"]`), checked: each names another file of this
    /// pod, and following the reads through template-only files never comes back to `f`. A file
    /// whose template is broken reads nothing here (its own problem is reported).
    fn check_reads(
        &self,
        f: &FileSpec,
        reads: &Reads<'_>,
        unparsed: &Unparsed,
    ) -> Result<(), String> {
        let Some(refs) = reads.get(f.name.as_str()) else {
            return Ok(());
        };
        let refs = refs.as_ref().map_err(Clone::clone)?;
        if f.source.is_none() && refs.is_empty() {
            return Err(format!(
                "a file without hush.dev/secret-{name} renders only other files of the pod, but this template reads none; read one as files[\"<file>\"] or add hush.dev/secret-{name}",
                name = short(&f.name)
            ));
        }
        for r in refs {
            if *r == f.name {
                return Err(format!(
                    "the template reads its own file as files[\"{}\"]; a file's own secret is `data` (all fields) or `value` (a single value)",
                    short(r)
                ));
            }
            if !self.files.iter().any(|g| g.name == *r) && !unparsed.files_incomplete {
                let names: Vec<&str> = self
                    .files
                    .iter()
                    .filter(|g| g.name != f.name)
                    .map(|g| g.name.as_str())
                    .take(10)
                    .collect();
                return Err(format!(
                    "files[\"{}\"] names no file of this pod (its other files: {}); fix the name or add hush.dev/secret-{}",
                    short(r),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    },
                    short(r)
                ));
            }
        }
        if let Some(cycle) = self.cycle_from(f, reads) {
            return Err(format!(
                "the template reads back its own output: {}; a template-only file's data is its rendered text, so these files would each wait for the other. Read the secrets themselves instead",
                cycle.join(" -> ")
            ));
        }
        Ok(())
    }

    /// The files each template reads, by file name (a template `files` cannot be read from is
    /// an error here).
    fn template_reads(&self) -> Reads<'_> {
        self.files
            .iter()
            .filter_map(|f| {
                let t = f.template.as_deref()?;
                Some((f.name.as_str(), crate::template::file_references(t)))
            })
            .collect()
    }

    /// The reads of a template-only file, as names: a template-only file's data is its output,
    /// so these are the edges a render has to wait on.
    fn template_only_reads(&self, name: &str, reads: &Reads<'_>) -> BTreeSet<String> {
        let template_only = self
            .files
            .iter()
            .any(|g| g.name == name && g.source.is_none());
        match reads.get(name) {
            Some(Ok(r)) if template_only => r.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// A chain of reads from `f` back to `f` through template-only files, if there is one.
    fn cycle_from(&self, f: &FileSpec, reads: &Reads<'_>) -> Option<Vec<String>> {
        let first = reads.get(f.name.as_str())?.as_ref().ok()?.clone();
        // Depth-first over names, bounded by the number of files (each is visited once).
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = first
            .into_iter()
            .map(|r| (r.clone(), vec![f.name.clone(), r]))
            .collect();
        while let Some((name, path)) = stack.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            for next in self.template_only_reads(&name, reads) {
                let mut p = path.clone();
                p.push(next.clone());
                if next == f.name {
                    // Only a template-only file's output is read: a file with its own secret
                    // gives its secret, so `f` closes a cycle only if it is template-only.
                    if f.source.is_none() {
                        return Some(p);
                    }
                    continue;
                }
                stack.push((next, p));
            }
        }
        None
    }

    /// The files read by any template (so their values must be kept whole, as fields).
    pub fn read_by_templates(&self) -> BTreeSet<String> {
        self.files
            .iter()
            .filter_map(|f| f.template.as_deref())
            .filter_map(|t| crate::template::file_references(t).ok())
            .flatten()
            .collect()
    }

    /// Whether any file comes from Vault (the injector then adds the Vault token volume).
    pub fn has_vault(&self) -> bool {
        self.sources_of_kind(SourceKind::Vault).next().is_some()
    }

    /// Whether any file comes from AWS (the injector then adds the STS token and env).
    pub fn has_aws(&self) -> bool {
        self.sources_of_kind(SourceKind::Aws).next().is_some()
    }

    /// Whether any file comes from a sealed ConfigMap (the injector then mounts the identity).
    pub fn has_sealed(&self) -> bool {
        self.sources_of_kind(SourceKind::Sealed).next().is_some()
    }

    /// The Vault namespace in effect: the pod's choice, else the operator's default.
    pub fn vault_namespace(&self) -> Option<&str> {
        self.vault_namespace
            .as_deref()
            .or_else(|| self.operator.vault.as_ref()?.namespace.as_deref())
    }

    /// The sealed ConfigMaps to mount under [`paths::SEALED_DIR`].
    pub fn sealed_configmaps(&self) -> BTreeSet<String> {
        self.files
            .iter()
            .filter_map(|f| match &f.source {
                Some(SourceRef::Sealed { configmap, .. }) => Some(configmap.clone()),
                _ => None,
            })
            .collect()
    }

    /// The kinds of sources in use.
    pub fn source_kinds(&self) -> BTreeSet<SourceKind> {
        self.files
            .iter()
            .filter_map(|f| f.source.as_ref().map(SourceRef::kind))
            .collect()
    }
}

/// The files each template reads (`files["name"]`), by the reading file's name.
type Reads<'a> = BTreeMap<&'a str, Result<BTreeSet<String>, String>>;

pub(crate) const TEMPLATE_ONLY: &str = "a file needs a hush.dev/secret-<file>, or a hush.dev/template-<file> that renders it from other files of the pod";

pub const NO_VAULT: &str =
    "the operator has not configured Vault, so vault: sources cannot be used";
pub const NO_AWS: &str = "the operator has not configured AWS, so aws: sources cannot be used";
pub(crate) const NO_SIGNAL: &str = "signal notification needs shareProcessNamespace, which the operator has not allowed; use http:<loopback-url> or none";
pub(crate) const INIT_ONLY_NOTIFY: &str =
    "init-only fetches once and exits, so there is no change to notify; remove it";
pub(crate) const ARN_WITHOUT_AWS: &str = "only used with aws: sources, and none is set";
pub(crate) const INIT_ONLY_REVOKE: &str =
    "init-only never revokes (the app still needs what it fetched); remove it or set \"false\"";

/// Checks the combination of format, template and source.
pub(crate) fn check_format(
    format: Format,
    template: Option<&str>,
    source: Option<&SourceRef>,
) -> Result<(), String> {
    match (format, template) {
        (Format::Template, None) => return Err("template format without a template".into()),
        (Format::Template, Some(_)) => {}
        (_, Some(_)) => return Err("a template always uses the template format".into()),
        (Format::Raw, None) => {
            if matches!(source, Some(SourceRef::Pki { field: None, .. })) {
                return Err(
                    "raw writes one value, but a certificate has several fields; select one with #certificate, #private_key or #ca_chain, or use format pem (certificate, chain and key in one file) or a template"
                        .into(),
                );
            }
        }
        (Format::Pem, None) => {
            if !matches!(source, Some(SourceRef::Pki { field: None, .. })) {
                return Err(
                    "format pem writes the certificate, its chain and its key as one bundle, so the source must be vault:<mount>/issue/<role>?... without #field; use raw for one field"
                        .into(),
                );
            }
        }
        (f, None) => {
            if source.is_some_and(SourceRef::selects_single_value) {
                return Err(format!(
                    "format {} renders all fields of a secret, but the source selects a single value (#field, #json-key or sealed:); use raw or drop the selector",
                    f.as_str()
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn check_template(t: &str) -> Result<(), String> {
    if t.len() > limits::MAX_TEMPLATE_BYTES {
        return Err(format!(
            "the template is longer than {} bytes",
            limits::MAX_TEMPLATE_BYTES
        ));
    }
    if t.contains('\0') {
        return Err("the template contains a NUL character".into());
    }
    crate::template::check_template_syntax(t)
}

/// Parses a `mode-<file>` value: octal `0400`..`0644` (3 or 4 digits), never executable or
/// world-writable, always readable by the owner.
pub(crate) fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s
        .strip_prefix("0o")
        .or_else(|| s.strip_prefix('0'))
        .unwrap_or(s);
    if digits.len() != 3 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("must be an octal mode such as 0440 or 0400".into());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| "must be an octal mode".to_string())?;
    check_mode_bits(mode)?;
    Ok(mode)
}

pub(crate) fn check_mode_bits(mode: u32) -> Result<(), String> {
    if mode & !0o777 != 0 {
        return Err("setuid, setgid and sticky bits are not allowed".into());
    }
    if mode & 0o111 != 0 {
        return Err(format!("{mode:04o} is executable; secret files never are"));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "{mode:04o} is group- or world-writable; the range is 0400 to 0644"
        ));
    }
    if mode & 0o400 == 0 {
        return Err(format!("{mode:04o} is not readable by its owner"));
    }
    Ok(())
}

/// A Vault namespace path: 1 to 256 characters, segments of `[A-Za-z0-9._-]` joined by `/`.
pub(crate) fn check_vault_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() || ns.len() > 256 {
        return Err("a Vault namespace must be 1 to 256 characters long".into());
    }
    if ns.split('/').any(|s| {
        s.is_empty()
            || s == "."
            || s == ".."
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    }) {
        return Err(
            "a Vault namespace is segments of [A-Za-z0-9._-] joined by '/', with no empty, '.' or '..' segment"
                .into(),
        );
    }
    Ok(())
}

/// A pod's `hush.dev/vault-namespace`: valid, and on the operator's `vault.allowedNamespaces`.
fn check_pod_vault_namespace(ns: &str, vault: Option<&VaultSettings>) -> Result<(), String> {
    check_vault_namespace(ns)?;
    let Some(v) = vault else {
        return Err(NO_VAULT.into());
    };
    if v.allowed_namespaces.iter().any(|a| a == ns) {
        return Ok(());
    }
    let mut list: Vec<&str> = v
        .allowed_namespaces
        .iter()
        .take(10)
        .map(String::as_str)
        .collect();
    if v.allowed_namespaces.len() > 10 {
        list.push("...");
    }
    Err(format!(
        "Vault namespace \"{ns}\" is not allowed; allowed: {} (the operator's vault.allowedNamespaces)",
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    ))
}

/// A Vault role name as the parser and the injector accept it: 1 to 128 of `[A-Za-z0-9._-]`.
pub fn check_role_name(r: &str) -> Result<(), String> {
    if r.is_empty() || r.len() > 128 {
        return Err("a role name must be 1 to 128 characters long".into());
    }
    if let Some(c) = r
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the role name contains {}",
            hush_contract::names::describe_char(c)
        ));
    }
    Ok(())
}

pub(crate) fn check_role(r: &str, namespace: &str, op: &OperatorSettings) -> Result<(), String> {
    check_role_name(r)?;
    if let Some(allowed) = &op.allowed_roles
        && !allowed.iter().any(|a| a == r)
    {
        let mut list: Vec<&str> = allowed.iter().take(10).map(String::as_str).collect();
        if allowed.len() > 10 {
            list.push("...");
        }
        return Err(format!(
            "role \"{r}\" is not allowed in namespace \"{namespace}\"; allowed: {}",
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        ));
    }
    Ok(())
}

/// Checks auth method, role and credentials Secret together; the error names the field.
pub(crate) fn check_auth(
    auth: VaultAuth,
    has_role: bool,
    has_secret: bool,
    has_vault: bool,
) -> Result<(), (&'static str, String)> {
    if !has_vault {
        if auth != VaultAuth::Kubernetes {
            return Err((
                "auth",
                "only used with vault: sources, and none is set".into(),
            ));
        }
        if has_role {
            return Err((
                "role",
                "only used with vault: sources, and none is set".into(),
            ));
        }
        if has_secret {
            return Err((
                "credentialsSecret",
                "only used with vault: sources, and none is set".into(),
            ));
        }
        return Ok(());
    }
    match auth {
        VaultAuth::Kubernetes => {
            if !has_role {
                return Err((
                    "role",
                    "required for Vault's kubernetes auth (the Vault role bound to this service account)".into(),
                ));
            }
            if has_secret {
                return Err((
                    "credentialsSecret",
                    "only used with vault-auth approle or token".into(),
                ));
            }
        }
        VaultAuth::AppRole | VaultAuth::Token => {
            if !has_secret {
                return Err((
                    "credentialsSecret",
                    "required with vault-auth approle or token: the Secret that holds the credentials"
                        .into(),
                ));
            }
            if has_role {
                return Err((
                    "role",
                    "only used with vault-auth kubernetes (AppRole reads role_id from the credentials Secret)".into(),
                ));
            }
        }
    }
    Ok(())
}

/// A duration in the largest whole unit: `24h`, `5m`, `90s`.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Parses a duration such as `30s`, `5m`, `1h` or `1h30m`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "must be a duration such as 30s, 5m, 1h or 1h30m";
    if s.is_empty() || s.len() > 16 {
        return Err(HINT.into());
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in s.chars() {
        match c {
            '0'..='9' => {
                let d = u64::from(c as u8 - b'0');
                num = Some(
                    num.unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(d))
                        .ok_or(HINT)?,
                );
            }
            'h' | 'm' | 's' => {
                let n = num.take().ok_or(HINT)?;
                let unit = match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                total = n
                    .checked_mul(unit)
                    .and_then(|x| total.checked_add(x))
                    .ok_or(HINT)?;
            }
            _ => return Err(HINT.into()),
        }
    }
    if num.is_some() {
        return Err(format!("{HINT} (a unit is required)"));
    }
    Ok(Duration::from_secs(total))
}

/// `http://<loopback>:<port>[/path]` only.
pub(crate) fn check_loopback_url(url: &str) -> Result<(), String> {
    const HINT: &str = "must be http://127.0.0.1:<port>/<path>, http://[::1]:<port>/<path> or http://localhost:<port>/<path> (loopback only)";
    if url.len() > 512 {
        return Err("the URL is longer than 512 characters".into());
    }
    let rest = url.strip_prefix("http://").ok_or(HINT)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once("]:").ok_or(HINT)?;
        (h, p)
    } else {
        authority.rsplit_once(':').ok_or(HINT)?
    };
    if !matches!(host, "127.0.0.1" | "::1" | "localhost") {
        return Err(HINT.into());
    }
    if port.is_empty()
        || port.len() > 5
        || !port.bytes().all(|b| b.is_ascii_digit())
        || !(1..=65535).contains(&port.parse::<u32>().unwrap_or(0))
    {
        return Err(format!("{HINT}; the port must be 1 to 65535"));
    }
    if let Some(c) = path.chars().find(|c| {
        !(c.is_ascii_alphanumeric()
            || matches!(c, '/' | '-' | '_' | '.' | '~' | '?' | '=' | '&' | '%' | '+'))
    }) {
        return Err(format!(
            "the URL path contains {}",
            hush_contract::names::describe_char(c)
        ));
    }
    Ok(())
}

pub(crate) fn check_process_name(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > 64 {
        return Err("the process name must be 1 to 64 characters long".into());
    }
    if let Some(c) = p
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the process name contains {}",
            hush_contract::names::describe_char(c)
        ));
    }
    Ok(())
}

/// Parses `none`, `http:<url>` or `signal:<SIG>:<process>`.
pub(crate) fn parse_on_change(s: &str, op: &OperatorSettings) -> Result<OnChange, String> {
    if s == "none" {
        return Ok(OnChange::None);
    }
    // `http:<url>` as documented; a bare `http://...` URL means the same.
    let url = if s.starts_with("http://") {
        Some(s)
    } else {
        s.strip_prefix("http:")
    };
    if let Some(url) = url {
        check_loopback_url(url)?;
        return Ok(OnChange::Http { url: url.into() });
    }
    if let Some(rest) = s.strip_prefix("signal:") {
        let (sig, process) = rest
            .split_once(':')
            .ok_or("must be signal:<SIGNAL>:<process-name>, e.g. signal:HUP:nginx")?;
        let signal = Signal::parse(sig).ok_or_else(|| {
            format!(
                "unknown signal \"{}\"; use one of HUP, USR1, USR2, TERM, INT, QUIT",
                short(sig)
            )
        })?;
        check_process_name(process)?;
        if !op.allow_signal {
            return Err(NO_SIGNAL.into());
        }
        return Ok(OnChange::Signal {
            signal,
            process: process.into(),
        });
    }
    Err("must be none, http:<loopback-url> or signal:<SIGNAL>:<process-name>".into())
}

pub(crate) fn check_containers(cs: &[String]) -> Result<(), String> {
    if cs.is_empty() {
        return Err("the list of containers is empty".into());
    }
    if cs.len() > 64 {
        return Err("at most 64 containers may be listed".into());
    }
    let mut seen = BTreeSet::new();
    for c in cs {
        check_dns1123_label(c)?;
        if !seen.insert(c) {
            return Err(format!("container \"{c}\" is listed twice"));
        }
    }
    Ok(())
}

/// Most variables in `hush.dev/env`.
pub(crate) const MAX_ENV_VARS: usize = 64;

/// Valid, unique names, each naming a valid file; at most [`MAX_ENV_VARS`].
pub(crate) fn check_env(env: &[EnvSpec]) -> Result<(), String> {
    if env.len() > MAX_ENV_VARS {
        return Err(format!("at most {MAX_ENV_VARS} variables"));
    }
    let mut seen = BTreeSet::new();
    for e in env {
        check_env_name(&e.name)?;
        check_file_name(&e.file).map_err(|r| format!("{}: {r}", e.name))?;
        if !seen.insert(e.name.as_str()) {
            return Err(format!("{} is set twice; set each variable once", e.name));
        }
    }
    Ok(())
}

/// Parses `hush.dev/env`: `NAME=<file>` pairs separated by commas (spaces around them ignored).
pub(crate) fn parse_env(v: &str) -> Result<Vec<EnvSpec>, String> {
    let mut out = Vec::new();
    for pair in v.split(',').map(str::trim) {
        let Some((name, file)) = pair.split_once('=') else {
            return Err(format!(
                "\"{}\" is not NAME=<file>; write e.g. DB_PASSWORD=db-password, where db-password has a hush.dev/secret-db-password annotation",
                short(pair)
            ));
        };
        out.push(EnvSpec {
            name: name.trim().to_string(),
            file: file.trim().to_string(),
        });
    }
    check_env(&out)?;
    Ok(out)
}

/// Absolute, normalised, not `/`, not under `/hush`, not over the service-account token.
pub(crate) fn check_mount_path(p: &str) -> Result<(), String> {
    if p.len() > 255 {
        return Err("the mount path is longer than 255 characters".into());
    }
    if !p.starts_with('/') {
        return Err("the mount path must be absolute".into());
    }
    if p == "/" {
        return Err("the mount path must not be /".into());
    }
    if p.ends_with('/') || p.contains("//") {
        return Err("the mount path must be normalised (no trailing or double '/')".into());
    }
    for seg in p[1..].split('/') {
        if seg == "." || seg == ".." {
            return Err("the mount path must not contain '.' or '..'".into());
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "the mount path contains {}",
                hush_contract::names::describe_char(c)
            ));
        }
    }
    let under = |root: &str| p == root || p.starts_with(&format!("{root}/"));
    if under("/hush") {
        return Err("the mount path must not be under /hush (reserved for the sidecar)".into());
    }
    for sa in [
        "/var/run/secrets/kubernetes.io",
        "/run/secrets/kubernetes.io",
    ] {
        if under(sa) || sa.starts_with(&format!("{p}/")) {
            return Err(format!(
                "the mount path must not hide or sit inside {sa} (the service-account token)"
            ));
        }
    }
    Ok(())
}

/// `arn:aws[-cn|-us-gov]:iam::<12 digits>:role/<path/name>`.
pub(crate) fn check_role_arn(arn: &str) -> Result<(), String> {
    const HINT: &str = "must be an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>";
    if arn.len() > 2048 {
        return Err(HINT.into());
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6
        || parts[0] != "arn"
        || !matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov")
        || parts[2] != "iam"
        || !parts[3].is_empty()
        || parts[4].len() != 12
        || !parts[4].bytes().all(|b| b.is_ascii_digit())
    {
        return Err(HINT.into());
    }
    let name = parts[5].strip_prefix("role/").ok_or(HINT)?;
    if name.is_empty()
        || name.ends_with('/')
        || !name.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | ',' | '.' | '@' | '_' | '-' | '/')
        })
    {
        return Err(HINT.into());
    }
    Ok(())
}

fn check_https_url(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("https://")
        .ok_or("must be an https:// URL")?;
    if rest.is_empty()
        || rest.len() > 512
        || rest.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err("must be an https:// URL with a host".into());
    }
    Ok(())
}

/// One or more PEM `CERTIFICATE` blocks with base64 bodies, at most [`MAX_CA_PEM_BYTES`]. (The
/// certificates themselves are parsed where they are used, by the TLS client.)
fn check_pem_certificates(pem: &str) -> Result<(), String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    const HINT: &str = "must be PEM certificates (BEGIN/END CERTIFICATE blocks, at most 64 KiB)";
    if pem.len() > MAX_CA_PEM_BYTES {
        return Err(HINT.into());
    }
    let mut rest = pem;
    let mut blocks = 0;
    while let Some(i) = rest.find(BEGIN) {
        let after = &rest[i + BEGIN.len()..];
        let j = after.find(END).ok_or(HINT)?;
        let body = &after[..j];
        let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
        if body.trim().is_empty() || !body.bytes().all(|b| base64(b) || b.is_ascii_whitespace()) {
            return Err(HINT.into());
        }
        blocks += 1;
        rest = &after[j + END.len()..];
    }
    if blocks == 0 {
        return Err(HINT.into());
    }
    Ok(())
}

fn check_mount(m: &str) -> Result<(), String> {
    if m.is_empty()
        || m.len() > 128
        || m.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        || !m
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.'))
    {
        return Err("must be a Vault mount path such as kubernetes or auth-k8s/prod".into());
    }
    Ok(())
}

fn check_audience(a: &str) -> Result<(), String> {
    if a.is_empty() || a.len() > 256 || a.chars().any(|c| c.is_control() || c == ' ') {
        return Err("must be 1 to 256 printable characters without spaces".into());
    }
    Ok(())
}

/// Durations serialised as whole seconds.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "-5s",
            "99999999999999999h",
            "1.5h",
            "5 m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0440"), Ok(0o440));
        assert_eq!(parse_mode("400"), Ok(0o400));
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("0600"), Ok(0o600));
        for bad in [
            "0755", "0666", "0646", "0040", "4440", "0o1440", "abc", "", "0444 ",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loopback_urls() {
        for ok in [
            "http://127.0.0.1:8080/reload",
            "http://[::1]:9/x",
            "http://localhost:1",
            "http://localhost:65535/-/reload?x=1",
        ] {
            assert_eq!(check_loopback_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "https://127.0.0.1:8080/",
            "http://10.0.0.1:80/",
            "http://127.0.0.1/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:70000/",
            "http://user@127.0.0.1:80/",
            "http://127.0.0.1.evil.com:80/",
            "http://localhost:80/#frag",
        ] {
            assert!(check_loopback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_paths() {
        assert!(check_mount_path("/var/run/secrets/hush").is_ok());
        assert!(check_mount_path("/etc/app/secrets").is_ok());
        for bad in [
            "/",
            "rel",
            "/hush",
            "/hush/x",
            "/var/run/secrets/kubernetes.io",
            "/var/run/secrets/kubernetes.io/serviceaccount",
            "/var/run/secrets",
            "/var",
            "/a/../b",
            "/a//b",
            "/a/",
        ] {
            assert!(check_mount_path(bad).is_err(), "{bad}");
        }
        assert!(check_mount_path("/hushx").is_ok());
    }

    #[test]
    fn role_arns() {
        assert!(check_role_arn("arn:aws:iam::123456789012:role/app").is_ok());
        assert!(check_role_arn("arn:aws:iam::123456789012:role/path/app").is_ok());
        assert!(check_role_arn("arn:aws:iam::12345:role/app").is_err());
        assert!(check_role_arn("arn:aws:iam::123456789012:user/app").is_err());
        assert!(check_role_arn("arn:aws:sts::123456789012:role/app").is_err());
    }

    #[test]
    fn operator_defaults_validate() {
        assert!(OperatorSettings::default().validate().is_ok());
        let op: OperatorSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(op, OperatorSettings::default());
        assert!(serde_json::from_str::<OperatorSettings>(r#"{"vaultAddr":"x"}"#).is_err());
    }
}
