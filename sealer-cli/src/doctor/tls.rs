//! The webhook TLS check: dial one ready endpoint of the webhook's Service and verify its serving
//! certificate with the webhook's caBundle as the only trust anchor and the Service's DNS name as
//! the server name, which is what the apiserver does before every admission call. A handshake
//! refused over the certificate is a finding; an endpoint that cannot be reached from where doctor
//! runs (pod IPs often are not) is only a note, so a laptop outside the cluster network gets an
//! honest "not checked" instead of a false alarm. rustls with aws-lc-rs, the tree's one TLS stack.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::snapshot::TlsProbe;

/// How long one dial and handshake may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// One certificate of a caBundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BundleCert {
    pub(crate) subject: String,
    /// `notAfter`, seconds since the epoch.
    pub(crate) not_after: i64,
}

/// The parsable certificates of a PEM caBundle.
pub(crate) fn bundle_certificates(pem: &[u8]) -> Vec<BundleCert> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .filter_map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
            Some(BundleCert {
                subject: cert.subject().to_string(),
                not_after: cert.validity().not_after.timestamp(),
            })
        })
        .collect()
}

/// `notAfter` of a DER certificate.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Dials `addr` and verifies the serving certificate for `server_name` with `ca_bundle` (PEM).
pub(crate) async fn probe(addr: &str, server_name: &str, ca_bundle: &[u8]) -> TlsProbe {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_bundle).filter_map(Result::ok) {
        // A certificate rustls cannot use as an anchor is skipped; the handshake then says so.
        let _ = roots.add(der);
    }
    if roots.is_empty() {
        return TlsProbe::NotTried("the caBundle holds no usable certificate".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
        Err(e) => return TlsProbe::NotTried(format!("TLS setup failed: {e}")),
    };
    let Ok(name) = ServerName::try_from(server_name.to_string()) else {
        return TlsProbe::NotTried(format!("{server_name} is not a valid server name"));
    };
    let unreachable = |reason: String| TlsProbe::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    let tcp = match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return unreachable(e.to_string()),
        Err(_) => return unreachable(format!("no answer within {} s", DIAL_TIMEOUT.as_secs())),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(DIAL_TIMEOUT, connector.connect(name, tcp)).await {
        Err(_) => unreachable(format!(
            "no TLS handshake within {} s",
            DIAL_TIMEOUT.as_secs()
        )),
        Ok(Ok(stream)) => {
            let leaf = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| not_after(c.as_ref()));
            match leaf {
                Some(not_after) => TlsProbe::Verified {
                    addr: addr.to_string(),
                    not_after,
                },
                None => TlsProbe::Rejected {
                    addr: addr.to_string(),
                    reason: "the verified certificate cannot be parsed".into(),
                },
            }
        }
        Ok(Err(e)) => {
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(rustls::Error::InvalidCertificate(why)) => TlsProbe::Rejected {
                    addr: addr.to_string(),
                    reason: format!("invalid certificate: {why:?}"),
                },
                Some(other) => TlsProbe::Rejected {
                    addr: addr.to_string(),
                    reason: other.to_string(),
                },
                None => unreachable(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_lists_its_certificates_and_skips_garbage() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let pem = format!("junk\n{}\n{}", ca.cert.pem(), ca.cert.pem());
        let certs = bundle_certificates(pem.as_bytes());
        assert_eq!(certs.len(), 2);
        assert!(certs[0].not_after > 0);
        assert!(bundle_certificates(b"not a certificate").is_empty());
    }
}
