//! Command-line flags of `hush-injector`. Each flag overrides the same field of the YAML config
//! file, so a Helm chart can ship one file and tweak a value per environment; the merged result goes
//! through the same [`RawConfig::build`] checks as the file alone. Kept in the library so the flag
//! names are tested and `main.rs` stays a thin shell.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;

use hush_config::{AwsSettings, VaultSettings};

use crate::config::{RawConfig, RawResources, RawSelfManagedTls};
use crate::error::{Error, Result};

/// `hush-injector`: the Hush admission webhook.
#[derive(Clone, Debug, Default, Parser)]
#[command(name = "hush-injector", version, about)]
pub struct Args {
    /// YAML config file (see the README's injector configuration reference).
    #[arg(long, env = "HUSH_INJECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTPS listen address for /mutate and /validate.
    #[arg(long)]
    pub listen: Option<String>,
    /// Plain-HTTP listen address for /healthz, /readyz and /metrics.
    #[arg(long)]
    pub health_listen: Option<String>,
    /// PEM certificate chain (reloaded when it changes).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (reloaded when it changes).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Make the serving certificate and its CA in memory and publish the CA in the caBundle of the
    /// webhook configurations (needs only `patch` on them). Excludes --tls-cert/--tls-key.
    #[arg(long)]
    pub self_managed_tls: bool,
    /// The webhook Service's host name for the certificate: <service>.<namespace>.svc.
    #[arg(long, value_name = "SERVICE.NAMESPACE.svc")]
    pub self_managed_tls_service: Option<String>,
    /// Name of the Mutating- and ValidatingWebhookConfiguration whose caBundle to patch.
    #[arg(long, value_name = "NAME")]
    pub self_managed_tls_webhook_configuration: Option<String>,
    /// Lifetime of the self-made CA and certificate in days (renewed at about 2/3 of it).
    #[arg(long, value_name = "DAYS")]
    pub self_managed_tls_validity_days: Option<u32>,
    /// Extra subject alternative name of the self-made certificate, repeatable (DNS name or IP).
    #[arg(long = "self-managed-tls-san", value_name = "DNS-OR-IP")]
    pub self_managed_tls_sans: Vec<String>,
    /// The hush-sidecar image to inject.
    #[arg(long)]
    pub sidecar_image: Option<String>,
    /// imagePullPolicy of the injected container.
    #[arg(long)]
    pub sidecar_pull_policy: Option<String>,
    /// UID of the injected container.
    #[arg(long)]
    pub sidecar_uid: Option<i64>,
    /// GID of the injected container.
    #[arg(long)]
    pub sidecar_gid: Option<i64>,
    /// Port of the sidecar's metrics endpoint.
    #[arg(long)]
    pub sidecar_metrics_port: Option<u16>,
    /// Container resource, repeatable: `requests.cpu=5m`, `limits.memory=64Mi`.
    #[arg(long = "sidecar-resource", value_name = "SECTION.NAME=QUANTITY")]
    pub sidecar_resources: Vec<String>,
    /// sizeLimit of the tmpfs secrets volume.
    #[arg(long)]
    pub secrets_size_limit: Option<String>,
    /// Vault/OpenBao address.
    #[arg(long)]
    pub vault_addr: Option<String>,
    /// File holding the CA bundle that signs Vault's certificate.
    #[arg(long)]
    pub vault_ca_file: Option<PathBuf>,
    /// Mount of Vault's kubernetes auth method.
    #[arg(long)]
    pub vault_auth_mount: Option<String>,
    /// Audience of the projected token the sidecar logs in to Vault with.
    #[arg(long)]
    pub vault_audience: Option<String>,
    /// expirationSeconds of that token (at least 600).
    #[arg(long)]
    pub token_expiration_seconds: Option<i64>,
    /// AWS region for Secrets Manager.
    #[arg(long)]
    pub aws_region: Option<String>,
    /// AWS endpoint override (tests and demos only).
    #[arg(long)]
    pub aws_endpoint: Option<String>,
    /// Vault roles a namespace may use, repeatable: `team-a=app,worker` (`*=default` for the rest).
    #[arg(long = "allowed-roles", value_name = "NAMESPACE=ROLE[,ROLE]")]
    pub allowed_roles: Vec<String>,
    /// Let the injector set fsGroup on pods that have none.
    #[arg(long)]
    pub allow_fs_group: bool,
    /// The fsGroup to set.
    #[arg(long)]
    pub fs_group: Option<i64>,
    /// Allow signal notifications (they need shareProcessNamespace).
    #[arg(long)]
    pub allow_share_process_namespace: bool,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

impl Args {
    /// Reads the config file (if any) and applies the flags over it.
    pub fn load(&self) -> Result<RawConfig> {
        let raw = match &self.config {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
        self.apply(raw)
    }

    /// Applies the flags over a parsed file.
    pub fn apply(&self, mut raw: RawConfig) -> Result<RawConfig> {
        fn set<T: Clone>(dst: &mut Option<T>, src: &Option<T>) {
            if let Some(v) = src {
                *dst = Some(v.clone());
            }
        }
        set(&mut raw.server.listen, &self.listen);
        set(&mut raw.server.health_listen, &self.health_listen);
        set(&mut raw.server.tls_cert_file, &self.tls_cert);
        set(&mut raw.server.tls_key_file, &self.tls_key);
        let self_managed_flags = self.self_managed_tls
            || self.self_managed_tls_service.is_some()
            || self.self_managed_tls_webhook_configuration.is_some()
            || self.self_managed_tls_validity_days.is_some()
            || !self.self_managed_tls_sans.is_empty();
        if self_managed_flags {
            let sm = raw
                .server
                .self_managed_tls
                .get_or_insert_with(RawSelfManagedTls::default);
            if self.self_managed_tls {
                sm.enabled = Some(true);
            }
            set(&mut sm.service, &self.self_managed_tls_service);
            set(
                &mut sm.webhook_configuration,
                &self.self_managed_tls_webhook_configuration,
            );
            set(&mut sm.validity_days, &self.self_managed_tls_validity_days);
            if !self.self_managed_tls_sans.is_empty() {
                sm.extra_sans
                    .get_or_insert_with(Vec::new)
                    .extend(self.self_managed_tls_sans.iter().cloned());
            }
        }
        set(&mut raw.sidecar.image, &self.sidecar_image);
        set(
            &mut raw.sidecar.image_pull_policy,
            &self.sidecar_pull_policy,
        );
        set(&mut raw.sidecar.run_as_user, &self.sidecar_uid);
        set(&mut raw.sidecar.run_as_group, &self.sidecar_gid);
        if let Some(port) = self.sidecar_metrics_port {
            raw.operator.metrics_port = port;
        }
        set(
            &mut raw.sidecar.secrets_size_limit,
            &self.secrets_size_limit,
        );
        if !self.sidecar_resources.is_empty() {
            let res = raw
                .sidecar
                .resources
                .get_or_insert_with(RawResources::default);
            for item in &self.sidecar_resources {
                let (key, value) = item.split_once('=').ok_or_else(|| {
                    Error::config(
                        "--sidecar-resource",
                        format!("`{item}` is not SECTION.NAME=QUANTITY"),
                    )
                })?;
                let (section, name) = key.split_once('.').ok_or_else(|| {
                    Error::config(
                        "--sidecar-resource",
                        format!("`{key}` is not requests.NAME or limits.NAME"),
                    )
                })?;
                let map = match section {
                    "requests" => &mut res.requests,
                    "limits" => &mut res.limits,
                    _ => {
                        return Err(Error::config(
                            "--sidecar-resource",
                            format!("`{section}` is not requests or limits"),
                        ));
                    }
                };
                map.insert(name.to_string(), value.to_string());
            }
        }
        let vault_flags = self.vault_addr.is_some()
            || self.vault_ca_file.is_some()
            || self.vault_audience.is_some()
            || self.vault_auth_mount.is_some();
        if vault_flags {
            // Without an address from the file or a flag, the empty one fails validation by name.
            let v = raw
                .operator
                .vault
                .get_or_insert_with(|| VaultSettings::new(String::new()));
            if let Some(addr) = &self.vault_addr {
                v.addr.clone_from(addr);
            }
            if self.vault_ca_file.is_some() {
                v.ca_pem = None;
            }
            if let Some(audience) = &self.vault_audience {
                v.audience.clone_from(audience);
            }
            if let Some(mount) = &self.vault_auth_mount {
                v.auth_mount.clone_from(mount);
            }
        }
        set(&mut raw.vault.ca_file, &self.vault_ca_file);
        set(
            &mut raw.vault.token_expiration_seconds,
            &self.token_expiration_seconds,
        );
        if self.aws_region.is_some() || self.aws_endpoint.is_some() {
            let a = raw
                .operator
                .aws
                .get_or_insert_with(|| AwsSettings::new(String::new()));
            if let Some(region) = &self.aws_region {
                a.region.clone_from(region);
            }
            set(&mut a.endpoint, &self.aws_endpoint);
        }
        if !self.allowed_roles.is_empty() {
            let map = raw.allowed_roles.get_or_insert_with(BTreeMap::new);
            for item in &self.allowed_roles {
                let (ns, roles) = item.split_once('=').ok_or_else(|| {
                    Error::config(
                        "--allowed-roles",
                        format!("`{item}` is not NAMESPACE=ROLE[,ROLE]"),
                    )
                })?;
                let roles = roles
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .collect();
                map.insert(ns.to_string(), roles);
            }
        }
        if self.allow_fs_group {
            raw.pod_security.allow_fs_group = Some(true);
        }
        set(&mut raw.pod_security.fs_group, &self.fs_group);
        if self.allow_share_process_namespace {
            raw.pod_security.allow_share_process_namespace = Some(true);
        }
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let args = Args::parse_from([
            "hush-injector",
            "--sidecar-image",
            "img:2",
            "--vault-addr",
            "https://vault:8200",
            "--allowed-roles",
            "team-a=app,worker",
            "--sidecar-resource",
            "limits.memory=32Mi",
            "--allow-share-process-namespace",
        ]);
        let file = RawConfig::from_yaml(
            "sidecar: {image: img:1}\noperator: {metricsPort: 9999}\n",
            "f",
        )
        .expect("yaml");
        let c = args.apply(file).expect("apply").build().expect("build");
        assert_eq!(c.sidecar.image, "img:2");
        assert_eq!(c.operator.metrics_port, 9999);
        assert_eq!(
            c.operator.vault.as_ref().map(|v| v.addr.as_str()),
            Some("https://vault:8200")
        );
        assert_eq!(
            c.allowed_roles_for("team-a"),
            Some(vec!["app".to_string(), "worker".to_string()])
        );
        assert_eq!(
            c.sidecar.resources.limits.get("memory").map(String::as_str),
            Some("32Mi")
        );
        assert!(c.pod_security.allow_share_process_namespace);
    }

    #[test]
    fn self_managed_flags_as_the_chart_passes_them() {
        let args = Args::parse_from([
            "hush-injector",
            "--self-managed-tls",
            "--self-managed-tls-service=hush.hush-system.svc",
            "--self-managed-tls-webhook-configuration=hush",
            "--self-managed-tls-validity-days=30",
            "--self-managed-tls-san=127.0.0.1",
        ]);
        let file = RawConfig::from_yaml("sidecar: {image: img:1}\n", "f").expect("yaml");
        let c = args.apply(file).expect("apply").build().expect("build");
        let sm = c.server.self_managed_tls.expect("self-managed");
        assert_eq!(sm.webhook_configuration, "hush");
        assert_eq!(sm.validity, std::time::Duration::from_secs(30 * 86_400));
        assert!(sm.sans.contains(&"127.0.0.1".to_string()));

        let args = Args::parse_from([
            "hush-injector",
            "--self-managed-tls",
            "--self-managed-tls-service=hush.ns.svc",
            "--self-managed-tls-webhook-configuration=hush",
            "--tls-cert=/c",
            "--tls-key=/k",
        ]);
        let file = RawConfig::from_yaml("sidecar: {image: x}\n", "f").expect("yaml");
        let e = args
            .apply(file)
            .and_then(RawConfig::build)
            .expect_err("exclusive");
        assert!(e.to_string().contains("cannot be combined"), "{e}");
    }

    #[test]
    fn malformed_flag_is_named() {
        let args = Args::parse_from(["hush-injector", "--allowed-roles", "nope"]);
        let e = args.apply(RawConfig::default()).expect_err("bad flag");
        assert!(e.to_string().contains("--allowed-roles"), "{e}");
    }
}
