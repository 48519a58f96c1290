//! The sidecar's floor: the least a program can do to put N KV v2 secrets from OpenBao into files,
//! on the sidecar's own stack (tokio `current_thread`, reqwest 0.13 over rustls on aws-lc-rs,
//! serde_json). It reads a token from a file, GETs `secret/data/<prefix>/<name>` for each name on
//! one keep-alive connection, writes each `value` field to `<out>/<name>`, and then stays up: each
//! SIGHUP is one unchanged refresh cycle at its cheapest, a single `LIST
//! secret/detailed-metadata/<prefix>/` (one request, no values), until SIGTERM. No atomic swap,
//! no zeroizing, no retries, no metrics, no leases: what is left is what any such client pays.
//!
//! Usage: floor-vault --addr https://127.0.0.1:8200 --ca ca.pem --token-file token
//!                    --prefix bench-x --names s00,s01 --out DIR

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
struct Args {
    /// OpenBao's https:// address.
    #[arg(long)]
    addr: String,
    /// PEM CA that signs its certificate.
    #[arg(long)]
    ca: PathBuf,
    /// File holding the token.
    #[arg(long)]
    token_file: PathBuf,
    /// Secrets are `secret/<prefix>/<name>`.
    #[arg(long)]
    prefix: String,
    /// Comma-separated secret names.
    #[arg(long, value_delimiter = ',')]
    names: Vec<String>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = Args::parse();
    // Installed first: a SIGHUP before the handler would end the process.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let ca = std::fs::read(&a.ca).context("reading --ca")?;
    let http = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca)?)
        .build()?;
    let token = std::fs::read_to_string(&a.token_file).context("reading --token-file")?;
    let token = token.trim();
    for name in &a.names {
        let resp = http
            .get(format!("{}/v1/secret/data/{}/{name}", a.addr, a.prefix))
            .header("X-Vault-Token", token)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("reading {name}: HTTP {}", resp.status());
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await?)?;
        let value = v["data"]["data"]["value"]
            .as_str()
            .with_context(|| format!("{name} has no field value"))?;
        std::fs::write(a.out.join(name), value)?;
    }
    let list = reqwest::Method::from_bytes(b"LIST")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = hup.recv() => {
                let resp = http
                    .request(list.clone(), format!("{}/v1/secret/detailed-metadata/{}/", a.addr, a.prefix))
                    .header("X-Vault-Token", token)
                    .send()
                    .await?;
                let _: serde_json::Value = serde_json::from_slice(&resp.bytes().await?)?;
            }
        }
    }
}
