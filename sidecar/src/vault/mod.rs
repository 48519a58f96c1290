//! The Vault/OpenBao provider: KV v1 and v2 (with `#field` and `?version=N`), and any other
//! logical path as a leased dynamic secret (for example `database/creds/<role>`).
//!
//! - The engine behind each path is looked up once (`sys/internal/ui/mounts/<path>`, as the `bao kv`
//!   CLI does) and cached.
//! - Cheap refresh: a KV v2 secret is checked with its metadata (`current_version`, no value) and
//!   read only when the version moved. Secrets that share a directory are checked together with one
//!   `LIST <mount>/detailed-metadata/<dir>/` where the server (OpenBao 2.x) and the policy allow
//!   it, else with one metadata read each. A pinned version is never read again. KV v1 has no version,
//!   so it is read and compared. A dynamic secret changes only when its lease must be replaced.
//! - Leases are renewed at about 2/3 of their TTL. When a renewal returns less than asked, the lease
//!   has reached its `max_ttl` and the secret is fetched again before it expires.
//! - A PKI reference (`vault:<mount>/issue/<role>?common_name=...`) issues a certificate with one
//!   POST built from the allowlisted parameters ([`pki`]); it is issued anew at about 2/3 of its
//!   lifetime, and revoked on SIGTERM only when the operator set `vault.revokeCertificates`.
//! - On 403 the provider logs in again once and retries; a second 403 is permanent. Leases belong
//!   to the token that created them, so a fresh login also schedules every dynamic secret for a
//!   re-fetch.

mod auth;
mod client;
mod kv;
mod leases;
mod pki;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rustify::enums::RequestMethod;

use self::auth::{Login, TokenState};
use self::client::{CallError, STORE, Vault};
use self::kv::{Engine, Envelope, Kv2Data, Kv2Metadata, MountInfo};
use crate::audit::{Access, Audit, Event, Object, Outcome, Reason};
use crate::error::{Error, Result};
use crate::provider::{Check, Fetched, LocalBoxFuture, Maintenance, Provider, Version};
use crate::runtime::Paths;
use crate::secret::{SecretFields, SecretValue};
use hush_config::{ErrorClass, renew_after};
use hush_config::{SidecarConfig, SourceKind, SourceRef, VaultAuth};

/// A lease with less than this share of its TTL left is replaced instead of renewed.
const MIN_LEASE_LEFT_FRACTION: f64 = 0.1;
const MIN_RENEW: Duration = Duration::from_secs(2);
/// The longest a replaced lease stays valid after its successor was fetched: time for the app to
/// move to the new credentials (the files are written, and the app notified, in the same cycle).
const RETIRE_GRACE_MAX: Duration = Duration::from_secs(60);

/// A lease whose secret was replaced by a new fetch, revoked at `at`.
struct Retired {
    source: SourceRef,
    id: String,
    at: Instant,
}

/// One live lease of a dynamic secret.
struct Lease {
    source: SourceRef,
    id: String,
    /// The increment asked for on renewal (the lease's original TTL).
    increment: Duration,
    expires: Instant,
    renewable: bool,
    next: Instant,
    /// Fetch again at `next` instead of renewing.
    refetch: bool,
}

/// One issued certificate.
struct Cert {
    source: SourceRef,
    mount: String,
    serial: String,
    expires: Instant,
    /// Issue a new one at this time (about 2/3 of the lifetime).
    next: Instant,
}

/// The Vault provider.
pub(crate) struct VaultProvider {
    vault: Vault,
    login: Login,
    token: Option<TokenState>,
    engines: BTreeMap<String, Engine>,
    /// `detailed-metadata` listings that the server or the policy refused.
    no_listing: BTreeMap<String, ()>,
    /// Mounts already looked up (each path ends with `/`).
    mounts: Vec<MountInfo>,
    /// KV v2 paths whose metadata the policy does not let us read: fall back to data reads.
    no_metadata: BTreeMap<String, ()>,
    /// Keyed by the reference's canonical string.
    leases: BTreeMap<String, Lease>,
    /// Replaced leases waiting for their revocation.
    retired: Vec<Retired>,
    pending_refetch: Vec<SourceRef>,
    /// Certificates issued from PKI references, keyed by the reference's canonical string.
    certs: BTreeMap<String, Cert>,
    /// The operator lets the sidecar revoke its certificates on SIGTERM.
    revoke_certificates: bool,
    /// Records logins, renewals and revocations (fetches are recorded by the refresh engine).
    audit: Audit,
}

impl VaultProvider {
    /// Builds the client from the operator's settings; nothing is sent until the first fetch.
    pub(crate) fn new(cfg: &SidecarConfig, paths: &Paths, audit: Audit) -> Result<VaultProvider> {
        let settings = cfg.operator.vault.as_ref().ok_or_else(|| Error::Config {
            field: "operator.vault".into(),
            reason: hush_config::NO_VAULT.into(),
        })?;
        let mount = match cfg.auth {
            VaultAuth::AppRole => settings.approle_mount.clone(),
            _ => settings.auth_mount.clone(),
        };
        Ok(VaultProvider {
            vault: Vault::new(settings, cfg.vault_namespace())?,
            login: Login {
                method: cfg.auth,
                role: cfg.role.clone(),
                mount,
                token_file: paths.token_file(),
                credentials_dir: paths.credentials_dir(),
            },
            token: None,
            engines: BTreeMap::new(),
            mounts: Vec::new(),
            no_listing: BTreeMap::new(),
            no_metadata: BTreeMap::new(),
            leases: BTreeMap::new(),
            retired: Vec::new(),
            pending_refetch: Vec::new(),
            certs: BTreeMap::new(),
            revoke_certificates: settings.revoke_certificates,
            audit,
        })
    }

    async fn ensure_token(&mut self) -> Result<()> {
        if self.token.is_none() || !self.vault.has_token() {
            let st = self.log_in().await?;
            self.token = Some(st);
        }
        Ok(())
    }

    async fn relogin(&mut self) -> Result<()> {
        let st = self.log_in().await?;
        self.token = Some(st);
        self.schedule_all_leases_refetch();
        Ok(())
    }

    /// Logs in, and records it.
    async fn log_in(&mut self) -> Result<TokenState> {
        let r = self.login.login(&mut self.vault).await;
        let a = Access::new(Event::Login, Object::Token, SourceKind::Vault);
        self.audit.record(match &r {
            Ok(_) => a,
            Err(e) => a.failed(e),
        });
        r
    }

    /// Records an event on the lease `id` of `source`.
    fn record_lease(
        &self,
        event: Event,
        source: &SourceRef,
        id: &str,
        reason: Option<Reason>,
        outcome: std::result::Result<Outcome, &Error>,
    ) {
        let reference = source.to_string();
        let mut a = Access::new(event, Object::Lease, SourceKind::Vault);
        a.reference = Some(&reference);
        a.lease_id = Some(id);
        a.reason = reason;
        match outcome {
            Ok(o) => {
                a.outcome = o;
                self.audit.record(a);
            }
            Err(e) => self.audit.record(a.failed(e)),
        }
    }

    fn schedule_all_leases_refetch(&mut self) {
        for l in self.leases.values() {
            if !self.pending_refetch.contains(&l.source) {
                self.pending_refetch.push(l.source.clone());
            }
        }
    }

    /// GET with one re-login on 403.
    async fn get(
        &mut self,
        path: &str,
        query: Option<String>,
    ) -> std::result::Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
        self.call(RequestMethod::GET, path, query, None).await
    }

    /// One request with one re-login on 403.
    async fn call(
        &mut self,
        method: RequestMethod,
        path: &str,
        query: Option<String>,
        body: Option<Vec<u8>>,
    ) -> std::result::Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
        self.ensure_token().await.map_err(Failure::Login)?;
        match self
            .vault
            .request(method.clone(), path, query.clone(), body.clone())
            .await
        {
            Err(e) if e.status() == Some(403) && self.login.can_relogin() => {
                // 403 means either "the policy forbids this" or "the token is no longer valid".
                // Only the second is cured by a fresh login; the token's own lookup tells them apart.
                if self.token_is_valid().await {
                    return Err(Failure::Call(e));
                }
                tracing::info!("vault token is no longer valid; logging in again");
                self.relogin().await.map_err(Failure::Login)?;
                self.vault
                    .request(method, path, query, body)
                    .await
                    .map_err(Failure::Call)
            }
            other => other.map_err(Failure::Call),
        }
    }

    async fn token_is_valid(&self) -> bool {
        match vaultrs::token::lookup_self(self.vault.client()).await {
            Ok(mut info) => {
                zeroize::Zeroize::zeroize(&mut info.id);
                true
            }
            Err(_) => false,
        }
    }

    async fn engine(&mut self, path: &str) -> Result<Engine> {
        if let Some(e) = self.engines.get(path) {
            return Ok(e.clone());
        }
        // Vault refuses a mount nested in another, so a known mount that prefixes this path is
        // the one that serves it: one lookup per mount, not per secret.
        if let Some(info) = self
            .mounts
            .iter()
            .find(|m| path.starts_with(m.path.as_str()))
        {
            let engine = Engine::from_mount(path, info);
            self.engines.insert(path.to_string(), engine.clone());
            return Ok(engine);
        }
        let engine = match self
            .get(&format!("sys/internal/ui/mounts/{path}"), None)
            .await
        {
            Ok(body) => match kv::parse::<Envelope<MountInfo>>(&body) {
                Ok(Envelope {
                    data: Some(info), ..
                }) => {
                    let engine = Engine::from_mount(path, &info);
                    if info.path.ends_with('/') && path.starts_with(info.path.as_str()) {
                        self.mounts.push(info);
                    }
                    engine
                }
                _ => Engine::Logical,
            },
            Err(Failure::Login(e)) => return Err(e),
            Err(Failure::Call(e)) => {
                if matches!(e, CallError::Transport(_)) || e.status().is_some_and(|s| s >= 500) {
                    return Err(e.into_error("mount lookup"));
                }
                // Not allowed to look it up: treat it as a plain logical read.
                Engine::Logical
            }
        };
        tracing::debug!(path, engine = ?engine, "vault engine resolved");
        self.engines.insert(path.to_string(), engine.clone());
        Ok(engine)
    }

    /// Issues a certificate for a PKI reference and schedules the next one.
    async fn issue(&mut self, source: &SourceRef) -> Result<Fetched> {
        let SourceRef::Pki {
            mount, role, issue, ..
        } = source
        else {
            return Err(perm("not a PKI reference".into()));
        };
        let body = pki::issue_body(issue).map_err(|e| e.into_error("pki issue"))?;
        let resp = self
            .call(
                RequestMethod::POST,
                &pki::issue_path(mount, role),
                None,
                Some(body),
            )
            .await
            .map_err(|f| f.into_error("pki issue"))?;
        let env: Envelope<pki::Issued> = kv::parse(&resp).map_err(perm)?;
        let issued = env
            .data
            .ok_or_else(|| perm("the PKI issue response has no data".into()))?;
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let lifetime = Duration::from_secs(issued.expiration.saturating_sub(unix_now));
        if lifetime.is_zero() {
            return Err(perm(format!(
                "pki issue: the certificate {} expires at once (expiration {}); check the role's ttl and the clocks",
                issued.serial_number, issued.expiration
            )));
        }
        let now = Instant::now();
        let serial = issued.serial_number.clone();
        tracing::info!(
            mount = mount.as_str(),
            role = role.as_str(),
            serial = serial.as_str(),
            lifetime_secs = lifetime.as_secs(),
            "certificate issued"
        );
        self.pending_refetch.retain(|s| s != source);
        self.certs.insert(
            source.to_string(),
            Cert {
                source: source.clone(),
                mount: mount.clone(),
                serial: serial.clone(),
                expires: now + lifetime,
                next: now + renew_after(lifetime, MIN_RENEW),
            },
        );
        Ok(Fetched {
            value: SecretValue::Fields(issued.into_fields()),
            version: Version::Opaque(serial),
        })
    }

    async fn fetch_one(&mut self, source: &SourceRef) -> Result<Fetched> {
        if let SourceRef::Pki { .. } = source {
            return self.issue(source).await;
        }
        let SourceRef::Vault { path, version, .. } = source else {
            return Err(Error::store(
                STORE,
                ErrorClass::Permanent,
                "not a vault: reference",
            ));
        };
        let engine = self.engine(path).await?;
        match engine {
            Engine::Kv2 { mount, name } => {
                let query = version.map(|v| format!("version={v}"));
                let body = self
                    .get(&format!("{mount}data/{name}"), query)
                    .await
                    .map_err(|f| f.into_error("kv read"))?;
                let env: Envelope<Kv2Data> = kv::parse(&body).map_err(perm)?;
                let d = env
                    .data
                    .ok_or_else(|| perm("the KV v2 response has no data".into()))?;
                let fields = d.data.ok_or_else(|| {
                    perm("this version of the secret is deleted or destroyed".into())
                })?;
                let v = d.metadata.map(|m| m.version).unwrap_or(0);
                Ok(Fetched {
                    value: SecretValue::Fields(fields),
                    version: if version.is_some() {
                        Version::Pinned
                    } else {
                        Version::Kv2(v)
                    },
                })
            }
            Engine::Kv1 => {
                if version.is_some() {
                    return Err(perm(
                        "?version=N needs a KV v2 mount, but this path is KV v1".into(),
                    ));
                }
                let body = self
                    .get(path, None)
                    .await
                    .map_err(|f| f.into_error("kv read"))?;
                let env: Envelope<SecretFields> = kv::parse(&body).map_err(perm)?;
                let fields = env
                    .data
                    .ok_or_else(|| perm("the response has no data".into()))?;
                Ok(Fetched {
                    value: SecretValue::Fields(fields),
                    version: Version::None,
                })
            }
            Engine::Logical => {
                if version.is_some() {
                    return Err(perm("?version=N needs a KV v2 mount".into()));
                }
                let body = self
                    .get(path, None)
                    .await
                    .map_err(|f| f.into_error("read"))?;
                let env: Envelope<SecretFields> = kv::parse(&body).map_err(perm)?;
                let fields = env
                    .data
                    .ok_or_else(|| perm("the response has no data".into()))?;
                let key = source.to_string();
                if env.lease_id.is_empty() {
                    self.leases.remove(&key);
                    return Ok(Fetched {
                        value: SecretValue::Fields(fields),
                        version: Version::None,
                    });
                }
                let ttl = Duration::from_secs(env.lease_duration);
                let now = Instant::now();
                let lease = Lease {
                    source: source.clone(),
                    id: env.lease_id,
                    increment: ttl,
                    expires: now + ttl,
                    renewable: env.renewable,
                    next: now + renew_after(ttl, MIN_RENEW),
                    refetch: !env.renewable,
                };
                tracing::info!(
                    path,
                    ttl_secs = ttl.as_secs(),
                    renewable = env.renewable,
                    "vault lease obtained"
                );
                self.pending_refetch.retain(|s| s != source);
                if let Some(old) = self.leases.insert(key, lease) {
                    self.retire(old, now);
                }
                Ok(Fetched {
                    value: SecretValue::Fields(fields),
                    version: Version::Leased,
                })
            }
        }
    }

    async fn check_one(&mut self, source: &SourceRef, held: &Version) -> Result<Check> {
        if let SourceRef::Pki { .. } = source {
            // A certificate changes only when the provider issues a new one (`maintain`).
            return Ok(Check::Unchanged);
        }
        let SourceRef::Vault { path, .. } = source else {
            return Ok(Check::Changed);
        };
        match held {
            Version::Pinned | Version::Leased => return Ok(Check::Unchanged),
            Version::None | Version::Opaque(_) => return Ok(Check::Changed),
            Version::Kv2(_) => {}
        }
        let Engine::Kv2 { mount, name } = self.engine(path).await? else {
            return Ok(Check::Changed);
        };
        if self.no_metadata.contains_key(path) {
            return Ok(Check::Changed);
        }
        let meta = match self.get(&format!("{mount}metadata/{name}"), None).await {
            Ok(b) => b,
            Err(Failure::Call(e)) if e.status() == Some(403) => {
                tracing::warn!(
                    path,
                    "the Vault policy does not allow reading KV metadata; falling back to full reads (grant read on <mount>/metadata/<path> for cheap refresh)"
                );
                self.no_metadata.insert(path.clone(), ());
                return Ok(Check::Changed);
            }
            Err(f) => return Err(f.into_error("kv metadata read")),
        };
        let env: Envelope<Kv2Metadata> = kv::parse(&meta).map_err(perm)?;
        let m = env
            .data
            .ok_or_else(|| perm("the metadata response has no data".into()))?;
        if m.current_is_gone() {
            return Err(perm(format!(
                "kv metadata read: the current version ({}) is deleted or destroyed",
                m.current_version
            )));
        }
        Ok(if *held == Version::Kv2(m.current_version) {
            Check::Unchanged
        } else {
            Check::Changed
        })
    }

    /// Checks KV v2 secrets that share a directory with one `LIST <mount>/detailed-metadata/<dir>/`
    /// (OpenBao 2.x; no values, only each key's versions). Fills `out` for the secrets it could
    /// answer. A server or policy without it answers 4xx once; that directory then falls back to
    /// one metadata read per secret. A transient failure is returned so no more requests follow.
    async fn check_batched(
        &mut self,
        held: &[(&SourceRef, &Version)],
        out: &mut [Option<Result<Check>>],
    ) -> Result<()> {
        let mut groups: BTreeMap<(String, String), Vec<Member>> = BTreeMap::new();
        for (i, (s, v)) in held.iter().enumerate() {
            let (SourceRef::Vault { path, .. }, Version::Kv2(have)) = (s, v) else {
                continue;
            };
            if self.no_metadata.contains_key(path.as_str()) {
                continue;
            }
            let Ok(Engine::Kv2 { mount, name }) = self.engine(path).await else {
                continue;
            };
            let (dir, base) = match name.rsplit_once('/') {
                Some((d, b)) => (format!("{d}/"), b.to_string()),
                None => (String::new(), name.clone()),
            };
            groups
                .entry((mount, dir))
                .or_default()
                .push((i, base, *have));
        }
        for ((mount, dir), members) in groups {
            let list_path = format!("{mount}detailed-metadata/{dir}");
            if members.len() < 2 || self.no_listing.contains_key(&list_path) {
                continue;
            }
            let body = match self.get(&list_path, Some("list=true".into())).await {
                Ok(b) => b,
                Err(Failure::Call(e))
                    if e.status()
                        .is_some_and(|s| (400..500).contains(&s) && s != 429) =>
                {
                    tracing::debug!(
                        status = e.status(),
                        "detailed-metadata listing unavailable; checking secrets one by one"
                    );
                    self.no_listing.insert(list_path, ());
                    continue;
                }
                Err(f) => return Err(f.into_error("kv detailed-metadata list")),
            };
            let env: Envelope<kv::Kv2DetailedList> = kv::parse(&body).map_err(perm)?;
            let info = env.data.map(|d| d.key_info).unwrap_or_default();
            for (i, base, have) in members {
                out[i] = Some(match info.get(&base) {
                    None => Err(perm(format!(
                        "kv detailed-metadata list: the secret {base} does not exist (or was deleted)"
                    ))),
                    Some(m) if m.current_is_gone() => Err(perm(format!(
                        "kv detailed-metadata list: the current version ({}) is deleted or destroyed",
                        m.current_version
                    ))),
                    Some(m) if m.current_version == have => Ok(Check::Unchanged),
                    Some(_) => Ok(Check::Changed),
                });
            }
        }
        Ok(())
    }

    /// A new fetch replaced `old`: revoke it once the app had time to move to the new secret, half
    /// its remaining life and at most [`RETIRE_GRACE_MAX`], so a replaced database user does not
    /// live on until its TTL. A lease already past its end needs nothing.
    fn retire(&mut self, old: Lease, now: Instant) {
        let left = old.expires.saturating_duration_since(now);
        if left.is_zero() {
            return;
        }
        self.retired.push(Retired {
            source: old.source,
            id: old.id,
            at: now + (left / 2).min(RETIRE_GRACE_MAX),
        });
    }

    /// Revokes the retired leases that are due (all of them with `all`).
    async fn revoke_retired(&mut self, all: bool, out: &mut Maintenance) {
        let now = Instant::now();
        let (due, later): (Vec<Retired>, Vec<Retired>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|r| all || r.at <= now);
        self.retired = later;
        let why = Some(if all {
            Reason::Shutdown
        } else {
            Reason::Replaced
        });
        for r in due {
            let outcome = match leases::revoke(&self.vault, &r.id).await {
                Ok(()) => {
                    out.leases_revoked += 1;
                    tracing::info!("replaced vault lease revoked");
                    Ok(Outcome::Ok)
                }
                Err(e) if e.status() == Some(403) => {
                    out.lease_revocations_forbidden += 1;
                    tracing::debug!(
                        "sys/leases/revoke not permitted; the replaced lease ends at its TTL"
                    );
                    Ok(Outcome::Forbidden)
                }
                Err(e) => {
                    out.lease_revocations_failed += 1;
                    let err = e.into_error("revocation of a replaced lease");
                    tracing::warn!(
                        error = %err,
                        "replaced vault lease not revoked; it ends at its TTL"
                    );
                    Err(err)
                }
            };
            self.record_lease(
                Event::Revoke,
                &r.source,
                &r.id,
                why,
                outcome.as_ref().copied(),
            );
        }
    }

    async fn maintain_inner(&mut self) -> Result<Maintenance> {
        let mut out = Maintenance::default();
        let now = Instant::now();
        // The token first: leases can only be renewed with a live token.
        if let Some(st) = self.token.clone()
            && st.next_action.is_some_and(|t| t <= now)
        {
            let r = self.login.maintain(&mut self.vault, &st).await;
            let event = match &r {
                Ok((_, true)) => Event::Login,
                _ => Event::Renew,
            };
            let a = Access::new(event, Object::Token, SourceKind::Vault);
            self.audit.record(match &r {
                Ok(_) => a,
                Err(e) => a.failed(e),
            });
            let (next, relogged) = r?;
            self.token = Some(next);
            out.token_renewed = true;
            if relogged {
                self.schedule_all_leases_refetch();
            }
        }
        let due: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.next <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(l) = self.leases.get(&key) else {
                continue;
            };
            let left = l.expires.saturating_duration_since(now);
            let min_left = l
                .increment
                .mul_f64(MIN_LEASE_LEFT_FRACTION)
                .max(Duration::from_secs(1));
            if l.refetch || !l.renewable || left < min_left {
                if !self.pending_refetch.contains(&l.source) {
                    self.pending_refetch.push(l.source.clone());
                }
                continue;
            }
            let (id, increment, source) = (l.id.clone(), l.increment, l.source.clone());
            match leases::renew(&self.vault, &id, increment).await {
                Ok(r) => {
                    out.leases_renewed += 1;
                    self.record_lease(Event::Renew, &source, &id, None, Ok(Outcome::Ok));
                    let now = Instant::now();
                    let ttl = Duration::from_secs(r.lease_duration);
                    if let Some(l) = self.leases.get_mut(&key) {
                        l.expires = now + ttl;
                        l.renewable = r.renewable;
                        // Less than asked: max_ttl is near. Fetch a new secret at 2/3 of what is left.
                        l.refetch = !r.renewable || ttl + Duration::from_secs(1) < increment;
                        l.next = now + renew_after(ttl, MIN_RENEW);
                        tracing::debug!(
                            ttl_secs = ttl.as_secs(),
                            refetch_next = l.refetch,
                            "vault lease renewed"
                        );
                    }
                }
                Err(e) => {
                    let status = e.status();
                    let err = e.into_error("lease renewal");
                    self.record_lease(Event::Renew, &source, &id, None, Err(&err));
                    if matches!(status, Some(400) | Some(403) | Some(404)) {
                        // The lease is gone (revoked, or its token expired): fetch a new secret.
                        tracing::warn!(error = %err, "vault lease cannot be renewed; fetching a new secret");
                        if let Some(l) = self.leases.get(&key)
                            && !self.pending_refetch.contains(&l.source)
                        {
                            self.pending_refetch.push(l.source.clone());
                        }
                    } else {
                        if let Some(l) = self.leases.get_mut(&key) {
                            let left = l.expires.saturating_duration_since(Instant::now());
                            l.next = Instant::now() + (left / 4).max(Duration::from_secs(1));
                        }
                        return Err(err);
                    }
                }
            }
        }
        for c in self.certs.values() {
            if c.next <= now && !self.pending_refetch.contains(&c.source) {
                tracing::info!(
                    serial = c.serial.as_str(),
                    "certificate at 2/3 of its lifetime; issuing a new one"
                );
                self.pending_refetch.push(c.source.clone());
            }
        }
        self.revoke_retired(false, &mut out).await;
        out.refetch = self.pending_refetch.clone();
        Ok(out)
    }

    async fn revoke_inner(&mut self) {
        if !self.vault.has_token() {
            return;
        }
        let mut retired = Maintenance::default();
        self.revoke_retired(true, &mut retired).await;
        let leases = std::mem::take(&mut self.leases);
        let why = Some(Reason::Shutdown);
        for (_, l) in leases {
            let outcome = match leases::revoke(&self.vault, &l.id).await {
                Ok(()) => {
                    tracing::info!("vault lease revoked");
                    Ok(Outcome::Ok)
                }
                Err(e) if e.status() == Some(403) && self.login.can_relogin() => {
                    // The policy does not grant sys/leases/revoke; revoking the token below ends
                    // every lease it created.
                    tracing::debug!("sys/leases/revoke not permitted; relying on token revocation");
                    Ok(Outcome::Forbidden)
                }
                Err(e) => {
                    let err = e.into_error("lease revocation");
                    tracing::warn!(error = %err, "vault lease not revoked");
                    Err(err)
                }
            };
            self.record_lease(
                Event::Revoke,
                &l.source,
                &l.id,
                why,
                outcome.as_ref().copied(),
            );
        }
        self.revoke_certs().await;
        if self.login.can_relogin() {
            let a = Access::new(Event::Revoke, Object::Token, SourceKind::Vault);
            let mut a = Access { reason: why, ..a };
            match vaultrs::token::revoke_self(self.vault.client()).await {
                Ok(()) => tracing::info!("vault token revoked"),
                Err(e) => {
                    let err = CallError::from_vaultrs(e).into_error("token revocation");
                    tracing::warn!(error = %err, "vault token not revoked");
                    a = a.failed(&err);
                }
            }
            self.audit.record(a);
        }
        self.vault.clear_token();
        self.token = None;
    }
}

impl VaultProvider {
    /// Revokes every certificate still held (SIGTERM), when the operator allows it: each one adds
    /// an entry to the mount's CRL, which the operator pays for.
    async fn revoke_certs(&mut self) {
        let certs = std::mem::take(&mut self.certs);
        if !self.revoke_certificates {
            if !certs.is_empty() {
                tracing::debug!(
                    "certificates are not revoked on shutdown (operator setting vault.revokeCertificates is off)"
                );
            }
            return;
        }
        for (_, c) in certs {
            if c.expires <= Instant::now() {
                continue;
            }
            let reference = c.source.to_string();
            let version = Version::Opaque(c.serial.clone());
            let mut a = Access::new(Event::Revoke, Object::Certificate, SourceKind::Vault);
            a.reference = Some(&reference);
            a.version = Some(&version);
            a.reason = Some(Reason::Shutdown);
            match pki::revoke(&self.vault, &c.mount, &c.serial).await {
                Ok(()) => {
                    tracing::info!(serial = c.serial.as_str(), "certificate revoked");
                    self.audit.record(a);
                }
                Err(e) if e.status() == Some(403) => {
                    tracing::warn!(
                        serial = c.serial.as_str(),
                        "certificate not revoked: the Vault policy does not grant update on <mount>/revoke"
                    );
                    a.outcome = Outcome::Forbidden;
                    self.audit.record(a);
                }
                Err(e) => {
                    let err = e.into_error("certificate revocation");
                    tracing::warn!(error = %err, serial = c.serial.as_str(), "certificate not revoked");
                    self.audit.record(a.failed(&err));
                }
            }
        }
    }
}

/// One secret of a directory listing: its index in the check, its key name, the version held.
type Member = (usize, String, u64);

/// Why a GET failed: the login before it, or the call itself.
enum Failure {
    Login(Error),
    Call(CallError),
}

impl Failure {
    fn into_error(self, op: &str) -> Error {
        match self {
            Failure::Login(e) => e,
            Failure::Call(e) => e.into_error(op),
        }
    }
}

fn perm(reason: String) -> Error {
    Error::store(STORE, ErrorClass::Permanent, reason)
}

impl Provider for VaultProvider {
    fn fetch<'a>(&'a mut self, source: &'a SourceRef) -> LocalBoxFuture<'a, Result<Fetched>> {
        Box::pin(self.fetch_one(source))
    }

    fn check<'a>(
        &'a mut self,
        held: &'a [(&'a SourceRef, &'a Version)],
    ) -> LocalBoxFuture<'a, Vec<Result<Check>>> {
        Box::pin(async move {
            let mut out: Vec<Option<Result<Check>>> = (0..held.len()).map(|_| None).collect();
            let mut down: Option<String> = None;
            // One LIST of `detailed-metadata` answers for every secret of a directory (OpenBao).
            if let Err(e) = self.check_batched(held, &mut out).await {
                down = Some(e.to_string());
            }
            for (i, (s, v)) in held.iter().enumerate() {
                if out[i].is_some() {
                    continue;
                }
                if let Some(reason) = &down {
                    out[i] = Some(Err(Error::store(
                        STORE,
                        ErrorClass::Transient,
                        format!("not tried: {reason}"),
                    )));
                    continue;
                }
                let r = self.check_one(s, v).await;
                if let Err(e) = &r
                    && e.class() == ErrorClass::Transient
                {
                    // The server is down or unreachable: don't send N more failing requests.
                    down = Some(e.to_string());
                }
                out[i] = Some(r);
            }
            out.into_iter()
                .map(|r| r.unwrap_or(Ok(Check::Changed)))
                .collect()
        })
    }

    fn next_maintenance(&self) -> Option<Instant> {
        if !self.pending_refetch.is_empty() {
            return Some(Instant::now());
        }
        let token = self.token.as_ref().and_then(|t| t.next_action);
        let lease = self
            .leases
            .values()
            .map(|l| l.next)
            .chain(self.retired.iter().map(|r| r.at))
            .chain(self.certs.values().map(|c| c.next))
            .min();
        match (token, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn maintain(&mut self) -> LocalBoxFuture<'_, Result<Maintenance>> {
        Box::pin(self.maintain_inner())
    }

    fn lease_expiry(&self, source: &SourceRef) -> Option<Instant> {
        let key = source.to_string();
        self.leases
            .get(&key)
            .map(|l| l.expires)
            .or_else(|| self.certs.get(&key).map(|c| c.expires))
    }

    fn lease_id(&self, source: &SourceRef) -> Option<&str> {
        self.leases.get(&source.to_string()).map(|l| l.id.as_str())
    }

    fn revoke_all(&mut self) -> LocalBoxFuture<'_, ()> {
        Box::pin(self.revoke_inner())
    }
}
