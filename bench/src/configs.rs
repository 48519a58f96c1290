//! The sidecar configs of the benchmarks, built with the typed schema (`hush_config`'s
//! `SidecarConfig`, serialised with its own `to_json` into `HUSH_CONFIG`) instead of hand-written
//! JSON, so a schema change breaks the benchmark at compile time. Each config is what the injector
//! would build for the equivalent annotations; the operator part points at the benchmark's proxy
//! or store and allows the short refresh the benchmarks drive.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hush_config::SidecarConfig;
use hush_config::{
    AwsSettings, AwsStage, FileSpec, Format, OperatorSettings, SourceRef, VaultAuth, VaultSettings,
};

/// The namespace the benchmark sidecars run in.
pub const NAMESPACE: &str = "bench";
/// The credentials Secret name (its `token` key is a file under `HUSH_ROOT`).
pub const CREDENTIALS_SECRET: &str = "bench-token";

/// Token auth to Vault at `addr` (trusting `ca_pem`), one raw file per name in `names`, each the
/// field `value` of the KV v2 secret `secret/<prefix>/<name>`. Refresh every 600 s (the benchmark
/// drives cycles with SIGHUP); no revocation on shutdown.
pub fn vault_kv(prefix: &str, names: &[String], addr: &str, ca_pem: &str) -> SidecarConfig {
    let operator = OperatorSettings {
        vault: Some(VaultSettings {
            ca_pem: Some(ca_pem.to_string()),
            ..VaultSettings::new(addr.to_string())
        }),
        max_refresh: Duration::from_secs(3600),
        ..OperatorSettings::default()
    };
    SidecarConfig {
        auth: VaultAuth::Token,
        credentials_secret: Some(CREDENTIALS_SECRET.to_string()),
        refresh: Duration::from_secs(600),
        revoke_on_shutdown: false,
        files: names
            .iter()
            .map(|n| FileSpec {
                name: n.clone(),
                source: Some(SourceRef::Vault {
                    path: format!("secret/{prefix}/{n}"),
                    field: Some("value".into()),
                    version: None,
                }),
                format: Format::Raw,
                template: None,
                mode: operator.default_file_mode(),
            })
            .collect(),
        ..SidecarConfig::defaults(NAMESPACE, &operator)
    }
}

/// AWS Secrets Manager at `endpoint`: one raw file per secret id, the JSON key `json_key` of the
/// `AWSCURRENT` stage; refresh every `refresh`.
pub fn aws(
    ids: &BTreeMap<String, String>,
    json_key: &str,
    region: &str,
    endpoint: &str,
    refresh: Duration,
) -> SidecarConfig {
    let operator = OperatorSettings {
        aws: Some(AwsSettings {
            endpoint: Some(endpoint.to_string()),
            ..AwsSettings::new(region.to_string())
        }),
        min_refresh: refresh,
        ..OperatorSettings::default()
    };
    SidecarConfig {
        refresh,
        files: ids
            .iter()
            .map(|(file, id)| FileSpec {
                name: file.clone(),
                source: Some(SourceRef::Aws {
                    id: id.clone(),
                    json_key: Some(json_key.to_string()),
                    stage: AwsStage::default(),
                }),
                format: Format::Raw,
                template: None,
                mode: operator.default_file_mode(),
            })
            .collect(),
        ..SidecarConfig::defaults(NAMESPACE, &operator)
    }
}

/// The `hush-sidecar` command for `cfg` under the private root `root` (its `hush/secrets`,
/// `hush/state` and `hush/credentials` directories), metrics on `metrics` (a loopback address),
/// logging warnings only. With `token`, writes it as the credentials Secret's `token` key first.
pub fn sidecar_command(
    mut cmd: Command,
    cfg: &SidecarConfig,
    root: &Path,
    metrics: std::net::SocketAddr,
    token: Option<&str>,
) -> anyhow::Result<Command> {
    let creds = root.join("hush/credentials");
    std::fs::create_dir_all(&creds)?;
    if let Some(t) = token {
        std::fs::write(creds.join("token"), t)?;
    }
    cmd.env_clear()
        .env(hush_contract::env::CONFIG, cfg.to_json())
        .env(hush_contract::env::ROOT, root)
        .env(hush_contract::env::METRICS_ADDR, metrics.to_string())
        .env(hush_contract::env::LOG, "warn")
        .env("PATH", "/usr/bin:/bin");
    Ok(cmd)
}

/// The secrets directory of a sidecar run under `root`.
pub fn secrets_dir(root: &Path) -> std::path::PathBuf {
    root.join("hush/secrets")
}

/// The started marker of a sidecar run under `root`.
pub fn started_marker(root: &Path) -> std::path::PathBuf {
    root.join("hush/state/started")
}

/// `n` random bytes (synthetic benchmark values), from aws-lc-rs's system RNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut buf)
        .is_err()
    {
        // Never expected; the values only need to differ, not to be secret.
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    }
    buf
}

/// A Kubernetes Secret manifest `namespace/name` (YAML, `data` in base64) holding `values`.
pub fn secret_manifest(namespace: &str, name: &str, values: &[(String, Vec<u8>)]) -> String {
    use base64::Engine as _;
    let mut s = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\ntype: Opaque\ndata:\n"
    );
    for (k, v) in values {
        s.push_str(&format!(
            "  {k}: {}\n",
            base64::engine::general_purpose::STANDARD.encode(v)
        ));
    }
    s
}

/// The sealer benchmark's Secret: `n` keys `key-0000`.. of `size` random bytes each.
pub fn sealer_values(n: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| (format!("key-{i:04}"), random_bytes(size)))
        .collect()
}

/// The values' bytes one after another: what the `age` floor encrypts, the same plaintext as the
/// sealed Secret's.
pub fn write_concatenated(path: &Path, values: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    std::fs::write(
        path,
        values
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect::<Vec<u8>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_pass_the_sidecars_own_check() {
        let pki = crate::tls::Pki::loopback().unwrap();
        let names: Vec<String> = (0..10).map(|i| format!("s{i:02}")).collect();
        let v = vault_kv("bench-x", &names, "https://127.0.0.1:8200", &pki.ca_pem);
        SidecarConfig::from_json(&v.to_json()).unwrap();
        let ids = BTreeMap::from([("s00".to_string(), "bench/s00".to_string())]);
        let a = aws(
            &ids,
            "password",
            "us-east-1",
            "http://127.0.0.1:5000",
            Duration::from_secs(5),
        );
        SidecarConfig::from_json(&a.to_json()).unwrap();
    }
}
