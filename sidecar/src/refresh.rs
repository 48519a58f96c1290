//! The refresh loop's state machine, independent of signals and process setup (those live in
//! [`crate::runtime`]). It owns the last good value of every secret and rebuilds the whole set of
//! files from them, so a failed fetch never removes or half-updates a file: the volume keeps the
//! last complete set until a new complete set is written.
//!
//! One cycle: ask each provider cheaply which secrets changed (KV v2 metadata, AWS batch calls),
//! fetch only those, and write the set if any value differs. The writer reports whether anything
//! changed on disk, and only then does the app get its one notification. Leases and tokens are
//! renewed on their own schedule ([`Engine::next_maintenance`]), independent of the refresh interval.
//!
//! A template that reads other files (`files["name"]`) is rendered in the same pass, from the
//! values held at that moment: every file of the set, and every input of every template, comes
//! from the same cycle, and a change in any source re-renders everything that reads it in the one
//! write (so one notification). Template-only files are rendered before the files that read them,
//! in the order [`render_order`] computes once at start.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::audit::{Access, Audit, Event, Object, Reason};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::provider::{self, Check, FetchKey, Provider, Version};
use crate::runtime::Paths;
use crate::secret::SecretValue;
use hush_config::{Backoff, ErrorClass};
use hush_config::{FileSpec, SidecarConfig, SourceKind, SourceRef};

/// Longest wait between attempts of the first fetch.
const INITIAL_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// One rendered file, ready to be written.
pub(crate) struct Rendered {
    /// File name inside the volume.
    pub name: String,
    /// Permission bits.
    pub mode: u32,
    /// Content, wiped on drop.
    pub bytes: Zeroizing<Vec<u8>>,
}

/// Writes a complete set of files atomically; returns whether anything changed on disk.
pub(crate) trait Sink {
    /// Replaces the whole set, or leaves the previous set intact on error.
    fn write(&mut self, files: &[Rendered]) -> Result<bool>;
}

impl Sink for crate::output::AtomicWriter {
    fn write(&mut self, files: &[Rendered]) -> Result<bool> {
        let set: Vec<crate::output::OutputFile<'_>> = files
            .iter()
            .map(|f| crate::output::OutputFile {
                name: &f.name,
                mode: f.mode,
                bytes: &f.bytes,
            })
            .collect();
        Ok(self.write_set(&set)? == crate::output::WriteOutcome::Written)
    }
}

/// A secret we hold.
struct Held {
    value: SecretValue,
    version: Version,
}

/// Everything known about one fetch key.
struct KeyState {
    source: SourceRef,
    kind: SourceKind,
    files: Vec<String>,
    held: Option<Held>,
}

/// The refresh engine of one sidecar.
pub(crate) struct Engine {
    files: Vec<FileSpec>,
    /// The files each file's template reads, by index into `files`.
    reads: Vec<BTreeSet<String>>,
    /// Indexes into `files`: template-only files before the files that read them.
    order: Vec<usize>,
    /// For a file, the files whose templates read it, directly or through template-only files:
    /// their content changes with it.
    readers: BTreeMap<String, BTreeSet<String>>,
    max_file_bytes: u64,
    providers: BTreeMap<SourceKind, Box<dyn Provider>>,
    keys: BTreeMap<FetchKey, KeyState>,
    sink: Box<dyn Sink>,
    notifier: Notifier,
    metrics: Metrics,
    audit: Audit,
    backoff: Backoff,
    /// Content changed since the last successful write (a write failed, or a value moved).
    dirty: bool,
    /// An on-change notification not delivered yet, and the retry timing.
    notice: Option<PendingNotice>,
    notice_backoff: Backoff,
}

/// A notification that failed: retried with backoff until delivered, or until a newer update
/// replaces it (that update's own notification covers both).
struct PendingNotice {
    attempts: u32,
    due: Instant,
}

/// Retry timing of a failed notification: from 1 s, doubling (with jitter) up to a minute.
fn notice_backoff() -> Backoff {
    Backoff::new(
        Duration::from_secs(1),
        Duration::from_secs(60),
        hush_config::backoff::DEFAULT_RANDOMIZATION,
    )
    .unwrap_or_else(|_| Backoff::standard())
}

impl Engine {
    /// Builds the providers the pod uses (and only those) and the key table.
    pub(crate) fn new(
        cfg: &SidecarConfig,
        paths: &Paths,
        sink: Box<dyn Sink>,
        notifier: Notifier,
        metrics: Metrics,
        audit: Audit,
    ) -> Result<Engine> {
        let mut providers = BTreeMap::new();
        for kind in cfg.source_kinds() {
            providers.insert(kind, provider::build(kind, cfg, paths, &audit)?);
        }
        let mut keys: BTreeMap<FetchKey, KeyState> = BTreeMap::new();
        for f in &cfg.files {
            let Some(source) = &f.source else {
                continue;
            };
            let (key, source) = FetchKey::of(source);
            keys.entry(key)
                .or_insert_with(|| KeyState {
                    kind: source.kind(),
                    source,
                    files: Vec::new(),
                    held: None,
                })
                .files
                .push(f.name.clone());
        }
        let reads = cfg
            .files
            .iter()
            .map(|f| match f.template.as_deref() {
                Some(t) => {
                    hush_config::template::file_references(t).map_err(|reason| Error::Config {
                        field: format!("files[{}].template", f.name),
                        reason,
                    })
                }
                None => Ok(BTreeSet::new()),
            })
            .collect::<Result<Vec<_>>>()?;
        let order = render_order(&cfg.files, &reads)?;
        let readers = readers(&cfg.files, &reads);
        Ok(Engine {
            files: cfg.files.clone(),
            reads,
            order,
            readers,
            max_file_bytes: cfg.operator.max_file_bytes,
            providers,
            keys,
            sink,
            notifier,
            metrics,
            audit,
            backoff: Backoff::standard(),
            dirty: false,
            notice: None,
            notice_backoff: notice_backoff(),
        })
    }

    fn record_ok(&self, key: &FetchKey) {
        if let Some(k) = self.keys.get(key) {
            for f in &k.files {
                self.metrics.fetched(k.kind.as_str(), f);
            }
        }
    }

    /// Counts, logs and audits a failed check (`fetch: None`) or fetch (`Some(why)`).
    fn record_err(&self, key: &FetchKey, e: &Error, fetch: Option<Option<Reason>>) {
        if let Some(k) = self.keys.get(key) {
            for f in &k.files {
                self.metrics.failed(k.kind.as_str(), f, e.class());
            }
            let (event, reason) = match fetch {
                None => (Event::Check, None),
                Some(why) => fetch_event(k, why),
            };
            let mut a = Access::new(event, Object::Secret, k.kind);
            a.reference = Some(key.as_str());
            a.files = &k.files;
            a.reason = reason;
            self.audit.record(a.failed(e));
            tracing::warn!(
                source = k.kind.as_str(),
                files = %k.files.join(","),
                class = e.class().as_str(),
                error = %e,
                "secret not refreshed; the last good files stay"
            );
        }
    }

    /// Audits a fetch of `key` that worked.
    fn record_fetched(
        &self,
        key: &FetchKey,
        why: Option<Reason>,
        version: &Version,
        changed: bool,
    ) {
        let Some(k) = self.keys.get(key) else {
            return;
        };
        let (event, reason) = fetch_event(k, why);
        let mut a = Access::new(event, Object::Secret, k.kind);
        a.reference = Some(key.as_str());
        a.files = &k.files;
        a.version = Some(version);
        a.lease_id = self
            .providers
            .get(&k.kind)
            .and_then(|p| p.lease_id(&k.source));
        a.reason = reason;
        a.changed = k.held.is_some().then_some(changed);
        self.audit.record(a);
    }

    /// Fetches `keys` and stores what changed. Returns the first error (permanent first) after
    /// trying every key. `why` says why a secret already held is read again (audit only).
    async fn fetch_keys(&mut self, keys: Vec<FetchKey>, why: Option<Reason>) -> Result<()> {
        let mut first: Option<Error> = None;
        // A store that failed transiently (down, unreachable) is not asked again in this round:
        // its other secrets are reported with the same error instead of N more failing requests.
        let mut down: BTreeMap<SourceKind, String> = BTreeMap::new();
        for key in keys {
            let Some(state) = self.keys.get(&key) else {
                continue;
            };
            let (kind, source) = (state.kind, state.source.clone());
            if let Some(reason) = down.get(&kind) {
                let e = Error::store(kind.as_str(), ErrorClass::Transient, reason.clone());
                self.record_err(&key, &e, Some(why));
                continue;
            }
            let Some(p) = self.providers.get_mut(&kind) else {
                continue;
            };
            match p.fetch(&source).await {
                Ok(f) => {
                    self.record_ok(&key);
                    let changed = self
                        .keys
                        .get(&key)
                        .and_then(|s| s.held.as_ref())
                        .is_none_or(|h| h.value != f.value);
                    self.record_fetched(&key, why, &f.version, changed);
                    if let Some(state) = self.keys.get_mut(&key) {
                        if changed {
                            self.dirty = true;
                            if state.held.is_some() {
                                let mut updated: BTreeSet<&str> = BTreeSet::new();
                                for file in &state.files {
                                    updated.insert(file.as_str());
                                    if let Some(r) = self.readers.get(file) {
                                        updated.extend(r.iter().map(String::as_str));
                                    }
                                }
                                for file in updated {
                                    self.metrics.file_updated(file);
                                }
                            }
                        }
                        state.held = Some(Held {
                            value: f.value,
                            version: f.version,
                        });
                    }
                }
                Err(e) => {
                    self.record_err(&key, &e, Some(why));
                    if e.class() == ErrorClass::Transient {
                        down.insert(
                            kind,
                            format!("not tried: the store failed in this round ({e})"),
                        );
                    }
                    first = Some(worse(first, e));
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// First fetch: every secret, retrying transient errors with backoff until `deadline`. A
    /// permanent error ends it at once (the pod's app must not start without its secrets).
    pub(crate) async fn initial(
        &mut self,
        deadline: Instant,
        what: &'static str,
        budget: Duration,
    ) -> Result<()> {
        // The app waits for this fetch: retry sooner than the steady-state backoff would.
        let mut backoff = Backoff::new(
            hush_config::backoff::MIN_START,
            INITIAL_BACKOFF_CAP,
            hush_config::backoff::DEFAULT_RANDOMIZATION,
        )?;
        loop {
            let missing: Vec<FetchKey> = self
                .keys
                .iter()
                .filter(|(_, s)| s.held.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            if missing.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let res = match tokio::time::timeout(left, self.fetch_keys(missing, None)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Deadline {
                    what,
                    after: budget,
                    last: None,
                }),
            };
            match res {
                Ok(()) => {}
                Err(e @ Error::Deadline { .. }) => return Err(e),
                Err(e) if e.class() == ErrorClass::Permanent => return Err(e),
                Err(e) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Deadline {
                            what,
                            after: budget,
                            last: Some(e.to_string()),
                        });
                    }
                    let wait = backoff.next_delay(Some(left));
                    tracing::info!(
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error = %e,
                        "first fetch failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    if Instant::now() >= deadline {
                        return Err(Error::Deadline {
                            what,
                            after: budget,
                            last: Some(e.to_string()),
                        });
                    }
                }
            }
        }
        self.backoff.reset();
        self.write(false).await?;
        self.update_lease_metrics();
        self.metrics.succeeded();
        Ok(())
    }

    /// Renders every file from the held values and writes the set. Notifies when asked and the
    /// volume changed.
    async fn write(&mut self, notify: bool) -> Result<bool> {
        let out = self.render_all()?;
        let changed = self.sink.write(&out)?;
        self.dirty = false;
        if changed {
            self.metrics.updated();
            tracing::info!(files = out.len(), "secrets volume updated");
            if notify {
                self.deliver(true).await;
            }
        }
        Ok(changed)
    }

    /// Renders every file from the values held now (see [`Engine::write`]).
    fn render_all(&self) -> Result<Vec<Rendered>> {
        // Every file's own value, selected from what is held now: all renders below read these,
        // so the set comes from one cycle.
        let mut values: BTreeMap<&str, SecretValue> = BTreeMap::new();
        for f in &self.files {
            let Some(source) = &f.source else {
                continue;
            };
            let (key, _) = FetchKey::of(source);
            let held = self
                .keys
                .get(&key)
                .and_then(|k| k.held.as_ref())
                .ok_or_else(|| Error::Render {
                    file: f.name.clone(),
                    reason: "no value fetched yet".into(),
                })?;
            let value =
                provider::select(&held.value, provider::selector(source)).map_err(|reason| {
                    // Name the reference (a path or secret id, never a value) so the user
                    // knows which secret lacks the field.
                    Error::Render {
                        file: f.name.clone(),
                        reason: format!("{source}: {reason}"),
                    }
                })?;
            values.insert(&f.name, value);
        }
        let mut rendered: Vec<Option<Zeroizing<Vec<u8>>>> = vec![None; self.files.len()];
        for &i in &self.order {
            let f = &self.files[i];
            let mut inputs = crate::format::Inputs::new();
            for name in &self.reads[i] {
                let input = match values.get(name.as_str()) {
                    Some(v) => crate::format::Input::Secret(v),
                    None => {
                        let text = self
                            .files
                            .iter()
                            .position(|g| g.name == *name)
                            .and_then(|j| rendered[j].as_ref())
                            .ok_or_else(|| Error::Render {
                                file: f.name.clone(),
                                reason: format!("files[\"{name}\"] is not rendered yet"),
                            })?;
                        crate::format::Input::Text(text)
                    }
                };
                inputs.insert(name.as_str(), input);
            }
            let bytes = crate::format::render_with(
                f,
                values.get(f.name.as_str()),
                &inputs,
                self.max_file_bytes,
            )?;
            rendered[i] = Some(bytes);
        }
        let mut out = Vec::with_capacity(self.files.len());
        for (f, bytes) in self.files.iter().zip(rendered) {
            out.push(Rendered {
                name: f.name.clone(),
                mode: f.mode,
                bytes: bytes.ok_or_else(|| Error::Render {
                    file: f.name.clone(),
                    reason: "not rendered".into(),
                })?,
            });
        }
        Ok(out)
    }

    /// Sends the on-change notification: at least once per update. A failure is retried with
    /// backoff ([`Engine::next_maintenance`] wakes the loop) until it is delivered or a newer
    /// update (`fresh`) supersedes it.
    async fn deliver(&mut self, fresh: bool) {
        if matches!(self.notifier, Notifier::None) {
            return;
        }
        let attempts = if fresh {
            if self.notice.is_some() {
                tracing::info!("a newer update supersedes the undelivered notification");
            }
            self.notice_backoff.reset();
            1
        } else {
            self.notice.as_ref().map_or(1, |n| n.attempts + 1)
        };
        match self.notifier.notify().await {
            Ok(()) => {
                self.notice = None;
                self.notice_backoff.reset();
                self.metrics.notification("delivered");
            }
            Err(e) => {
                self.metrics.notification("failed");
                let delay = self.notice_backoff.next_delay(None);
                tracing::warn!(
                    error = %e,
                    attempt = attempts,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "on-change notification failed; it will be retried"
                );
                self.notice = Some(PendingNotice {
                    attempts,
                    due: Instant::now() + delay,
                });
            }
        }
    }

    /// One refresh cycle: cheap checks, fetches of what changed, one write and at most one
    /// notification. Returns whether the volume changed.
    pub(crate) async fn refresh(&mut self) -> Result<bool> {
        self.metrics.cycle();
        let mut first: Option<Error> = None;
        let mut to_fetch = Vec::new();
        let kinds: Vec<SourceKind> = self.providers.keys().copied().collect();
        for kind in kinds {
            let (keys, refs): (Vec<FetchKey>, Vec<(SourceRef, Version)>) = self
                .keys
                .iter()
                .filter(|(_, s)| s.kind == kind)
                .map(|(k, s)| {
                    let v = s.held.as_ref().map_or(Version::None, |h| h.version.clone());
                    (k.clone(), (s.source.clone(), v))
                })
                .unzip();
            if keys.is_empty() {
                continue;
            }
            let pairs: Vec<(&SourceRef, &Version)> = refs.iter().map(|(s, v)| (s, v)).collect();
            let Some(p) = self.providers.get_mut(&kind) else {
                continue;
            };
            let results = p.check(&pairs).await;
            for (key, r) in keys.into_iter().zip(results) {
                match r {
                    Ok(Check::Unchanged) => {
                        if self.keys.get(&key).is_some_and(|k| k.held.is_none()) {
                            to_fetch.push(key);
                        }
                    }
                    Ok(Check::Changed) => to_fetch.push(key),
                    Err(e) => {
                        self.record_err(&key, &e, None);
                        first = Some(worse(first, e));
                    }
                }
            }
        }
        if let Err(e) = self.fetch_keys(to_fetch, Some(Reason::Refresh)).await {
            first = Some(worse(first, e));
        }
        let changed = self.write_if_dirty().await?;
        match first {
            Some(e) => Err(e),
            None => {
                self.metrics.succeeded();
                Ok(changed)
            }
        }
    }

    /// The earliest time any provider needs maintenance.
    pub(crate) fn next_maintenance(&self) -> Option<Instant> {
        self.providers
            .values()
            .filter_map(|p| p.next_maintenance())
            .chain(self.notice.as_ref().map(|n| n.due))
            .min()
    }

    /// Renews tokens and leases that are due, fetches what can no longer be renewed, writes and
    /// notifies if that changed the files.
    pub(crate) async fn maintain(&mut self) -> Result<bool> {
        let now = Instant::now();
        if self.notice.as_ref().is_some_and(|n| n.due <= now) {
            self.deliver(false).await;
        }
        let mut refetch = Vec::new();
        let mut first = None;
        for p in self.providers.values_mut() {
            if p.next_maintenance().is_none_or(|t| t > now) {
                continue;
            }
            match p.maintain().await {
                Ok(m) => {
                    self.metrics.renewed(m.leases_renewed, m.token_renewed);
                    self.metrics.replaced_leases(&[
                        ("revoked", m.leases_revoked),
                        ("forbidden", m.lease_revocations_forbidden),
                        ("failed", m.lease_revocations_failed),
                    ]);
                    refetch.extend(m.refetch);
                }
                Err(e) => {
                    tracing::warn!(error = %e, class = e.class().as_str(), "renewal failed");
                    first = Some(worse(first, e));
                }
            }
        }
        let keys: Vec<FetchKey> = refetch.iter().map(|s| FetchKey::of(s).0).collect();
        if !keys.is_empty() {
            tracing::info!(
                count = keys.len(),
                "fetching new dynamic secrets before their leases end"
            );
            if let Err(e) = self.fetch_keys(keys, Some(Reason::Lease)).await {
                first = Some(worse(first, e));
            }
        }
        let changed = self.write_if_dirty().await?;
        first.map_or(Ok(changed), Err)
    }

    /// The end of a cycle: writes (and notifies) if a value moved, and updates the lease gauges.
    /// Returns whether the volume changed.
    async fn write_if_dirty(&mut self) -> Result<bool> {
        let changed = if self.dirty {
            self.write(true).await?
        } else {
            false
        };
        self.update_lease_metrics();
        Ok(changed)
    }

    fn update_lease_metrics(&self) {
        let now = Instant::now();
        for k in self.keys.values() {
            let Some(p) = self.providers.get(&k.kind) else {
                continue;
            };
            if let Some(exp) = p.lease_expiry(&k.source) {
                for f in &k.files {
                    self.metrics
                        .lease_ttl(f, exp.saturating_duration_since(now));
                }
            }
        }
    }

    /// The delay before retrying after an error of `class` (bounded by the refresh interval).
    pub(crate) fn retry_delay(&mut self, class: ErrorClass, interval: Duration) -> Duration {
        match class {
            ErrorClass::Transient => self.backoff.next_delay(Some(interval)),
            ErrorClass::Permanent => interval,
        }
    }

    /// Resets the backoff after a clean cycle.
    pub(crate) fn reset_backoff(&mut self) {
        self.backoff.reset();
    }

    /// Revokes every provider's leases and tokens.
    pub(crate) async fn revoke_all(&mut self) {
        for p in self.providers.values_mut() {
            p.revoke_all().await;
        }
    }
}

/// The audit event of a read of `k`: a sealed value is decrypted; otherwise the first read is a
/// fetch and a later one a re-fetch, with `why` as its reason.
fn fetch_event(k: &KeyState, why: Option<Reason>) -> (Event, Option<Reason>) {
    let first = k.held.is_none();
    let event = match (k.kind, first) {
        (SourceKind::Sealed, _) => Event::Decrypt,
        (_, true) => Event::Fetch,
        (_, false) => Event::Refetch,
    };
    (event, if first { None } else { why })
}

/// For each file, the files that read it (`files["name"]`), directly or through template-only
/// files (whose output is what their readers see).
fn readers(files: &[FileSpec], reads: &[BTreeSet<String>]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        // Breadth-first over readers; each file is added once, so this ends.
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut next: Vec<&str> = vec![f.name.as_str()];
        while let Some(name) = next.pop() {
            for (g, r) in files.iter().zip(reads) {
                if r.contains(name) && found.insert(g.name.clone()) && g.source.is_none() {
                    next.push(g.name.as_str());
                }
            }
        }
        if !found.is_empty() {
            out.insert(f.name.clone(), found);
        }
    }
    out
}

/// The order files are rendered in: files with their own secret first, then template-only files
/// once every template-only file they read is rendered. The config check refuses cycles, so this
/// only fails on a config that skipped it.
fn render_order(files: &[FileSpec], reads: &[BTreeSet<String>]) -> Result<Vec<usize>> {
    let template_only: BTreeSet<&str> = files
        .iter()
        .filter(|f| f.source.is_none())
        .map(|f| f.name.as_str())
        .collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order: Vec<usize> = Vec::with_capacity(files.len());
    let mut waiting: Vec<usize> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if f.source.is_some() {
            order.push(i);
        } else {
            waiting.push(i);
        }
    }
    // Files that read a template-only file go after it, so they move to `waiting` too.
    let (ready, later): (Vec<usize>, Vec<usize>) = order
        .into_iter()
        .partition(|&i| reads[i].iter().all(|r| !template_only.contains(r.as_str())));
    order = ready;
    waiting.extend(later);
    while !waiting.is_empty() {
        let before = waiting.len();
        waiting.retain(|&i| {
            let ready = reads[i]
                .iter()
                .all(|r| !template_only.contains(r.as_str()) || done.contains(r.as_str()));
            if ready {
                order.push(i);
                if files[i].source.is_none() {
                    done.insert(files[i].name.as_str());
                }
            }
            !ready
        });
        if waiting.len() == before {
            let names: Vec<&str> = waiting.iter().map(|&i| files[i].name.as_str()).collect();
            return Err(Error::Config {
                field: "files".into(),
                reason: format!(
                    "the templates of {} read each other in a cycle",
                    names.join(", ")
                ),
            });
        }
    }
    Ok(order)
}

/// Keeps the more serious of two errors (permanent beats transient), else the first.
fn worse(a: Option<Error>, b: Error) -> Error {
    match a {
        None => b,
        Some(a) => {
            if a.class() == ErrorClass::Transient && b.class() == ErrorClass::Permanent {
                b
            } else {
                a
            }
        }
    }
}
