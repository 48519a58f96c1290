//! TLS for the webhook, with certificates swapped at run time without a restart. From files:
//! cert-manager and Kubernetes Secret volumes replace the files in place (a `..data` symlink swap), so
//! a task re-reads both files every few seconds; when their bytes changed and the pair parses and
//! matches, the new pair is swapped in. In memory: self-managed TLS ([`crate::self_managed`]) hands
//! each renewed pair to [`ReloadingCert::swap`]. Either way each handshake only clones an `Arc` under
//! a read lock. A bad or half-written pair is logged and ignored: the last good one keeps serving,
//! and open connections are never touched, so a rotation drops no request.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A certificate resolver whose pair can be swapped at run time.
pub struct ReloadingCert {
    /// Where the pair is re-read from; `None` for an in-memory pair that its owner swaps.
    files: Option<CertFiles>,
    state: RwLock<State>,
}

struct CertFiles {
    cert_path: PathBuf,
    key_path: PathBuf,
}

struct State {
    current: Arc<CertifiedKey>,
    /// The file bytes last tried, good or bad, so an unchanged bad pair is not re-parsed and
    /// re-logged. Empty for an in-memory pair.
    last_seen: (Vec<u8>, Zeroizing<Vec<u8>>),
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ReloadingCert");
        match &self.files {
            Some(files) => d
                .field("cert_path", &files.cert_path)
                .field("key_path", &files.key_path),
            None => d.field("source", &"memory"),
        };
        d.finish_non_exhaustive()
    }
}

/// Parses a PEM chain and key into a signing pair, checking that they belong together.
pub(crate) fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Tls {
            reason: "certificate file is not PEM".into(),
        })?;
    if chain.is_empty() {
        return Err(Error::Tls {
            reason: "certificate file holds no certificate".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| Error::Tls {
        reason: "key file holds no PEM private key".into(),
    })?;
    let provider = aws_lc_rs::default_provider();
    let ck = CertifiedKey::from_der(chain, key, &provider).map_err(|e| Error::Tls {
        reason: format!("certificate and key do not form a pair: {e}"),
    })?;
    Ok(ck)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

impl ReloadingCert {
    /// Loads the pair once; fails if it is unusable (a server must not start without a cert).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<ReloadingCert>> {
        let cert = read(cert_path)?;
        let key = Zeroizing::new(read(key_path)?);
        let current = Arc::new(certified_key(&cert, &key)?);
        Ok(Arc::new(ReloadingCert {
            files: Some(CertFiles {
                cert_path: cert_path.to_path_buf(),
                key_path: key_path.to_path_buf(),
            }),
            state: RwLock::new(State {
                current,
                last_seen: (cert, key),
            }),
        }))
    }

    /// An in-memory pair that is never read from disk; its owner renews it with [`Self::swap`].
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ReloadingCert>> {
        let current = Arc::new(certified_key(cert_pem, key_pem)?);
        Ok(Arc::new(ReloadingCert {
            files: None,
            state: RwLock::new(State {
                current,
                last_seen: (Vec::new(), Zeroizing::new(Vec::new())),
            }),
        }))
    }

    /// Swaps in a new pair after checking that it parses and matches. New handshakes use it at
    /// once; open connections keep the pair they were made with. On error the old pair stays.
    pub fn swap(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<()> {
        let ck = Arc::new(certified_key(cert_pem, key_pem)?);
        let mut state = match self.state.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.current = ck;
        Ok(())
    }

    /// Re-reads the files; swaps in a changed, valid pair. Returns whether a new pair is in use.
    /// An in-memory pair has no files: nothing happens.
    pub fn reload(&self) -> bool {
        let Some(files) = &self.files else {
            return false;
        };
        let (cert, key) = match (read(&files.cert_path), read(&files.key_path)) {
            (Ok(c), Ok(k)) => (c, Zeroizing::new(k)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read TLS files; keeping the current certificate");
                return false;
            }
        };
        {
            let state = match self.state.read() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            if state.last_seen.0 == cert && *state.last_seen.1 == *key {
                return false;
            }
        }
        let parsed = certified_key(&cert, &key);
        let mut state = match self.state.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.last_seen = (cert, key);
        match parsed {
            Ok(ck) => {
                state.current = Arc::new(ck);
                tracing::info!(cert = %files.cert_path.display(), "reloaded TLS certificate");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "new TLS files are unusable; keeping the current certificate");
                false
            }
        }
    }

    /// The pair in use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.state.read() {
            Ok(s) => s.current.clone(),
            Err(poisoned) => poisoned.into_inner().current.clone(),
        }
    }

    /// Re-checks the files every `interval` until the task is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let me = Arc::clone(&this);
                // File reads are small; keep them off the async workers anyway.
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A rustls server config (TLS 1.2 and 1.3, aws-lc-rs, h2 and http/1.1) using the resolver.
pub(crate) fn server_config(resolver: Arc<ReloadingCert>) -> Result<Arc<ServerConfig>> {
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls {
            reason: format!("protocol versions: {e}"),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
