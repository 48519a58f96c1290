//! The operator's configuration of the injector. Everything a tenant must not choose lives here and
//! only here: the sidecar image, the store addresses and CA, token audiences and lifetimes, the
//! sidecar's UID/GID and resources, the Vault roles each namespace may use, and whether the injector
//! may set `fsGroup` or `shareProcessNamespace`. It is read from a YAML file
//! (`deny_unknown_fields`), overlaid with command-line flags, then [`RawConfig::build`] checks every
//! field and names the first bad one, so a bad config fails at start rather than at admission.
//!
//! The file's `operator:` section is the sidecar's own [`OperatorSettings`], the operator's part of
//! every `HUSH_CONFIG`, deserialised as is and checked by [`OperatorSettings::validate`] only: one
//! schema and one rule set for both binaries, with no field names to translate. The other sections
//! hold what only the injector uses: its listeners (`server`), the injected container (`sidecar`),
//! the projected tokens' lifetimes and the Vault CA file (`vault`, `aws`), the per-namespace role
//! allowlist and the pod-level permissions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hush_config::OperatorSettings;
use hush_contract::names::{check_dns1123_label, check_dns1123_subdomain};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Default UID and GID of the sidecar (the distroless "nonroot" user).
pub(crate) const DEFAULT_SIDECAR_ID: i64 = 65532;
/// The shortest lifetime the kube-apiserver accepts for a projected token.
pub(crate) const MIN_TOKEN_EXPIRATION_SECONDS: i64 = 600;
/// Default request body limit: AdmissionReviews above this are answered 413 unparsed.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The config file as written by the operator. Every section is optional; flags fill or override.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub sidecar: RawSidecar,
    /// The operator's part of every `HUSH_CONFIG`, exactly as the sidecar reads it (its
    /// `allowedRoles`, `allowSignal` and `fsGroup` are filled in per pod, so they must stay unset).
    #[serde(default)]
    pub operator: OperatorSettings,
    /// What the injector itself needs for Vault: the CA file and the token lifetime.
    #[serde(default)]
    pub vault: RawVault,
    /// What the injector itself needs for AWS: the token lifetime.
    #[serde(default)]
    pub aws: RawAws,
    /// Vault roles each namespace may request with `hush.dev/role`; the key `"*"` applies to
    /// namespaces not listed. Absent: any role (Vault's role binding is then the only check).
    #[serde(default)]
    pub allowed_roles: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub pod_security: RawPodSecurity,
}

/// Listener and TLS settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawServer {
    /// HTTPS listen address for `/mutate` and `/validate` (default `0.0.0.0:8443`).
    pub listen: Option<String>,
    /// Plain-HTTP listen address for `/healthz`, `/readyz`, `/metrics` (default `0.0.0.0:8080`).
    pub health_listen: Option<String>,
    /// PEM certificate chain file.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key file.
    pub tls_key_file: Option<PathBuf>,
    /// How often the certificate files are checked for changes, in seconds (default 5).
    pub tls_reload_interval_seconds: Option<u64>,
    /// Request body limit in bytes (default 3 MiB).
    pub max_body_bytes: Option<usize>,
    /// How long SIGTERM waits for in-flight requests, in seconds (default 20).
    pub shutdown_grace_seconds: Option<u64>,
    /// Self-managed TLS: the injector makes its certificate in memory and publishes its CA in the
    /// caBundle of its webhook configurations. Excludes `tlsCertFile`/`tlsKeyFile`.
    pub self_managed_tls: Option<RawSelfManagedTls>,
}

/// Self-managed TLS settings (flags `--self-managed-tls*`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSelfManagedTls {
    /// Turns the mode on (the other fields alone do not).
    pub enabled: Option<bool>,
    /// The webhook Service's host name, `<service>.<namespace>.svc` (required).
    pub service: Option<String>,
    /// Name of the MutatingWebhookConfiguration and the ValidatingWebhookConfiguration whose
    /// caBundle the injector may patch (required).
    pub webhook_configuration: Option<String>,
    /// Lifetime of the CA and the serving certificate, in days (default 365, 1 to 3650). Both are
    /// renewed at about two thirds of it.
    pub validity_days: Option<u32>,
    /// More subject alternative names for the serving certificate: DNS names or IP addresses.
    pub extra_sans: Option<Vec<String>>,
}

/// What the injected container looks like (how the sidecar behaves is in `operator`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSidecar {
    /// The `hush-sidecar` image of the same release (required).
    pub image: Option<String>,
    /// `Always`, `IfNotPresent` (default) or `Never`.
    pub image_pull_policy: Option<String>,
    /// UID of the sidecar (default 65532, never 0).
    pub run_as_user: Option<i64>,
    /// GID of the sidecar (default 65532, never 0).
    pub run_as_group: Option<i64>,
    /// Container resources (defaults: requests cpu 5m / memory 16Mi, limits memory 64Mi).
    pub resources: Option<RawResources>,
    /// `sizeLimit` of the tmpfs secrets volume (default `16Mi`).
    pub secrets_size_limit: Option<String>,
}

/// Container resources as Kubernetes quantities.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawResources {
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

/// The injector's own Vault settings; the sidecar's are `operator.vault`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawVault {
    /// CA bundle PEM file, read at start and inlined as `operator.vault.caPem`.
    pub ca_file: Option<PathBuf>,
    /// `expirationSeconds` of the projected Vault token (default 600, 600 to 86400).
    pub token_expiration_seconds: Option<i64>,
}

/// The injector's own AWS settings; the sidecar's are `operator.aws`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAws {
    /// `expirationSeconds` of the projected STS token (default 3600, 600 to 86400).
    pub token_expiration_seconds: Option<i64>,
}

/// Pod-level settings the injector may change, both off by default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPodSecurity {
    /// Set `fsGroup` on pods that have none, so secret files can be 0440 (default false).
    pub allow_fs_group: Option<bool>,
    /// The `fsGroup` to set (default 65532).
    pub fs_group: Option<i64>,
    /// Allow `hush.dev/on-change: signal:...`, which needs `shareProcessNamespace` (default false).
    pub allow_share_process_namespace: Option<bool>,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct InjectorConfig {
    pub server: ServerConfig,
    pub sidecar: SidecarSettings,
    /// The operator's part of every `SidecarConfig`, validated; `allowed_roles` and `fs_group` are
    /// filled in per pod.
    pub operator: OperatorSettings,
    /// `expirationSeconds` of the Vault token, when Vault is configured.
    pub vault_token_expiration_seconds: i64,
    /// `expirationSeconds` of the STS token, when AWS is configured.
    pub aws_token_expiration_seconds: i64,
    pub allowed_roles: Option<BTreeMap<String, Vec<String>>>,
    pub pod_security: PodSecurityConfig,
}

/// Validated listener settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub health_listen: SocketAddr,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_reload_interval: Duration,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    /// Set when the certificate is self-managed (then there are no certificate files).
    pub self_managed_tls: Option<SelfManagedTls>,
}

/// Validated self-managed TLS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfManagedTls {
    /// `<service>.<namespace>.svc`, the name the apiserver connects to.
    pub service: String,
    /// Name of both webhook configurations.
    pub webhook_configuration: String,
    /// Lifetime of the CA and the serving certificate.
    pub validity: Duration,
    /// Every subject alternative name of the serving certificate: the service's names, then the
    /// extra ones (an IP address is written as one).
    pub sans: Vec<String>,
}

/// Validated sidecar container settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SidecarSettings {
    pub image: String,
    pub image_pull_policy: String,
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub resources: RawResources,
    pub secrets_size_limit: String,
}

/// Validated pod-level permissions.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSecurityConfig {
    pub allow_fs_group: bool,
    pub fs_group: i64,
    pub allow_share_process_namespace: bool,
}

impl RawConfig {
    /// Parses a YAML config file; unknown fields are refused with their name.
    pub fn from_yaml(text: &str, path: &str) -> Result<RawConfig> {
        if text.trim().is_empty() {
            return Ok(RawConfig::default());
        }
        serde_saphyr::from_str(text).map_err(|e| Error::ConfigFile {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// Reads and parses a YAML config file.
    pub fn from_file(path: &Path) -> Result<RawConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Checks every field and returns the typed config, naming the first bad field.
    pub fn build(self) -> Result<InjectorConfig> {
        let server = build_server(self.server)?;
        let sidecar = build_sidecar(self.sidecar)?;
        let mut operator = self.operator;
        // Filled in per pod below and in `mutate`; a value here would be silently replaced.
        if operator.allowed_roles.is_some() {
            return Err(Error::config(
                "operator.allowedRoles",
                "is resolved per namespace by the injector: set the top-level allowedRoles map",
            ));
        }
        if operator.fs_group.is_some() {
            return Err(Error::config(
                "operator.fsGroup",
                "is the pod's fsGroup, filled in by the injector: set podSecurity.fsGroup",
            ));
        }
        if operator.allow_signal {
            return Err(Error::config(
                "operator.allowSignal",
                "follows podSecurity.allowShareProcessNamespace: set that instead",
            ));
        }
        if let Some(path) = &self.vault.ca_file {
            let Some(v) = operator.vault.as_mut() else {
                return Err(Error::config(
                    "vault.caFile",
                    "needs operator.vault (the CA is handed to the sidecar as operator.vault.caPem)",
                ));
            };
            if v.ca_pem.is_some() {
                return Err(Error::config(
                    "vault.caFile",
                    "give operator.vault.caPem or vault.caFile, not both",
                ));
            }
            let pem = std::fs::read_to_string(path).map_err(|_| {
                Error::config("vault.caFile", format!("cannot read {}", path.display()))
            })?;
            v.ca_pem = Some(check_ca("vault.caFile", pem)?);
        }
        let vault_exp = check_token_expiration(
            "vault.tokenExpirationSeconds",
            self.vault
                .token_expiration_seconds
                .unwrap_or(MIN_TOKEN_EXPIRATION_SECONDS),
        )?;
        let aws_exp = check_token_expiration(
            "aws.tokenExpirationSeconds",
            self.aws.token_expiration_seconds.unwrap_or(3600),
        )?;
        if let Some(map) = &self.allowed_roles {
            for (ns, roles) in map {
                if ns != "*" && check_dns1123_label(ns).is_err() {
                    return Err(Error::config(
                        format!("allowedRoles.{ns}"),
                        "key must be a namespace name or \"*\"",
                    ));
                }
                for role in roles {
                    // The sidecar's own rule, so a role the parser would refuse fails at start,
                    // not at every admission.
                    if let Err(why) = hush_config::check_role_name(role) {
                        return Err(Error::config(format!("allowedRoles.{ns}"), why));
                    }
                }
            }
        }
        let allow_signal = self
            .pod_security
            .allow_share_process_namespace
            .unwrap_or(false);
        let pod_security = PodSecurityConfig {
            allow_fs_group: self.pod_security.allow_fs_group.unwrap_or(false),
            fs_group: check_id(
                "podSecurity.fsGroup",
                self.pod_security.fs_group.unwrap_or(DEFAULT_SIDECAR_ID),
            )?,
            allow_share_process_namespace: allow_signal,
        };
        operator.allow_signal = allow_signal;
        // The one rule set; its errors already name `operator.<field>`, as written in the file.
        operator.validate().map_err(|e| match e {
            hush_config::Error::Config { field, reason } => Error::config(field, reason),
            other => Error::config("operator", other.to_string()),
        })?;
        Ok(InjectorConfig {
            server,
            sidecar,
            operator,
            vault_token_expiration_seconds: vault_exp,
            aws_token_expiration_seconds: aws_exp,
            allowed_roles: self.allowed_roles,
            pod_security,
        })
    }
}

impl InjectorConfig {
    /// The roles a namespace may use: `None` when no allowlist is configured.
    pub fn allowed_roles_for(&self, namespace: &str) -> Option<Vec<String>> {
        let map = self.allowed_roles.as_ref()?;
        Some(
            map.get(namespace)
                .or_else(|| map.get("*"))
                .cloned()
                .unwrap_or_default(),
        )
    }

    /// A config for tests and examples: the given image, everything else default, no TLS files.
    pub fn for_tests(image: &str) -> InjectorConfig {
        let raw = RawConfig {
            sidecar: RawSidecar {
                image: Some(image.to_string()),
                ..RawSidecar::default()
            },
            ..RawConfig::default()
        };
        match raw.build() {
            Ok(c) => c,
            Err(e) => unreachable!("the default config with an image is valid: {e}"),
        }
    }
}

fn parse_addr(field: &str, value: Option<String>, default: &str) -> Result<SocketAddr> {
    let v = value.unwrap_or_else(|| default.to_string());
    v.parse()
        .map_err(|_| Error::config(field, format!("`{v}` is not an address like 0.0.0.0:8443")))
}

fn build_server(raw: RawServer) -> Result<ServerConfig> {
    let interval = raw.tls_reload_interval_seconds.unwrap_or(5);
    if interval == 0 || interval > 3600 {
        return Err(Error::config(
            "server.tlsReloadIntervalSeconds",
            "must be between 1 and 3600",
        ));
    }
    let max_body = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if !(64 * 1024..=64 * 1024 * 1024).contains(&max_body) {
        return Err(Error::config(
            "server.maxBodyBytes",
            "must be between 64 KiB and 64 MiB",
        ));
    }
    let grace = raw.shutdown_grace_seconds.unwrap_or(20);
    if grace > 600 {
        return Err(Error::config(
            "server.shutdownGraceSeconds",
            "must be at most 600",
        ));
    }
    if raw.tls_cert_file.is_some() != raw.tls_key_file.is_some() {
        return Err(Error::config(
            "server.tlsCertFile",
            "tlsCertFile and tlsKeyFile must be given together",
        ));
    }
    let self_managed_tls = match raw.self_managed_tls {
        Some(sm) => build_self_managed(sm)?,
        None => None,
    };
    if self_managed_tls.is_some() && raw.tls_cert_file.is_some() {
        return Err(Error::config(
            "server.selfManagedTls",
            "self-managed TLS makes its certificate in memory, so it cannot be combined with \
             tlsCertFile/tlsKeyFile (--tls-cert/--tls-key): remove those, or turn self-managed TLS off",
        ));
    }
    Ok(ServerConfig {
        listen: parse_addr("server.listen", raw.listen, "0.0.0.0:8443")?,
        health_listen: parse_addr("server.healthListen", raw.health_listen, "0.0.0.0:8080")?,
        tls_cert_file: raw.tls_cert_file,
        tls_key_file: raw.tls_key_file,
        tls_reload_interval: Duration::from_secs(interval),
        max_body_bytes: max_body,
        shutdown_grace: Duration::from_secs(grace),
        self_managed_tls,
    })
}

/// The longest self-managed certificate lifetime accepted, in days (about ten years).
pub(crate) const MAX_SELF_MANAGED_VALIDITY_DAYS: u32 = 3650;

fn build_self_managed(raw: RawSelfManagedTls) -> Result<Option<SelfManagedTls>> {
    const F: &str = "server.selfManagedTls";
    if raw.enabled != Some(true) {
        let stray = raw.service.is_some()
            || raw.webhook_configuration.is_some()
            || raw.validity_days.is_some()
            || raw.extra_sans.as_ref().is_some_and(|s| !s.is_empty());
        if stray {
            return Err(Error::config(
                format!("{F}.enabled"),
                "self-managed TLS settings are given but the mode is off: set enabled: true \
                 (--self-managed-tls) or remove them",
            ));
        }
        return Ok(None);
    }
    let service = raw.service.ok_or_else(|| {
        Error::config(
            format!("{F}.service"),
            "is required: the webhook Service's host name, <service>.<namespace>.svc \
             (--self-managed-tls-service)",
        )
    })?;
    let labels: Vec<&str> = service.split('.').collect();
    if labels.len() != 3
        || labels[2] != "svc"
        || !labels.iter().all(|l| check_dns1123_label(l).is_ok())
    {
        return Err(Error::config(
            format!("{F}.service"),
            format!("`{service}` is not <service>.<namespace>.svc (lowercase DNS labels)"),
        ));
    }
    let webhook_configuration = raw.webhook_configuration.ok_or_else(|| {
        Error::config(
            format!("{F}.webhookConfiguration"),
            "is required: the name of the webhook configurations whose caBundle the injector \
             patches (--self-managed-tls-webhook-configuration)",
        )
    })?;
    if check_dns1123_subdomain(&webhook_configuration).is_err() {
        return Err(Error::config(
            format!("{F}.webhookConfiguration"),
            format!("`{webhook_configuration}` is not a Kubernetes object name"),
        ));
    }
    let days = raw.validity_days.unwrap_or(365);
    if !(1..=MAX_SELF_MANAGED_VALIDITY_DAYS).contains(&days) {
        return Err(Error::config(
            format!("{F}.validityDays"),
            format!("must be between 1 and {MAX_SELF_MANAGED_VALIDITY_DAYS}"),
        ));
    }
    // The apiserver connects to <service>.<namespace>.svc; the shorter names cost nothing and
    // serve in-namespace clients and debugging with a port-forward.
    let mut sans = vec![
        labels[0].to_string(),
        format!("{}.{}", labels[0], labels[1]),
        service.clone(),
    ];
    for san in raw.extra_sans.unwrap_or_default() {
        if san.parse::<std::net::IpAddr>().is_err() && check_dns1123_subdomain(&san).is_err() {
            return Err(Error::config(
                format!("{F}.extraSans"),
                format!("`{san}` is neither an IP address nor a lowercase DNS name"),
            ));
        }
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(Some(SelfManagedTls {
        service,
        webhook_configuration,
        validity: Duration::from_secs(u64::from(days) * 86_400),
        sans,
    }))
}

fn check_id(field: &str, id: i64) -> Result<i64> {
    if id <= 0 || id > i64::from(u32::MAX) - 1 {
        return Err(Error::config(
            field,
            "must be a non-root id between 1 and 4294967294",
        ));
    }
    Ok(id)
}

fn check_token_expiration(field: &str, secs: i64) -> Result<i64> {
    if !(MIN_TOKEN_EXPIRATION_SECONDS..=86_400).contains(&secs) {
        return Err(Error::config(
            field,
            "must be between 600 and 86400 seconds (the apiserver refuses less than 600)",
        ));
    }
    Ok(secs)
}

fn check_plain(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::config(
            field,
            "must be non-empty, without whitespace or control characters",
        ));
    }
    Ok(())
}

/// Checks a Kubernetes quantity of the forms the injector writes (`16Mi`, `5m`, `0.5`, `1G`).
pub(crate) fn check_quantity(field: &str, q: &str) -> Result<()> {
    let digits_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(digits_end);
    let num_ok = !num.is_empty()
        && num.matches('.').count() <= 1
        && !num.starts_with('.')
        && !num.ends_with('.');
    const SUFFIXES: [&str; 14] = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if !num_ok || !SUFFIXES.contains(&suffix) {
        return Err(Error::config(
            field,
            format!("`{q}` is not a Kubernetes quantity like 16Mi, 5m or 0.5"),
        ));
    }
    Ok(())
}

fn build_sidecar(raw: RawSidecar) -> Result<SidecarSettings> {
    let image = raw.image.ok_or_else(|| {
        Error::config(
            "sidecar.image",
            "is required (the hush-sidecar image of this release)",
        )
    })?;
    check_plain("sidecar.image", &image)?;
    let pull = raw
        .image_pull_policy
        .unwrap_or_else(|| "IfNotPresent".to_string());
    if !["Always", "IfNotPresent", "Never"].contains(&pull.as_str()) {
        return Err(Error::config(
            "sidecar.imagePullPolicy",
            "must be Always, IfNotPresent or Never",
        ));
    }
    let resources = raw.resources.unwrap_or_else(|| RawResources {
        requests: BTreeMap::from([
            ("cpu".to_string(), "5m".to_string()),
            ("memory".to_string(), "16Mi".to_string()),
        ]),
        limits: BTreeMap::from([("memory".to_string(), "64Mi".to_string())]),
    });
    for (section, map) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        for (k, v) in map {
            if !["cpu", "memory", "ephemeral-storage"].contains(&k.as_str()) {
                return Err(Error::config(
                    format!("sidecar.resources.{section}.{k}"),
                    "only cpu, memory and ephemeral-storage are supported",
                ));
            }
            check_quantity(&format!("sidecar.resources.{section}.{k}"), v)?;
        }
    }
    let size = raw.secrets_size_limit.unwrap_or_else(|| "16Mi".to_string());
    check_quantity("sidecar.secretsSizeLimit", &size)?;
    Ok(SidecarSettings {
        image,
        image_pull_policy: pull,
        run_as_user: check_id(
            "sidecar.runAsUser",
            raw.run_as_user.unwrap_or(DEFAULT_SIDECAR_ID),
        )?,
        run_as_group: check_id(
            "sidecar.runAsGroup",
            raw.run_as_group.unwrap_or(DEFAULT_SIDECAR_ID),
        )?,
        resources,
        secrets_size_limit: size,
    })
}

fn check_ca(field: &str, pem: String) -> Result<String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::config(field, "is not a PEM certificate bundle"))?;
    if certs.is_empty() {
        return Err(Error::config(field, "holds no PEM certificate"));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Result<InjectorConfig> {
        RawConfig::from_yaml(yaml, "test.yaml")?.build()
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let c = build("sidecar:\n  image: hush-sidecar:0.1.0\n").expect("valid");
        assert_eq!(c.sidecar.run_as_user, 65532);
        assert_eq!(c.sidecar.secrets_size_limit, "16Mi");
        assert!(!c.pod_security.allow_fs_group);
        assert!(!c.pod_security.allow_share_process_namespace);
        assert_eq!(c.server.max_body_bytes, 3 * 1024 * 1024);
        assert_eq!(c.allowed_roles_for("any"), None);
    }

    #[test]
    fn unknown_field_is_named() {
        let e = build("sidecar:\n  image: x\n  imagee: y\n").expect_err("unknown field");
        assert!(e.to_string().contains("imagee"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            ("sidecar: {image: x, runAsUser: 0}", "sidecar.runAsUser"),
            (
                "sidecar: {image: x}\noperator: {metricsPort: 80}",
                "operator.metricsPort",
            ),
            (
                "sidecar: {image: x}\noperator: {minRefreshSeconds: 1}",
                "operator.minRefreshSeconds",
            ),
            (
                "sidecar: {image: x, secretsSizeLimit: lots}",
                "sidecar.secretsSizeLimit",
            ),
            (
                "sidecar: {image: x, imagePullPolicy: Sometimes}",
                "sidecar.imagePullPolicy",
            ),
            ("sidecar: {}", "sidecar.image"),
            (
                "sidecar: {image: x}\noperator: {vault: {addr: 'http://v:8200'}}",
                "operator.vault.addr",
            ),
            (
                "sidecar: {image: x}\noperator: {vault: {addr: 'https://v'}}\nvault: {tokenExpirationSeconds: 60}",
                "vault.tokenExpirationSeconds",
            ),
            (
                "sidecar: {image: x}\noperator: {vault: {addr: 'https://v', caPem: nope}}",
                "operator.vault.caPem",
            ),
            // The per-pod fields of OperatorSettings come from their own sections.
            (
                "sidecar: {image: x}\noperator: {allowedRoles: [app]}",
                "operator.allowedRoles",
            ),
            (
                "sidecar: {image: x}\nvault: {caFile: /nowhere}",
                "vault.caFile",
            ),
            (
                "sidecar: {image: x}\nallowedRoles: {Bad_NS: [a]}",
                "allowedRoles.Bad_NS",
            ),
            // A role the sidecar's parser would refuse fails at start, not at each admission.
            (
                "sidecar: {image: x}\nallowedRoles: {'*': ['*']}",
                "allowedRoles.*",
            ),
            (
                "sidecar: {image: x}\nserver: {listen: nowhere}",
                "server.listen",
            ),
            (
                "sidecar: {image: x, resources: {limits: {memory: big}}}",
                "sidecar.resources.limits.memory",
            ),
        ];
        for (yaml, field) in cases {
            let e = build(yaml).expect_err(yaml);
            assert!(e.to_string().contains(field), "{yaml}: {e}");
        }
    }

    #[test]
    fn allowed_roles_fall_back_to_star_then_nothing() {
        let c = build("sidecar: {image: x}\nallowedRoles: {team-a: [app], '*': [default]}\n")
            .expect("valid");
        assert_eq!(c.allowed_roles_for("team-a"), Some(vec!["app".to_string()]));
        assert_eq!(
            c.allowed_roles_for("other"),
            Some(vec!["default".to_string()])
        );
        let c = build("sidecar: {image: x}\nallowedRoles: {team-a: [app]}\n").expect("valid");
        assert_eq!(c.allowed_roles_for("other"), Some(vec![]));
    }

    #[test]
    fn self_managed_tls_is_validated_and_excludes_cert_files() {
        let c = build(
            "sidecar: {image: x}\nserver:\n  selfManagedTls:\n    enabled: true\n    service: hush.hush-system.svc\n    webhookConfiguration: hush\n    extraSans: ['127.0.0.1']\n",
        )
        .expect("valid");
        let sm = c.server.self_managed_tls.expect("self-managed");
        assert_eq!(sm.validity, Duration::from_secs(365 * 86_400));
        assert_eq!(
            sm.sans,
            [
                "hush",
                "hush.hush-system",
                "hush.hush-system.svc",
                "127.0.0.1"
            ]
        );
        assert!(c.server.tls_cert_file.is_none());

        let sm = "server:\n  selfManagedTls: {enabled: true, service: hush.ns.svc, webhookConfiguration: hush";
        let cases = [
            (
                format!("{sm}}}\n  tlsCertFile: /c\n  tlsKeyFile: /k\n"),
                "cannot be combined with tlsCertFile",
            ),
            (
                "server:\n  selfManagedTls: {enabled: true, webhookConfiguration: hush}\n".into(),
                "server.selfManagedTls.service",
            ),
            (
                "server:\n  selfManagedTls: {enabled: true, service: hush, webhookConfiguration: hush}\n"
                    .into(),
                "<service>.<namespace>.svc",
            ),
            (
                "server:\n  selfManagedTls: {enabled: true, service: hush.ns.svc}\n".into(),
                "server.selfManagedTls.webhookConfiguration",
            ),
            (
                format!("{sm}, validityDays: 0}}\n"),
                "server.selfManagedTls.validityDays",
            ),
            (
                format!("{sm}, extraSans: ['not a name']}}\n"),
                "server.selfManagedTls.extraSans",
            ),
            (
                "server:\n  selfManagedTls: {service: hush.ns.svc}\n".into(),
                "server.selfManagedTls.enabled",
            ),
            (
                format!("{sm}, validity: 3}}\n"),
                "validity",
            ),
        ];
        for (yaml, want) in cases {
            let yaml = format!("sidecar: {{image: x}}\n{yaml}");
            let e = build(&yaml).expect_err(&yaml);
            assert!(e.to_string().contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["16Mi", "5m", "0.5", "1", "2Gi", "100k"] {
            check_quantity("f", ok).expect(ok);
        }
        for bad in ["", "Mi", "1.2.3", "1MB", ".5", "1 Mi", "-1"] {
            assert!(check_quantity("f", bad).is_err(), "{bad}");
        }
    }
}
