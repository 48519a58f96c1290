//! The injector config the end-to-end tests share, in one place so a change to the file's shape
//! is made once: the locally built sidecar image (never pulled), and the `operator:` section that
//! points the sidecar at the real OpenBao and moto of the test environment, with OpenBao's CA read
//! from its file (`vault.caFile`) as an operator would. Tests append what they vary (allowed
//! roles, pod-level permissions, a `server:` section).

use hush_config::{AwsSettings, VaultSettings};

use crate::env::TestEnv;

/// The stores a test's sidecars may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stores {
    /// The test environment's OpenBao, with the `vault` audience and its CA file.
    pub vault: bool,
    /// The test environment's moto, as AWS.
    pub aws: bool,
}

impl Stores {
    /// No store: `vault:` and `aws:` sources are refused.
    pub const NONE: Stores = Stores {
        vault: false,
        aws: false,
    };
    /// OpenBao only.
    pub const VAULT: Stores = Stores {
        vault: true,
        aws: false,
    };
    /// OpenBao and moto.
    pub const BOTH: Stores = Stores {
        vault: true,
        aws: true,
    };
}

/// The `sidecar:` section: the image `scripts/test-env` builds, never pulled.
pub const SIDECAR: &str = "sidecar:\n  image: hush-sidecar:dev\n  imagePullPolicy: Never\n";

/// The `sidecar:`, `operator:` and `vault:` sections of an injector config file for `stores`.
pub fn injector_yaml(env: &TestEnv, stores: Stores) -> String {
    let mut yaml = SIDECAR.to_string();
    if stores.vault || stores.aws {
        yaml.push_str("operator:\n");
    }
    if stores.vault {
        yaml.push_str(&format!(
            "  vault:\n    addr: {}\n    audience: vault\n",
            env.vault_addr
        ));
    }
    if stores.aws {
        yaml.push_str(&format!(
            "  aws:\n    region: {}\n    endpoint: {}\n",
            env.aws_region, env.aws_endpoint
        ));
    }
    if stores.vault {
        yaml.push_str(&format!(
            "vault:\n  caFile: {}\n",
            env.vault_cacert.display()
        ));
    }
    yaml
}

/// The typed `operator.vault` the injector builds from [`injector_yaml`], for tests that build a
/// `SidecarConfig` in code: `addr` is the test environment's OpenBao or a proxy in front of it.
pub fn vault_settings(env: &TestEnv, addr: &str) -> VaultSettings {
    VaultSettings {
        ca_pem: Some(env.vault_ca_pem()),
        audience: "vault".into(),
        ..VaultSettings::new(addr.to_string())
    }
}

/// The typed `operator.aws` the injector builds from [`injector_yaml`]: the test environment's
/// region, and `endpoint` (moto, or a proxy in front of it).
pub fn aws_settings(env: &TestEnv, endpoint: &str) -> AwsSettings {
    AwsSettings {
        endpoint: Some(endpoint.to_string()),
        ..AwsSettings::new(env.aws_region.clone())
    }
}
