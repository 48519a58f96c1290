//! The test environment's coordinates. `scripts/test-env up` starts the real servers and writes their
//! exports to `.cache/run/env.sh`; tests read the process environment first and fall back to that
//! file, so `cargo test` works both from `scripts/test` and by hand after `scripts/test-env up`. When a
//! server is missing, a test fails with a message that says how to start it: it never skips silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// What every end-to-end test may need, read from `scripts/test-env env`.
#[derive(Clone, Debug)]
pub struct TestEnv {
    /// Path to an admin kubeconfig for the real kube-apiserver.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>` of the kube-apiserver.
    pub kube_server: String,
    /// PEM file of the CA that signed the apiserver's serving certificate.
    pub kube_ca: PathBuf,
    /// Static admin bearer token (test only).
    pub kube_token: String,
    /// `https://127.0.0.1:<port>` of OpenBao.
    pub vault_addr: String,
    /// PEM file of OpenBao's dev-tls CA.
    pub vault_cacert: PathBuf,
    /// OpenBao dev root token (test only).
    pub vault_token: String,
    /// `http://127.0.0.1:<port>` of the moto server (Secrets Manager and STS).
    pub aws_endpoint: String,
    /// AWS region the tests use with moto.
    pub aws_region: String,
    /// `postgres://...` DSN of the superuser on the test PostgreSQL.
    pub pg_dsn: String,
    /// Host and port of PostgreSQL, as OpenBao's database engine sees it.
    pub pg_hostport: String,
    /// The reference `age` CLI.
    pub age_bin: PathBuf,
    /// The `bao` binary (server and agent).
    pub bao_bin: PathBuf,
    /// The `kubectl` binary matching the apiserver.
    pub kubectl: PathBuf,
    /// The `helm` binary, if built.
    pub helm: Option<PathBuf>,
    /// Repository root.
    pub root: PathBuf,
}

const HINT: &str =
    "start the real servers with `scripts/test-env up` (scripts/test does this for you)";

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("export ") else {
            continue;
        };
        let Some((k, v)) = rest.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .unwrap_or(v);
        out.insert(k.trim().to_string(), v.to_string());
    }
    out
}

impl TestEnv {
    /// Loads the environment, panicking with a clear message (this is test code) if the servers
    /// were never started.
    pub fn load() -> TestEnv {
        match Self::try_load() {
            Ok(env) => env,
            Err(missing) => panic!("test environment variable {missing} is not set: {HINT}"),
        }
    }

    /// Loads the environment, returning the name of the first missing variable.
    pub fn try_load() -> Result<TestEnv, String> {
        let root = repo_root();
        let file = root.join(".cache/run/env.sh");
        let from_file = std::fs::read_to_string(&file)
            .map(|t| parse_env_file(&t))
            .unwrap_or_default();
        let get = |k: &str| -> Result<String, String> {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| from_file.get(k).cloned())
                .ok_or_else(|| k.to_string())
        };
        Ok(TestEnv {
            kubeconfig: get("KUBECONFIG")?.into(),
            kube_server: get("HUSH_KUBE_SERVER")?,
            kube_ca: get("HUSH_KUBE_CA")?.into(),
            kube_token: get("HUSH_KUBE_TOKEN")?,
            vault_addr: get("VAULT_ADDR")?,
            vault_cacert: get("VAULT_CACERT")?.into(),
            vault_token: get("VAULT_TOKEN")?,
            aws_endpoint: get("HUSH_AWS_ENDPOINT")?,
            aws_region: get("AWS_REGION")?,
            pg_dsn: get("HUSH_PG_DSN")?,
            pg_hostport: get("HUSH_PG_HOSTPORT")?,
            age_bin: get("HUSH_AGE_BIN")?.into(),
            bao_bin: get("HUSH_BAO_BIN")?.into(),
            kubectl: get("HUSH_KUBECTL")?.into(),
            helm: get("HUSH_HELM").ok().map(PathBuf::from),
            root,
        })
    }

    /// Reads the kube CA PEM.
    pub fn kube_ca_pem(&self) -> String {
        std::fs::read_to_string(&self.kube_ca)
            .unwrap_or_else(|e| panic!("read {}: {e}; {HINT}", self.kube_ca.display()))
    }

    /// Reads the OpenBao CA PEM.
    pub fn vault_ca_pem(&self) -> String {
        std::fs::read_to_string(&self.vault_cacert)
            .unwrap_or_else(|e| panic!("read {}: {e}; {HINT}", self.vault_cacert.display()))
    }
}

/// A fresh, unique Kubernetes name (namespaces never finish deleting without a controller-manager,
/// so every test uses its own).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos & 0xfffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_are_parsed_with_quotes() {
        let m = parse_env_file("export A='x y'\nexport B=\"z\"\n# c\nexport C=plain\n");
        assert_eq!(m["A"], "x y");
        assert_eq!(m["B"], "z");
        assert_eq!(m["C"], "plain");
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
