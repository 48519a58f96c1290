//! The three ways the binary runs, as the pod spec invokes them:
//! - [`run`]: the native sidecar. Fetch everything, write, write the started marker, then refresh
//!   until SIGTERM; on SIGTERM let the current write finish, revoke leases and the token (unless the
//!   pod opted out), and exit 0.
//! - [`once`]: the `init-only` container. Fetch, write, exit 0, or exit non-zero with a clear message
//!   when the fetch deadline passes first. Never revokes: the app still needs what it fetched.
//!   SIGHUP starts a refresh cycle at once (`kubectl exec ... -- kill -HUP 1` in a shared PID
//!   namespace, or from tests).
//! - [`probe`]: the exec startup probe. Exit 0 only if the marker exists. It runs every few seconds
//!   in every pod, so it reads one path and nothing else: no runtime, no config parse.
//!
//! Everything runs on a single-threaded tokio runtime (docs/architecture.md, "Footprint"). The
//! process environment is read through [`Env`] so tests never call `set_var`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::audit::Audit;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::refresh::{Engine, Sink};
use hush_config::ErrorClass;
use hush_config::{CONFIG_ENV, Mode, SidecarConfig};
use hush_contract::env as vars;
use hush_contract::paths;

/// Name of the started marker in the state directory.
pub(crate) const MARKER: &str = "started";
/// Test and development override: every fixed path under `/hush` is resolved under this directory
/// instead. The injector never sets it.
pub(crate) const ROOT_ENV: &str = hush_contract::env::ROOT;
/// Test override of the metrics listen address (default `0.0.0.0:<operator metricsPort>`).
pub(crate) const METRICS_ADDR_ENV: &str = hush_contract::env::METRICS_ADDR;

/// Read access to the process environment.
pub trait Env {
    /// The value of `name`, if set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The sidecar's fixed paths, optionally re-rooted for tests ([`ROOT_ENV`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Paths {
    root: Option<PathBuf>,
}

impl Paths {
    /// Paths from the environment.
    pub(crate) fn from_env(env: &dyn Env) -> Paths {
        Paths {
            root: env
                .var(ROOT_ENV)
                .filter(|r| !r.is_empty())
                .map(PathBuf::from),
        }
    }

    fn at(&self, p: &str) -> PathBuf {
        match &self.root {
            Some(r) => r.join(p.trim_start_matches('/')),
            None => PathBuf::from(p),
        }
    }

    /// The tmpfs secrets volume.
    pub(crate) fn secrets_dir(&self) -> PathBuf {
        self.at(paths::SECRETS_DIR)
    }
    /// The private state volume.
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.at(paths::STATE_DIR)
    }
    /// The started marker.
    pub(crate) fn marker(&self) -> PathBuf {
        self.state_dir().join(MARKER)
    }
    /// The projected service-account token for Vault.
    pub(crate) fn token_file(&self) -> PathBuf {
        self.at(paths::TOKEN_FILE)
    }
    /// The credentials Secret (AppRole ids or a static token).
    pub(crate) fn credentials_dir(&self) -> PathBuf {
        self.at(paths::CREDENTIALS_DIR)
    }
}

/// `hush-sidecar probe`: 0 when the marker exists, else 1.
pub fn probe(env: &dyn Env) -> i32 {
    if Paths::from_env(env).marker().is_file() {
        0
    } else {
        1
    }
}

/// Reads and validates `HUSH_CONFIG`.
pub fn load_config(env: &dyn Env) -> Result<SidecarConfig> {
    let raw = env.var(CONFIG_ENV).ok_or_else(|| Error::Config {
        field: CONFIG_ENV.into(),
        reason: "is not set; the injector sets it on the sidecar container".into(),
    })?;
    Ok(SidecarConfig::from_json(&raw)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io {
            path: "tokio runtime".into(),
            source: e,
        })
}

fn write_marker(paths: &Paths) -> Result<()> {
    let dir = paths.state_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let tmp = dir.join(".started.tmp");
    let io = |e| Error::Io {
        path: paths.marker().display().to_string(),
        source: e,
    };
    std::fs::write(&tmp, b"ok\n").map_err(io)?;
    std::fs::rename(&tmp, paths.marker()).map_err(io)
}

/// Names the pod in the log from the downward-API env the injector sets ([`vars::POD_NAME`],
/// [`vars::POD_NAMESPACE`]; absent when the sidecar is run by hand), and warns when the pod runs in
/// another namespace than the one its `HUSH_CONFIG` was made for (a pod spec copied between
/// namespaces): sealed values are bound to the config's namespace and Vault roles were checked for
/// it.
fn announce_pod(env: &dyn Env, cfg: &SidecarConfig) {
    let pod = env.var(vars::POD_NAME).unwrap_or_default();
    match env.var(vars::POD_NAMESPACE) {
        Some(ns) if ns != cfg.namespace => tracing::warn!(
            pod = %pod,
            namespace = %ns,
            config_namespace = %cfg.namespace,
            "HUSH_CONFIG was made for another namespace; let the injector inject this pod again"
        ),
        _ => tracing::info!(
            pod = %pod,
            namespace = %cfg.namespace,
            files = cfg.files.len(),
            "starting"
        ),
    }
}

/// `hush-sidecar once`: fetch, write, exit. Never revokes.
pub fn once(env: &dyn Env) -> Result<()> {
    let cfg = load_config(env)?;
    announce_pod(env, &cfg);
    crate::hardening::harden();
    let paths = Paths::from_env(env);
    runtime()?.block_on(async {
        let mut engine = Engine::new(
            &cfg,
            &paths,
            new_sink(&paths)?,
            Notifier::None,
            Metrics::new(),
            Audit::new(env, &cfg),
        )?;
        let budget = cfg.operator.fetch_deadline;
        engine
            .initial(Instant::now() + budget, "fetching the secrets", budget)
            .await?;
        crate::launch::install(&cfg, &paths.secrets_dir())?;
        tracing::info!(
            files = cfg.files.len(),
            "secrets written; exiting (init-only never revokes)"
        );
        Ok(())
    })
}

/// `hush-sidecar run`: the native sidecar.
pub fn run(env: &dyn Env) -> Result<()> {
    let cfg = load_config(env)?;
    announce_pod(env, &cfg);
    crate::hardening::harden();
    let paths = Paths::from_env(env);
    if cfg.mode == Mode::InitOnly {
        tracing::warn!("the config says init-only, but `run` was invoked; running as a sidecar");
    }
    let metrics_addr = match env.var(METRICS_ADDR_ENV) {
        Some(a) => a.parse::<SocketAddr>().map_err(|_| Error::Config {
            field: METRICS_ADDR_ENV.into(),
            reason: "must be <ip>:<port>".into(),
        })?,
        None => SocketAddr::from((Ipv4Addr::UNSPECIFIED, cfg.operator.metrics_port)),
    };
    let audit = Audit::new(env, &cfg);
    runtime()?.block_on(run_async(cfg, paths, metrics_addr, audit))
}

async fn run_async(
    cfg: SidecarConfig,
    paths: Paths,
    metrics_addr: SocketAddr,
    audit: Audit,
) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |k| {
        signal(k).map_err(|e| Error::Io {
            path: "signal handler".into(),
            source: e,
        })
    };
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut hup = sig(SignalKind::hangup())?;
    let metrics = Metrics::new().with_stale_after(crate::metrics::stale_after(cfg.refresh));
    metrics.serve(metrics_addr).await?;
    let notifier = Notifier::new(&cfg.on_change)?;
    let mut engine = Engine::new(&cfg, &paths, new_sink(&paths)?, notifier, metrics, audit)?;
    let budget = cfg.operator.fetch_deadline;
    let first = tokio::select! {
        r = engine.initial(Instant::now() + budget, "the first fetch", budget) => Some(r),
        _ = term.recv() => None,
        _ = int.recv() => None,
    };
    match first {
        None => {
            tracing::info!("stopped before the first fetch finished");
            shutdown(&mut engine, &cfg, "signal").await;
            return Ok(());
        }
        Some(Err(e)) => {
            shutdown(&mut engine, &cfg, "the first fetch failed").await;
            return Err(e);
        }
        Some(Ok(())) => {}
    }
    if let Err(e) = crate::launch::install(&cfg, &paths.secrets_dir()) {
        shutdown(&mut engine, &cfg, "the env launcher could not be installed").await;
        return Err(e);
    }
    write_marker(&paths)?;
    tracing::info!(files = cfg.files.len(), "secrets written; started");

    let mut next_refresh = Instant::now() + cfg.refresh;
    loop {
        let wake = engine
            .next_maintenance()
            .map_or(next_refresh, |m| m.min(next_refresh));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = hup.recv() => {
                tracing::info!("SIGHUP: refreshing now");
                next_refresh = Instant::now();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        // Work runs to completion unless a signal arrives while it waits on the network; writes
        // are synchronous, so a signal never interrupts one.
        let work = async {
            let now = Instant::now();
            let mut outcome: Result<()> = Ok(());
            if engine.next_maintenance().is_some_and(|m| m <= now)
                && let Err(e) = engine.maintain().await
            {
                outcome = Err(e);
            }
            if now >= next_refresh {
                match engine.refresh().await {
                    Ok(_) => {
                        if outcome.is_ok() {
                            engine.reset_backoff();
                        }
                        next_refresh = Instant::now() + cfg.refresh;
                    }
                    Err(e) => {
                        let delay = engine.retry_delay(e.class(), cfg.refresh);
                        tracing::warn!(
                            error = %e,
                            class = e.class().as_str(),
                            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            "refresh failed; keeping the last good files"
                        );
                        next_refresh = Instant::now() + delay;
                    }
                }
            }
            if let Err(e) = outcome
                && e.class() == ErrorClass::Transient
            {
                // A renewal failed transiently: the provider has rescheduled it.
                tracing::debug!(error = %e, "renewal will be retried");
            }
        };
        tokio::select! {
            _ = work => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    shutdown(&mut engine, &cfg, "signal").await;
    Ok(())
}

/// Revokes (unless disabled) on the way out; `why` says what ended the run, so a failed first
/// fetch is not logged as if a SIGTERM had come.
async fn shutdown(engine: &mut Engine, cfg: &SidecarConfig, why: &'static str) {
    if cfg.revoke_on_shutdown {
        tracing::info!(reason = why, "shutting down: revoking leases and the token");
        if tokio::time::timeout(Duration::from_secs(20), engine.revoke_all())
            .await
            .is_err()
        {
            tracing::warn!("revocation did not finish within 20 seconds");
        }
    } else {
        tracing::info!(
            reason = why,
            "shutting down: leaving leases to expire (revocation disabled)"
        );
    }
}

fn new_sink(paths: &Paths) -> Result<Box<dyn Sink>> {
    let dir = paths.secrets_dir();
    // The emptyDir exists in a pod; under HUSH_ROOT (tests) it may not yet.
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    Ok(Box::new(crate::output::AtomicWriter::open(&dir)?))
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    #[test]
    fn paths_rebase_under_root() {
        let mut env = BTreeMap::new();
        env.insert(ROOT_ENV.to_string(), "/tmp/x".to_string());
        let p = Paths::from_env(&env);
        assert_eq!(p.marker(), Path::new("/tmp/x/hush/state/started"));
        assert_eq!(Paths::default().token_file(), Path::new(paths::TOKEN_FILE));
    }

    #[test]
    fn probe_needs_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = BTreeMap::new();
        env.insert(ROOT_ENV.to_string(), dir.path().display().to_string());
        assert_eq!(probe(&env), 1);
        write_marker(&Paths::from_env(&env)).unwrap();
        assert_eq!(probe(&env), 0);
    }

    #[test]
    fn missing_config_is_a_clear_error() {
        let env = BTreeMap::new();
        let e = load_config(&env).unwrap_err().to_string();
        assert!(e.contains("HUSH_CONFIG"), "{e}");
    }
}
