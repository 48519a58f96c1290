//! Setting up OpenBao for a benchmark run through its HTTP API with the dev server's root token:
//! KV v2 secrets under a fresh prefix, a read-only policy for them (data, metadata and OpenBao's
//! `detailed-metadata` LIST, as the README's policy), and child tokens with that policy, minted
//! before any clock starts. The client is reqwest over rustls, trusting OpenBao's CA file only.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// An admin client of the test environment's OpenBao.
pub struct Bao {
    http: reqwest::Client,
    addr: String,
    token: String,
}

impl std::fmt::Debug for Bao {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bao({})", self.addr)
    }
}

impl Bao {
    /// A client for `addr`, trusting `ca_file`, acting with `token`.
    pub fn new(addr: &str, ca_file: &Path, token: &str) -> Result<Bao> {
        let pem =
            std::fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)?;
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .tls_certs_only(certs)
            .build()?;
        Ok(Bao {
            http,
            addr: addr.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!(
                "{method} {path}: HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// Writes a KV v2 secret at `secret/<path>`.
    pub async fn kv_put(&self, path: &str, data: &BTreeMap<String, String>) -> Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("secret/data/{path}"),
            Some(json!({ "data": data })),
        )
        .await?;
        Ok(())
    }

    /// Writes `name` as a policy that reads every KV v2 secret under `secret/<prefix>/`.
    pub async fn read_policy(&self, name: &str, prefix: &str) -> Result<()> {
        let hcl = format!(
            "path \"secret/data/{prefix}/*\" {{ capabilities = [\"read\"] }}\n\
             path \"secret/metadata/{prefix}/*\" {{ capabilities = [\"read\"] }}\n\
             path \"secret/detailed-metadata/{prefix}/*\" {{ capabilities = [\"list\"] }}\n\
             path \"secret/detailed-metadata/{prefix}/\" {{ capabilities = [\"list\"] }}\n"
        );
        self.call(
            reqwest::Method::PUT,
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": hcl })),
        )
        .await?;
        Ok(())
    }

    /// A new token with `policy` (no default policy beyond it), valid for an hour.
    pub async fn token(&self, policy: &str) -> Result<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "auth/token/create",
                Some(json!({ "policies": [policy], "ttl": "1h" })),
            )
            .await?;
        v["auth"]["client_token"]
            .as_str()
            .map(str::to_string)
            .context("auth/token/create returned no token")
    }

    /// Creates `n` secrets `secret/<prefix>/sNN` with one field `value` (a fresh random hex
    /// string) and the read policy `<prefix>`; returns file name -> value.
    pub async fn seed(&self, prefix: &str, n: usize) -> Result<BTreeMap<String, String>> {
        let mut values = BTreeMap::new();
        for i in 0..n {
            let name = format!("s{i:02}");
            let v = random_hex(16);
            self.kv_put(
                &format!("{prefix}/{name}"),
                &BTreeMap::from([("value".to_string(), v.clone())]),
            )
            .await?;
            values.insert(name, v);
        }
        self.read_policy(prefix, prefix).await?;
        Ok(values)
    }
}

/// `bytes` random bytes as lowercase hex (synthetic benchmark values).
pub fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    for b in crate::configs::random_bytes(bytes) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A fresh prefix for one run's secrets and policy.
pub fn fresh_prefix() -> String {
    format!("bench-{}", random_hex(4))
}
