//! `hush_contract` is what the three programs agree on without sharing code paths: the names the
//! injector writes into a pod spec and the sidecar reads back (container, volumes, mount paths, env
//! vars, subcommands, token audiences, the status annotation), the Secret that holds a namespace's
//! age identity (written by `hush keygen`, mounted by the injector, read by the sidecar), and the
//! Kubernetes naming rules all three enforce ([`names`]). It is a crate of its own, with no
//! dependencies, so that the injector, the sealed format and the annotation parser can all import it
//! without linking any secret-store client; a literal copy of one of these names anywhere else is a
//! bug.

pub mod names;

/// Prefix of every annotation Hush reads or writes.
pub const ANNOTATION_PREFIX: &str = "hush.dev/";
/// Written by the injector on the pods it injected; the parser ignores it.
pub const STATUS: &str = "hush.dev/status";
/// Value of [`STATUS`] after injection.
pub const STATUS_INJECTED: &str = "injected";

/// Name of the injected container.
pub const SIDECAR_CONTAINER: &str = "hush-sidecar";
/// The sidecar binary in the sidecar image (the container's command).
pub const SIDECAR_BINARY: &str = "hush-sidecar";
/// Name of the sidecar's metrics port in the container spec.
pub const METRICS_PORT_NAME: &str = "hush-metrics";

/// The Secret holding a namespace's age identity (made by `hush keygen --namespace NS`).
pub const IDENTITY_SECRET: &str = "hush-identity";
/// Key of the identity inside [`IDENTITY_SECRET`].
pub const IDENTITY_KEY: &str = "identity";

/// Default audience of the projected token for Vault's kubernetes auth (the Vault role must
/// expect it); the operator may choose another.
pub const VAULT_AUDIENCE: &str = "vault";
/// Audience of the projected web-identity token that AWS STS accepts.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// `AWS_ROLE_SESSION_NAME` the injector sets with a role to assume.
pub const AWS_SESSION_NAME: &str = "hush-sidecar";

/// The `hush-sidecar` subcommands the pod spec invokes.
pub mod subcommand {
    /// Native sidecar: fetch, write, mark started, refresh until SIGTERM.
    pub const RUN: &str = "run";
    /// Init container (`hush.dev/mode: init-only`): fetch, write, exit.
    pub const ONCE: &str = "once";
    /// The exec startup probe.
    pub const PROBE: &str = "probe";
    /// Parse and validate `HUSH_CONFIG`, then exit.
    pub const CHECK_CONFIG: &str = "check-config";
}

/// Env vars the injector sets on the sidecar container.
pub mod env {
    /// The versioned `SidecarConfig` JSON.
    pub const CONFIG: &str = "HUSH_CONFIG";
    /// The pod's name (downward API `metadata.name`).
    pub const POD_NAME: &str = "HUSH_POD_NAME";
    /// The pod's namespace (downward API `metadata.namespace`).
    pub const POD_NAMESPACE: &str = "HUSH_POD_NAMESPACE";
    /// The pod's ServiceAccount (downward API `spec.serviceAccountName`), for the audit trail.
    pub const SERVICE_ACCOUNT: &str = "HUSH_SERVICE_ACCOUNT";
    /// The node the pod runs on (downward API `spec.nodeName`), for the audit trail.
    pub const NODE_NAME: &str = "HUSH_NODE_NAME";
    /// The projected STS token, read by the AWS SDK's web-identity provider.
    pub const AWS_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
    /// The role to assume with web identity (`hush.dev/aws-role-arn`).
    pub const AWS_ROLE_ARN: &str = "AWS_ROLE_ARN";
    /// The STS session name.
    pub const AWS_ROLE_SESSION_NAME: &str = "AWS_ROLE_SESSION_NAME";
    /// The operator's region.
    pub const AWS_REGION: &str = "AWS_REGION";
    /// The operator's endpoint override (tests and the demo).
    pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
    /// The sidecar's log filter (`tracing` env-filter syntax); also the `hush` CLI's.
    pub const LOG: &str = "HUSH_LOG";
    /// Tests and benchmarks only: re-roots every fixed path of the sidecar under this directory.
    pub const ROOT: &str = "HUSH_ROOT";
    /// Tests and benchmarks only: the metrics listener's `<ip>:<port>` instead of the operator's
    /// port on all addresses.
    pub const METRICS_ADDR: &str = "HUSH_METRICS_ADDR";
}

/// Volumes the injector adds. Pods may not use the [`RESERVED_PREFIX`](volumes::RESERVED_PREFIX).
pub mod volumes {
    /// Prefix of every volume the injector adds.
    pub const RESERVED_PREFIX: &str = "hush-";
    /// The tmpfs secrets volume.
    pub const SECRETS: &str = "hush-secrets";
    /// The sidecar's private state volume.
    pub const STATE: &str = "hush-state";
    /// The projected Vault token.
    pub const TOKEN: &str = "hush-token";
    /// The projected STS token.
    pub const AWS_TOKEN: &str = "hush-aws-token";
    /// The namespace's age identity Secret.
    pub const IDENTITY: &str = "hush-identity";
    /// The AppRole/token credentials Secret.
    pub const CREDENTIALS: &str = "hush-credentials";
    /// Prefix of the sealed ConfigMap volumes (`hush-sealed-0`, ...).
    pub const SEALED_PREFIX: &str = "hush-sealed-";
}

/// Fixed paths inside the sidecar container (the injector mounts volumes there).
pub mod paths {
    /// The tmpfs secrets volume (read-write in the sidecar only).
    pub const SECRETS_DIR: &str = "/hush/secrets";
    /// The sidecar's private state volume (started marker).
    pub const STATE_DIR: &str = "/hush/state";
    /// The projected service-account token for Vault.
    pub const TOKEN_FILE: &str = "/hush/token/token";
    /// The projected service-account token for AWS STS (web identity).
    pub const AWS_TOKEN_FILE: &str = "/hush/aws-token/token";
    /// The Secret named by `hush.dev/vault-auth-secret` (AppRole ids or a static token).
    pub const CREDENTIALS_DIR: &str = "/hush/credentials";
    /// The namespace's [`IDENTITY_SECRET`](crate::IDENTITY_SECRET), key
    /// [`IDENTITY_KEY`](crate::IDENTITY_KEY).
    pub const IDENTITY_FILE: &str = "/hush/identity/identity";
    /// Sealed ConfigMaps: `sealed:<cm>/<key>` is read from `SEALED_DIR/<cm>/<key>`.
    pub const SEALED_DIR: &str = "/hush/sealed";
    /// Where the app containers see the files unless `hush.dev/mount-path` says otherwise.
    pub const DEFAULT_APP_MOUNT_PATH: &str = "/var/run/secrets/hush";
}

/// `hush.dev/env`: the launcher that puts secret values into an app's environment (docs/env.md).
/// The sidecar copies the launcher from beside its own binary into the root of the secrets volume
/// and writes the spec next to it; the injector makes the chosen containers start through it. Both
/// names begin with a single `.`, which no secret file name may (they start with a letter or digit)
/// and which the atomic writer's cleanup (`..`-prefixed names only) leaves alone.
pub mod launch {
    /// The launcher binary, beside `hush-sidecar` in the sidecar image (`/usr/local/bin`).
    pub const BINARY: &str = "hush-launch";
    /// The launcher in the secrets volume root (mode 0555).
    pub const FILE: &str = ".hush-launch";
    /// The launch spec in the secrets volume root (mode 0444): one `NAME=<file>` line per variable.
    pub const SPEC_FILE: &str = ".hush-env";
    /// The argument between the launcher's own arguments and the app's command.
    pub const SEPARATOR: &str = "--";
    /// Largest value the launcher puts into the environment: Linux refuses any one `NAME=value`
    /// string over 128 KiB (`MAX_ARG_STRLEN`) with E2BIG.
    pub const MAX_VALUE_BYTES: usize = 128 * 1024 - 256;
}

/// Key names inside the credentials Secret mounted at [`paths::CREDENTIALS_DIR`].
pub mod credential_keys {
    /// AppRole `role_id`.
    pub const ROLE_ID: &str = "role_id";
    /// AppRole `secret_id`.
    pub const SECRET_ID: &str = "secret_id";
    /// A static Vault token.
    pub const TOKEN: &str = "token";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_volume_is_reserved_and_paths_agree_with_the_identity_key() {
        for v in [
            volumes::SECRETS,
            volumes::STATE,
            volumes::TOKEN,
            volumes::AWS_TOKEN,
            volumes::IDENTITY,
            volumes::CREDENTIALS,
            volumes::SEALED_PREFIX,
        ] {
            assert!(v.starts_with(volumes::RESERVED_PREFIX), "{v}");
        }
        assert!(paths::IDENTITY_FILE.ends_with(&format!("/{IDENTITY_KEY}")));
        assert!(STATUS.starts_with(ANNOTATION_PREFIX));
    }
}
