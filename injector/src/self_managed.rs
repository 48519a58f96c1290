//! Self-managed TLS: the injector makes its own CA and serving certificate in memory and publishes
//! the CA in the `caBundle` of its two webhook configurations, so a cluster without cert-manager
//! needs no private key or generated CA in its manifests, and no Secret. The only RBAC it needs is
//! `patch` on those two objects by `resourceNames`: a no-op merge patch returns the whole object,
//! which is how the current bundle is read, and a JSON patch writes only the `caBundle` fields with
//! the observed `resourceVersion` as a precondition, so replicas that publish at the same time get
//! `409 Conflict` and merge again instead of overwriting each other. Each replica adds its own CA to
//! what is there (dropping expired and unparsable certificates, its own retired CAs, and the oldest
//! Hush CAs past [`MAX_HUSH_CAS`]). The CA's key is dropped as soon as the leaf is signed, the leaf's
//! key never leaves memory, and renewal (at about two thirds of the lifetime) publishes the new CA
//! before the new leaf is served, through the hot-swapping resolver of [`crate::tls`], so rotation
//! drops no request. All of this runs at start and in a background task, never while a request is
//! admitted: admission stays pure. `/readyz` fails until this replica's CA is published. On graceful
//! shutdown, once the HTTPS listener has drained, [`SelfManaged::shutdown`] stops the task and
//! withdraws this replica's CAs from both bundles (bounded by [`WITHDRAW_TIMEOUT`], best effort).

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hush_config::backoff::{Backoff, jitter, renew_after};
use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::config::SelfManagedTls;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, Publication};
use crate::tls::ReloadingCert;

/// The subject organisation of every self-managed CA; how a bundle's Hush CAs are told apart from
/// certificates an operator added, which are never pruned (unless expired or unparsable).
pub(crate) const HUSH_CA_ORGANIZATION: &str = "hush.dev self-managed TLS";
/// At most this many Hush CAs stay in a bundle, so replica restarts do not grow it forever.
pub(crate) const MAX_HUSH_CAS: usize = 8;
/// A replica moves its CA to the end of the bundle when this many newer Hush CAs follow it, so a
/// live replica stays clear of the pruning at the front. With up to this many live replicas no CA
/// ever moves back and forth.
pub(crate) const KEEP_FRESH_WITHIN: usize = MAX_HUSH_CAS / 2;
/// How often a replica checks that its CA is still in the bundle (jittered by ±20%).
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// How long a renewed CA is published before the leaf it signed is served: the apiservers watch
/// webhook configurations and need a moment to see the new bundle. The old CA stays meanwhile.
const CA_PROPAGATION_DELAY: Duration = Duration::from_secs(10);
/// Certificates start this long in the past, for clocks that run a little behind ours.
const BACKDATE: Duration = Duration::from_secs(300);
/// Renew no sooner than this after issuing (unless the lifetime is shorter than twice this).
const MIN_RENEW: Duration = Duration::from_secs(3600);
/// How many times one publication retries after `409 Conflict` before it backs off as an error.
const MAX_CONFLICT_RETRIES: u32 = 10;
/// The field manager of our patches (shows who wrote the caBundle in `managedFields`).
const FIELD_MANAGER: &str = "hush-injector";
/// How long a replica that shuts down spends withdrawing its CAs from both configurations, so a
/// slow or unreachable apiserver never holds up the exit (the pod's grace period is finite too).
pub(crate) const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(5);

/// A CA and the serving certificate it signed. The CA's private key is already gone.
pub(crate) struct Issued {
    /// The CA certificate (DER), for the caBundle.
    pub ca_der: Vec<u8>,
    /// The serving certificate (PEM).
    pub cert_pem: String,
    /// The serving certificate's private key (PKCS#8 PEM), zeroized on drop.
    pub key_pem: Zeroizing<String>,
    /// When both expire.
    pub not_after: SystemTime,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// What [`merge_bundle`] did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MergeReport {
    /// Certificates in the new bundle, ours included.
    pub kept: usize,
    /// Dropped because they had expired.
    pub expired: usize,
    /// Dropped because they were not a parsable certificate (or broke the PEM).
    pub unparsable: usize,
    /// Our earlier CAs, dropped after renewal (when withdrawing: all of ours that were there).
    pub retired: usize,
    /// The oldest Hush CAs, dropped to keep at most [`MAX_HUSH_CAS`].
    pub over_cap: usize,
    /// Our CA was missing and was appended.
    pub added: bool,
    /// Our CA had fallen behind [`KEEP_FRESH_WITHIN`] newer Hush CAs and was moved to the end.
    pub moved: bool,
}

/// The two kinds of webhook configuration we patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mutating,
    Validating,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Mutating => "MutatingWebhookConfiguration",
            Kind::Validating => "ValidatingWebhookConfiguration",
        }
    }
}

/// A webhook configuration as read: its resourceVersion and each webhook's caBundle, in order.
struct Observed {
    resource_version: String,
    bundles: Vec<Option<Vec<u8>>>,
}

/// Every CA this replica has put, or may have put, into the bundles. The background task updates
/// it (never across an `.await`, so aborting the task leaves it consistent) and the shutdown path
/// reads it to withdraw them all.
#[derive(Default)]
struct OurCas {
    /// The CA that signed the leaf being served.
    serving: Vec<u8>,
    /// A renewed CA that is being published but whose leaf is not served yet.
    pending: Option<Vec<u8>>,
    /// Our earlier CAs, removed from the bundles at the next successful publication.
    retired: Vec<Vec<u8>>,
}

impl OurCas {
    fn all(&self) -> Vec<Vec<u8>> {
        let mut all = vec![self.serving.clone()];
        all.extend(self.pending.iter().cloned());
        all.extend(self.retired.iter().cloned());
        all
    }
}

/// Locks the shared CAs. Nothing panics while holding the lock, so a poisoned one is still sound.
fn lock(cas: &Mutex<OurCas>) -> MutexGuard<'_, OurCas> {
    cas.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps this replica's certificate fresh and its CA published. Owned by the background task.
struct Maintainer {
    cfg: SelfManagedTls,
    client: Client,
    certs: Arc<ReloadingCert>,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
    cas: Arc<Mutex<OurCas>>,
    leaf_not_after: SystemTime,
    renew_at: SystemTime,
}

/// A running self-managed TLS: the resolver to serve with, and the background task that keeps it
/// fresh and published. Stop it with [`SelfManaged::shutdown`], which also withdraws our CAs.
pub(crate) struct SelfManaged {
    certs: Arc<ReloadingCert>,
    task: JoinHandle<()>,
    cas: Arc<Mutex<OurCas>>,
    client: Client,
    webhook_configuration: String,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
}

impl fmt::Debug for SelfManaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfManaged")
            .field("webhook_configuration", &self.webhook_configuration)
            .finish_non_exhaustive()
    }
}

/// Makes a CA and a leaf for `cfg.sans`, both valid from a little before `now` for `cfg.validity`.
/// The CA is limited to signing end-entity certificates (path length 0) and its key is dropped on
/// return, so it can never sign anything else.
pub(crate) fn issue(cfg: &SelfManagedTls, now: SystemTime) -> Result<Issued> {
    let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
    let not_after = now + cfg.validity;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::OrganizationName, HUSH_CA_ORGANIZATION);
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("hush self-managed CA for {}", cfg.service),
    );
    ca.not_before = OffsetDateTime::from(not_before);
    ca.not_after = OffsetDateTime::from(not_after);
    let ca_key = KeyPair::generate().map_err(Error::CertGen)?;
    let ca = CertifiedIssuer::self_signed(ca, ca_key).map_err(Error::CertGen)?;

    let mut leaf = CertificateParams::new(cfg.sans.clone()).map_err(Error::CertGen)?;
    leaf.distinguished_name
        .push(DnType::CommonName, cfg.service.clone());
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = OffsetDateTime::from(not_before);
    leaf.not_after = OffsetDateTime::from(not_after);
    let key = KeyPair::generate().map_err(Error::CertGen)?;
    let cert = leaf.signed_by(&key, &ca).map_err(Error::CertGen)?;
    Ok(Issued {
        ca_der: ca.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
        not_after,
    })
}

/// One certificate of a bundle being merged.
struct Entry {
    der: Vec<u8>,
    hush: bool,
    ours: bool,
}

/// Merges the bundles found in a configuration's webhooks with our CA, as PEM.
///
/// Keeps, in their first order and once each: every certificate that parses and has not expired
/// at `now`, except those in `retired` (our own earlier CAs). Appends `ours` if it is missing, or
/// moves it to the end when [`KEEP_FRESH_WITHIN`] or more newer Hush CAs follow it. Then drops the
/// front-most Hush CAs (other than ours) until at most [`MAX_HUSH_CAS`] remain: position is the
/// only age every replica agrees on, and a live replica keeps its CA near the end. The output is
/// canonical PEM, so replicas that see the same input write the same bytes and no one rewrites a
/// bundle that is already right.
pub(crate) fn merge_bundle(
    bundles: &[&[u8]],
    ours: &[u8],
    retired: &[Vec<u8>],
    now: SystemTime,
) -> (String, MergeReport) {
    merge(bundles, Some(ours), retired, now)
}

/// The bundle once this replica is gone: [`merge_bundle`] with every CA in `ours` treated as
/// retired and none added back. Other certificates are kept (or pruned) exactly as a publication
/// would, so the result may be empty when ours were the only ones; see [`SelfManaged::shutdown`]
/// for why that is still right.
pub(crate) fn withdraw_bundle(
    bundles: &[&[u8]],
    ours: &[Vec<u8>],
    now: SystemTime,
) -> (String, MergeReport) {
    merge(bundles, None, ours, now)
}

fn merge(
    bundles: &[&[u8]],
    ours: Option<&[u8]>,
    retired: &[Vec<u8>],
    now: SystemTime,
) -> (String, MergeReport) {
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut report = MergeReport::default();
    let mut seen = HashSet::new();
    let mut list: Vec<Entry> = Vec::new();
    for bundle in bundles {
        for item in CertificateDer::pem_slice_iter(bundle) {
            let der = match item {
                Ok(der) => der,
                Err(_) => {
                    // A broken PEM section: what follows cannot be trusted to be aligned.
                    report.unparsable += 1;
                    break;
                }
            };
            if !seen.insert(der.as_ref().to_vec()) {
                continue;
            }
            if ours == Some(der.as_ref()) {
                list.push(Entry {
                    der: der.as_ref().to_vec(),
                    hush: true,
                    ours: true,
                });
                continue;
            }
            if retired.iter().any(|r| r.as_slice() == der.as_ref()) {
                report.retired += 1;
                continue;
            }
            let hush = match x509_parser::parse_x509_certificate(der.as_ref()) {
                Err(_) => {
                    report.unparsable += 1;
                    continue;
                }
                Ok((_, cert)) => {
                    if cert.validity().not_after.timestamp() <= now_secs {
                        report.expired += 1;
                        continue;
                    }
                    cert.is_ca()
                        && cert
                            .subject()
                            .iter_organization()
                            .any(|o| o.as_str() == Ok(HUSH_CA_ORGANIZATION))
                }
            };
            list.push(Entry {
                der: der.as_ref().to_vec(),
                hush,
                ours: false,
            });
        }
    }
    match (ours, list.iter().position(|e| e.ours)) {
        (None, _) => {}
        (Some(ours), None) => {
            report.added = true;
            list.push(Entry {
                der: ours.to_vec(),
                hush: true,
                ours: true,
            });
        }
        (Some(_), Some(i)) => {
            let newer = list[i + 1..].iter().filter(|e| e.hush).count();
            if newer >= KEEP_FRESH_WITHIN {
                let e = list.remove(i);
                list.push(e);
                report.moved = true;
            }
        }
    }
    let mut hush = list.iter().filter(|e| e.hush).count();
    while hush > MAX_HUSH_CAS {
        let Some(i) = list.iter().position(|e| e.hush && !e.ours) else {
            break;
        };
        list.remove(i);
        report.over_cap += 1;
        hush -= 1;
    }
    report.kept = list.len();
    let pem = list.iter().map(|e| pem_encode(&e.der)).collect();
    (pem, report)
}

/// One `CERTIFICATE` PEM block with 64-column base64 lines.
pub(crate) fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Makes the first certificate and starts the task that publishes its CA and renews it.
///
/// Returns the resolver to serve with (usable at once) and the task. `ready` turns true once our
/// CA is in the caBundle of every webhook of both configurations, and false again if a later check
/// finds it gone and cannot put it back.
pub(crate) fn start(
    cfg: &SelfManagedTls,
    client: Client,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
) -> Result<SelfManaged> {
    let now = SystemTime::now();
    let issued = issue(cfg, now)?;
    let certs = ReloadingCert::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())?;
    metrics.serving_cert_expires(issued.not_after);
    tracing::info!(
        service = %cfg.service,
        webhook_configuration = %cfg.webhook_configuration,
        sans = ?cfg.sans,
        "made a self-managed CA and serving certificate in memory"
    );
    let cas = Arc::new(Mutex::new(OurCas {
        serving: issued.ca_der,
        ..OurCas::default()
    }));
    let maintainer = Maintainer {
        cfg: cfg.clone(),
        client: client.clone(),
        certs: Arc::clone(&certs),
        ready: Arc::clone(&ready),
        metrics: metrics.clone(),
        cas: Arc::clone(&cas),
        leaf_not_after: issued.not_after,
        renew_at: now + renew_after(cfg.validity, MIN_RENEW),
    };
    Ok(SelfManaged {
        certs,
        task: tokio::spawn(maintainer.run()),
        cas,
        client,
        webhook_configuration: cfg.webhook_configuration.clone(),
        ready,
        metrics,
    })
}

impl SelfManaged {
    /// The resolver to serve with; the background task swaps renewed certificates into it.
    pub(crate) fn certs(&self) -> &Arc<ReloadingCert> {
        &self.certs
    }

    /// Stops the background task, then takes every CA of this replica (the served one, a renewed
    /// one still being published, retired ones) out of the caBundle of both configurations, and
    /// adds none back. Call it only once the HTTPS listener has stopped accepting and in-flight
    /// requests have finished: until then the apiserver may still call this replica and needs the
    /// CA to verify it. Bounded by [`WITHDRAW_TIMEOUT`]; failures are logged and otherwise ignored
    /// (our CA then stays until it expires or the cap of [`MAX_HUSH_CAS`] prunes it, as before).
    ///
    /// The task goes first, and is awaited, so that it cannot put the CA back afterwards. An
    /// aborted write of the task may still land at the apiserver, but every write carries the
    /// resourceVersion it read, so whichever of the two lands second conflicts and the withdrawal
    /// merges again: the task's write can never overwrite the withdrawal.
    ///
    /// This may leave a webhook's caBundle empty when we were the last replica (and no operator CA
    /// is there). That is deliberate: the CA's key is gone, so no other process can ever serve a
    /// certificate it verifies, and this one no longer listens. A new replica makes a new CA and
    /// publishes it at start, before it turns ready, whether our CA is still there or not; with it
    /// or with an empty bundle, the apiserver can reach no replica until then (the webhooks'
    /// failurePolicy decides what that means). Keeping it would only let dead CAs pile up until
    /// they expire or are capped.
    pub(crate) async fn shutdown(self) {
        self.task.abort();
        // Cancelled (or a panic, already reported by the runtime): either way it is stopped.
        let _ = self.task.await;
        self.ready.store(false, Ordering::SeqCst);
        let ours = lock(&self.cas).all();
        let name = self.webhook_configuration.as_str();
        let withdraw = async {
            let mut withdrawn = true;
            for kind in [Kind::Mutating, Kind::Validating] {
                let r = sync_one(
                    &self.client,
                    &self.metrics,
                    kind,
                    name,
                    "withdraw",
                    |bundles| withdraw_bundle(bundles, &ours, SystemTime::now()),
                    |_| {},
                )
                .await;
                if let Err(e) = r {
                    withdrawn = false;
                    tracing::warn!(
                        error = %ErrorChain(&e),
                        kind = kind.as_str(),
                        %name,
                        "self-managed TLS: cannot withdraw our CA; it stays until it expires or is \
                         pruned"
                    );
                }
            }
            withdrawn
        };
        match tokio::time::timeout(WITHDRAW_TIMEOUT, withdraw).await {
            // Each failure is already logged, with its configuration.
            Ok(false) => {}
            Ok(true) => tracing::info!(
                webhook_configuration = %name,
                cas = ours.len(),
                "self-managed TLS: withdrew our CA from the caBundle"
            ),
            Err(_) => tracing::warn!(
                webhook_configuration = %name,
                timeout = ?WITHDRAW_TIMEOUT,
                "self-managed TLS: withdrawing our CA timed out; it stays until it expires or is \
                 pruned"
            ),
        }
    }
}

impl Maintainer {
    async fn run(mut self) {
        let mut backoff = match Backoff::new(Duration::from_secs(1), CHECK_INTERVAL, 0.5) {
            Ok(b) => b,
            Err(_) => Backoff::standard(),
        };
        loop {
            let delay = match self.tick().await {
                Ok(()) => {
                    backoff.reset();
                    // Wake for the renewal on time, even with lifetimes shorter than a check.
                    let until_renewal = self
                        .renew_at
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    jitter(CHECK_INTERVAL, 0.2).min(until_renewal)
                }
                Err(e) => {
                    let expired = SystemTime::now() >= self.leaf_not_after;
                    tracing::warn!(
                        error = %ErrorChain(&e),
                        webhook_configuration = %self.cfg.webhook_configuration,
                        leaf_expired = expired,
                        "self-managed TLS: cannot publish the CA; retrying"
                    );
                    backoff.next_delay(None)
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// Renews if due, then makes sure our CA is published.
    async fn tick(&mut self) -> Result<()> {
        if SystemTime::now() >= self.renew_at {
            self.renew().await?;
        }
        let ours = lock(&self.cas).serving.clone();
        self.publish(&ours).await?;
        lock(&self.cas).retired.clear();
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Publishes a new CA next to the current one, waits for the apiservers to see it, and only
    /// then serves the new leaf. Until the swap the old leaf and CA keep working; on any error
    /// nothing changes and the next tick tries again.
    async fn renew(&mut self) -> Result<()> {
        let now = SystemTime::now();
        let issued = issue(&self.cfg, now)?;
        lock(&self.cas).pending = Some(issued.ca_der.clone());
        if let Err(e) = self.publish(&issued.ca_der).await {
            // Perhaps published in one configuration: take it out at the next publication.
            let mut cas = lock(&self.cas);
            cas.pending = None;
            cas.retired.push(issued.ca_der);
            return Err(e);
        }
        tokio::time::sleep(CA_PROPAGATION_DELAY).await;
        let swapped = self
            .certs
            .swap(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes());
        {
            let mut cas = lock(&self.cas);
            cas.pending = None;
            if let Err(e) = swapped {
                // Never served: take the new CA out again at the next publication.
                cas.retired.push(issued.ca_der);
                return Err(e);
            }
            let old = std::mem::replace(&mut cas.serving, issued.ca_der);
            cas.retired.push(old);
        }
        self.metrics.serving_cert_expires(issued.not_after);
        self.leaf_not_after = issued.not_after;
        self.renew_at = now + renew_after(self.cfg.validity, MIN_RENEW);
        tracing::info!(
            webhook_configuration = %self.cfg.webhook_configuration,
            "self-managed TLS: renewed the CA and serving certificate"
        );
        Ok(())
    }

    /// Merges `ours` into both configurations.
    async fn publish(&self, ours: &[u8]) -> Result<()> {
        let retired = lock(&self.cas).retired.clone();
        let name = &self.cfg.webhook_configuration;
        // A renewed CA is new by definition; only the CA being served can go missing.
        let serving = ours == lock(&self.cas).serving.as_slice();
        for kind in [Kind::Mutating, Kind::Validating] {
            sync_one(
                &self.client,
                &self.metrics,
                kind,
                name,
                "publish",
                |bundles| merge_bundle(bundles, ours, &retired, SystemTime::now()),
                |report| {
                    if report.added && serving && self.ready.load(Ordering::SeqCst) {
                        // Pruned by another replica or an operator: the apiserver cannot verify us
                        // now.
                        self.ready.store(false, Ordering::SeqCst);
                        tracing::warn!(
                            kind = kind.as_str(),
                            %name,
                            "our CA is missing from the caBundle; adding it again"
                        );
                    }
                },
            )
            .await?;
        }
        Ok(())
    }
}

/// Reads, merges (with `merge`) and writes one configuration, again on `409 Conflict` (another
/// replica wrote in between), after a short jittered pause so that two replicas do not collide
/// again. `before_write` sees the merge report of a bundle that is about to change. `why` names the
/// caller in the logs (`publish` or `withdraw`). Every read-merge-write is counted by outcome.
async fn sync_one(
    client: &Client,
    metrics: &Metrics,
    kind: Kind,
    name: &str,
    why: &'static str,
    merge: impl Fn(&[&[u8]]) -> (String, MergeReport),
    before_write: impl Fn(&MergeReport),
) -> Result<()> {
    let mut conflicts = 0;
    loop {
        let observed = match observe(client, kind, name).await {
            Ok(o) => o,
            Err(source) => {
                metrics.ca_publication(Publication::Error);
                return Err(Error::Kube {
                    action: "read (with a no-op patch)",
                    kind: kind.as_str(),
                    name: name.to_string(),
                    source,
                });
            }
        };
        let bundles: Vec<&[u8]> = observed
            .bundles
            .iter()
            .map(|b| b.as_deref().unwrap_or_default())
            .collect();
        let (pem, report) = merge(&bundles);
        // An absent caBundle and an empty one are the same to the apiserver (and it stores "" as
        // absent), so an emptied bundle is not rewritten again and again.
        let stale: Vec<usize> = bundles
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != pem.as_bytes())
            .map(|(i, _)| i)
            .collect();
        if stale.is_empty() {
            metrics.ca_publication(Publication::Unchanged);
            tracing::debug!(kind = kind.as_str(), %name, why, "caBundle already up to date");
            return Ok(());
        }
        before_write(&report);
        match write(client, kind, name, &observed.resource_version, &stale, &pem).await {
            Ok(()) => {
                metrics.ca_publication(Publication::Written);
                tracing::info!(
                    kind = kind.as_str(),
                    %name,
                    why,
                    webhooks = stale.len(),
                    certificates = report.kept,
                    added = report.added,
                    moved = report.moved,
                    expired = report.expired,
                    unparsable = report.unparsable,
                    retired = report.retired,
                    over_cap = report.over_cap,
                    "wrote the CA bundle"
                );
                return Ok(());
            }
            Err(kube::Error::Api(status))
                if status.is_conflict() && conflicts < MAX_CONFLICT_RETRIES =>
            {
                metrics.ca_publication(Publication::Conflict);
                conflicts += 1;
                tracing::debug!(
                    kind = kind.as_str(),
                    %name,
                    why,
                    conflicts,
                    "caBundle changed since it was read; merging again"
                );
                let pause = Duration::from_millis(50 * u64::from(conflicts));
                tokio::time::sleep(jitter(pause, 0.5)).await;
            }
            Err(source) => {
                metrics.ca_publication(Publication::Error);
                return Err(Error::Kube {
                    action: "patch the caBundle of",
                    kind: kind.as_str(),
                    name: name.to_string(),
                    source,
                });
            }
        }
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// An empty JSON merge patch of the cluster-scoped object `name`: it changes nothing and answers
/// with the whole object.
async fn noop_patch<K>(client: &Client, name: &str) -> Result<K, kube::Error>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let noop: Patch<serde_json::Value> = Patch::Merge(serde_json::json!({}));
    Api::<K>::all(client.clone())
        .patch(name, &patch_params(), &noop)
        .await
}

/// Reads a configuration with the only verb we have: an empty JSON merge patch changes nothing, so
/// the apiserver writes nothing (the resourceVersion stays) and answers with the whole object.
async fn observe(client: &Client, kind: Kind, name: &str) -> Result<Observed, kube::Error> {
    fn bundles<W>(
        webhooks: Option<Vec<W>>,
        config: impl Fn(W) -> WebhookClientConfig,
    ) -> Vec<Option<Vec<u8>>> {
        webhooks
            .unwrap_or_default()
            .into_iter()
            .map(|w| config(w).ca_bundle.map(|b| b.0))
            .collect()
    }
    let (rv, bundles) = match kind {
        Kind::Mutating => {
            let o: MutatingWebhookConfiguration = noop_patch(client, name).await?;
            (
                o.metadata.resource_version,
                bundles(o.webhooks, |w| w.client_config),
            )
        }
        Kind::Validating => {
            let o: ValidatingWebhookConfiguration = noop_patch(client, name).await?;
            (
                o.metadata.resource_version,
                bundles(o.webhooks, |w| w.client_config),
            )
        }
    };
    Ok(Observed {
        resource_version: rv.unwrap_or_default(),
        bundles,
    })
}

/// Writes `pem` into the caBundle of the webhooks at `indices`, only if the object still has
/// `resource_version`.
///
/// A JSON patch rather than a merge patch: a merge patch replaces the whole `webhooks` list, so we
/// would have to send back every field of every webhook, and fields newer than our k8s-openapi
/// would be lost. This one touches only the `caBundle` fields (`add` also creates an absent one).
/// Its first operation replaces `metadata.resourceVersion` with the value we read, which the
/// apiserver treats as a precondition: if the object changed since, it answers `409 Conflict`
/// (a JSON patch `test` operation would fail as an ambiguous `422`). Indices are safe for the
/// same reason: the list cannot have changed under the precondition.
async fn write(
    client: &Client,
    kind: Kind,
    name: &str,
    resource_version: &str,
    indices: &[usize],
    pem: &str,
) -> Result<(), kube::Error> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
    let mut ops = vec![PatchOperation::Replace(ReplaceOperation {
        path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
        value: serde_json::Value::String(resource_version.to_string()),
    })];
    for &i in indices {
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens([
                Token::new("webhooks"),
                Token::from(i),
                Token::new("clientConfig"),
                Token::new("caBundle"),
            ]),
            value: serde_json::Value::String(b64.clone()),
        }));
    }
    let patch: Patch<()> = Patch::Json(json_patch::Patch(ops));
    let pp = patch_params();
    match kind {
        Kind::Mutating => {
            Api::<MutatingWebhookConfiguration>::all(client.clone())
                .patch(name, &pp, &patch)
                .await?;
        }
        Kind::Validating => {
            Api::<ValidatingWebhookConfiguration>::all(client.clone())
                .patch(name, &pp, &patch)
                .await?;
        }
    }
    Ok(())
}

/// Displays an error with its sources, `a: b: c`, for one log field.
struct ErrorChain<'a>(&'a Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "self_managed_tests.rs"]
mod tests;
