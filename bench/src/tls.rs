//! TLS for the benchmarks, with the stack Hush uses (rustls on aws-lc-rs): a throwaway CA and a
//! leaf for `127.0.0.1` made in memory with rcgen (ECDSA P-256, like the test webhook's), and the
//! rustls server and client configs built from PEM. The webhook floor and the counting proxy serve
//! with [`server_config`]; the load drivers and the proxy's upstream side trust a CA with
//! [`client_config`].

use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A CA and a leaf for `127.0.0.1` and `localhost`, all PEM.
#[derive(Clone)]
pub struct Pki {
    /// The CA certificate clients trust.
    pub ca_pem: String,
    /// The leaf certificate.
    pub cert_pem: String,
    /// The leaf's private key (a throwaway, made for this run).
    pub key_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pki { .. }")
    }
}

impl Pki {
    /// A fresh CA and leaf.
    pub fn loopback() -> Result<Pki> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "hush bench CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?
            .signed_by(&key, &ca)?;
        Ok(Pki {
            ca_pem: ca.pem(),
            cert_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `ca.crt`, `tls.crt` and `tls.key` into `dir`.
    pub fn write(&self, dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.crt"), &self.ca_pem)?;
        std::fs::write(dir.join("tls.crt"), &self.cert_pem)?;
        std::fs::write(dir.join("tls.key"), &self.key_pem)?;
        Ok(())
    }
}

/// A server config (TLS 1.2 and 1.3, aws-lc-rs) serving `cert_pem`/`key_pem`, offering `alpn`.
pub fn server_config(cert_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("certificate PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("key PEM")?;
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// A client config trusting only the certificates in `ca_pem`, offering `alpn`.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.context("CA PEM")?)?;
    }
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build_from_a_fresh_pki() {
        let pki = Pki::loopback().unwrap();
        server_config(&pki.cert_pem, &pki.key_pem, &[b"http/1.1"]).unwrap();
        client_config(&pki.ca_pem, &[]).unwrap();
    }
}
