//! `hush-faults`: the fault suite with figures (`scripts/faults`, docs/faults.md). It runs the real
//! `hush-sidecar` and `hush-injector` binaries against the real OpenBao of the test environment
//! and breaks things on purpose: OpenBao blackholed, then resetting, then back (through a loopback
//! proxy); SIGTERM and SIGKILL at random instants of a write; a full tmpfs; a webhook under
//! slowloris, a thousand connections, oversized and malformed bodies. Each case checks what a user
//! relies on (no file lost, emptied, torn or mixed; no crash; bounded memory; an answer within the
//! webhook timeout) and reports figures rather than asserting times. The table is printed and
//! written to `bench/results/faults.md` (or `--out`); `--smoke` runs a short version for
//! `scripts/test`. `fuzz-table` turns libFuzzer logs into the fuzzing section of the same file.
//! Values are synthetic and never printed: output names files, versions and sizes only.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hush_config::{FileSpec, Format, OperatorSettings, SidecarConfig, SourceRef, VaultAuth};
use hush_tests::env::{TestEnv, unique_name};
use hush_tests::faults::{
    FaultProxy, ProxyMode, Rng, SidecarProcess, Tmpfs, inspect_volume, mem_status, open_fds,
    synthetic_value,
};
use hush_tests::operator;
use rustix::process::Signal;

/// The secrets volume under `HUSH_ROOT` (`hush_contract::paths::SECRETS_DIR` re-rooted).
const SECRETS_DIR: &str = "hush/secrets";
/// The credentials Secret under `HUSH_ROOT` (`hush_contract::paths::CREDENTIALS_DIR`, key `token`).
const CREDENTIALS_DIR: &str = "hush/credentials";
/// The webhook timeout the chart sets (`timeoutSeconds: 5`): the bound a normal review must meet.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// The injector's memory limit in the chart (`resources.limits.memory: 64Mi`): a peak above it
/// is an OOM kill in a pod.
const INJECTOR_MEMORY_LIMIT_KIB: u64 = 64 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "hush-faults",
    about = "Hush's fault suite: break things, report figures"
)]
struct Args {
    /// The short version (about a minute) that scripts/test runs.
    #[arg(long)]
    smoke: bool,
    /// Runs only these cases (outage, sigterm, tmpfs, webhook); default all.
    #[arg(long = "case")]
    cases: Vec<String>,
    /// Where the table goes; default bench/results/faults.md. A --smoke run only prints it unless
    /// this is given (its short figures must not replace the committed ones).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the fault instants (default: the clock); printed so a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// Scratch directory (default: a fresh one under /tmp, removed at the end).
    #[arg(long)]
    work: Option<PathBuf>,
    /// The `hush-injector` binary (default: beside this one).
    #[arg(long)]
    injector_bin: Option<PathBuf>,
    /// The `hush-sidecar` binary (default: beside this one).
    #[arg(long)]
    sidecar_bin: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Writes the fuzzing section of the results from libFuzzer logs (`<target>.log` in --logs).
    FuzzTable {
        /// Directory of `<target>.log` files.
        #[arg(long)]
        logs: PathBuf,
        /// `target=corpus-dir` pairs.
        #[arg(long = "corpus", value_name = "TARGET=DIR")]
        corpora: Vec<String>,
        /// `target=artifacts-dir` pairs.
        #[arg(long = "artifacts", value_name = "TARGET=DIR")]
        artifacts: Vec<String>,
        /// Seconds each target ran.
        #[arg(long)]
        seconds: u64,
        /// The results file to update.
        #[arg(long)]
        out: PathBuf,
    },
}

/// How large each case is.
#[derive(Clone, Copy, Debug)]
struct Scale {
    blackhole: Duration,
    reset: Duration,
    outage_refresh: Duration,
    sigterms: usize,
    sigkills: usize,
    webhook_attack: Duration,
    slowloris: usize,
    concurrent: usize,
}

const FULL: Scale = Scale {
    blackhole: Duration::from_secs(300),
    reset: Duration::from_secs(60),
    outage_refresh: Duration::from_secs(60),
    sigterms: 1000,
    sigkills: 200,
    webhook_attack: Duration::from_secs(60),
    slowloris: 1000,
    concurrent: 1000,
};

const SMOKE: Scale = Scale {
    blackhole: Duration::from_secs(20),
    reset: Duration::from_secs(5),
    outage_refresh: Duration::from_secs(10),
    sigterms: 50,
    sigkills: 10,
    webhook_attack: Duration::from_secs(8),
    slowloris: 100,
    concurrent: 200,
};

/// One row of the table.
#[derive(Clone, Debug)]
struct Row {
    case: &'static str,
    goal: &'static str,
    pass: bool,
    figures: String,
}

/// Everything a case needs: the environment, the binaries, a Vault token of its own.
struct Ctx {
    env: TestEnv,
    root_client: vaultrs::client::VaultClient,
    sidecar_bin: PathBuf,
    injector_bin: PathBuf,
    work: PathBuf,
    /// A child token of the root token allowed to read `secret/<prefix>/*`; never the root token,
    /// which a sidecar revoking on shutdown would take from everyone.
    token: String,
    prefix: String,
    seed: u64,
}

impl Ctx {
    fn vault_socket(&self) -> Result<SocketAddr> {
        let hostport = self
            .env
            .vault_addr
            .strip_prefix("https://")
            .context("VAULT_ADDR is https://")?
            .trim_end_matches('/');
        hostport
            .parse()
            .with_context(|| format!("VAULT_ADDR {hostport} is not <ip>:<port>"))
    }

    async fn put(&self, name: &str, value: &str) -> Result<()> {
        let mut data = BTreeMap::new();
        data.insert("v", value);
        vaultrs::kv2::set(
            &self.root_client,
            "secret",
            &format!("{}/{name}", self.prefix),
            &data,
        )
        .await
        .with_context(|| format!("write secret/{}/{name}", self.prefix))?;
        Ok(())
    }

    /// A sidecar root with the token in its credentials directory.
    fn sidecar_root(&self, tag: &str) -> Result<PathBuf> {
        let root = self.work.join(tag);
        let creds = root.join(CREDENTIALS_DIR);
        std::fs::create_dir_all(&creds)?;
        std::fs::write(creds.join("token"), &self.token)?;
        std::fs::create_dir_all(root.join("hush/state"))?;
        Ok(root)
    }

    fn config(&self, vault_addr: &str, names: &[String], refresh: Duration) -> Result<String> {
        let operator = OperatorSettings {
            vault: Some(operator::vault_settings(&self.env, vault_addr)),
            min_refresh: Duration::from_secs(5),
            ..OperatorSettings::default()
        };
        let mut files = Vec::new();
        for n in names {
            files.push(FileSpec {
                name: n.clone(),
                source: Some(
                    SourceRef::parse(&format!("vault:secret/{}/{n}#v", self.prefix))
                        .map_err(anyhow::Error::msg)?,
                ),
                format: Format::Raw,
                template: None,
                mode: 0o444,
            });
        }
        let cfg = SidecarConfig {
            auth: VaultAuth::Token,
            credentials_secret: Some("fault-token".into()),
            refresh,
            files,
            // The token is shared by every run of a case; each run must leave it valid.
            revoke_on_shutdown: false,
            ..SidecarConfig::defaults("faults", &operator)
        };
        let json = cfg.to_json();
        SidecarConfig::from_json(&json).context("the fault suite's sidecar config is valid")?;
        Ok(json)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The last `retry_in_ms=` the sidecar logged.
fn log_retry_ms(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix("retry_in_ms="))
            .and_then(|v| v.parse().ok())
    })
}

/// The first line of `log` with `needle`, without colours and the timestamp.
fn log_line(log: &str, needle: &str) -> Option<String> {
    log.lines().find(|l| l.contains(needle)).map(|l| {
        let l = strip_ansi(l);
        // Drop the timestamp column tracing's fmt layer writes first.
        match l.split_once(' ') {
            Some((ts, rest)) if ts.contains('T') && ts.ends_with('Z') => rest.trim().to_string(),
            _ => l.trim().to_string(),
        }
    })
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Case 1: OpenBao unreachable.

async fn case_outage(ctx: &Ctx, scale: Scale) -> Result<Row> {
    let names: Vec<String> = (0..3).map(|i| format!("outage-{i}")).collect();
    let len = 4096;
    for n in &names {
        ctx.put(n, &synthetic_value(1, n, len)).await?;
    }
    let proxy = FaultProxy::start(ctx.vault_socket()?).await?;
    let root = ctx.sidecar_root("outage")?;
    let cfg = ctx.config(
        &format!("https://{}", proxy.addr),
        &names,
        scale.outage_refresh,
    )?;
    let mut sc = SidecarProcess::spawn(&ctx.sidecar_bin, "run", &cfg, &root, "sidecar.log")?;
    let dir = root.join(SECRETS_DIR);
    let started = Instant::now();
    loop {
        if inspect_volume(&dir, &names).consistent_version() == Ok(1) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) || sc.child.try_wait()?.is_some() {
            bail!(
                "the outage sidecar never wrote its first set; log:\n{}",
                sc.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The outage: a new version waits in OpenBao, unreachable.
    proxy.set(ProxyMode::Blackhole);
    for n in &names {
        ctx.put(n, &synthetic_value(2, n, len)).await?;
    }
    let mut checks = 0usize;
    let mut lost = Vec::new();
    let outage_start = Instant::now();
    let total = scale.blackhole + scale.reset;
    let mut reset_on = false;
    while outage_start.elapsed() < total {
        if !reset_on && outage_start.elapsed() >= scale.blackhole {
            proxy.set(ProxyMode::Reset);
            reset_on = true;
        }
        let view = inspect_volume(&dir, &names);
        checks += 1;
        for (name, r) in view.files.iter().chain(view.links.iter()) {
            if r != &Ok(1) {
                lost.push(format!(
                    "t+{:.0}s {name}: {}",
                    outage_start.elapsed().as_secs_f64(),
                    match r {
                        Ok(v) => format!("version {v}"),
                        Err(e) => e.clone(),
                    }
                ));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let metrics = sc.metrics_text();
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("hush_sidecar_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum();
    let log_before = sc.log_text();
    let last_step = log_retry_ms(&log_before);
    let failures_logged = log_before.matches("refresh failed").count();

    proxy.set(ProxyMode::Pass);
    let restored = Instant::now();
    let limit = scale.outage_refresh + Duration::from_secs(60);
    let mut recovered = None;
    while restored.elapsed() < limit {
        let view = inspect_volume(&dir, &names);
        match view.consistent_version() {
            Ok(2) => {
                recovered = Some(restored.elapsed());
                break;
            }
            Ok(1) => {}
            Ok(v) => lost.push(format!("after restore: unexpected version {v}")),
            Err(p) => lost.push(format!("after restore: {}", p.join("; "))),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sc.signal(Signal::TERM);
    let exit = sc.wait_timeout(Duration::from_secs(30));
    let pass = lost.is_empty() && recovered.is_some() && exit.is_some_and(|s| s.success());
    let mut figures = format!(
        "blackhole {}, reset {}, refresh {}; {checks} checks of 3 files: {} lost/emptied/torn; {} refresh failures logged, errors_total {errors}; last backoff step before restore {}; restore → next successful refresh {}",
        secs(scale.blackhole),
        secs(scale.reset),
        secs(scale.outage_refresh),
        lost.len(),
        failures_logged,
        last_step.map_or("none logged".to_string(), |m| format!("{m} ms")),
        recovered.map_or("not within the limit".to_string(), secs),
    );
    if !lost.is_empty() {
        figures.push_str(&format!(
            "; first problems: {}",
            lost.iter().take(3).cloned().collect::<Vec<_>>().join(" | ")
        ));
    }
    if exit.is_none_or(|s| !s.success()) {
        figures.push_str(&format!("; exit after SIGTERM: {exit:?}"));
    }
    Ok(Row {
        case: "1. OpenBao unreachable",
        goal: "0 files lost or emptied during the outage (checked every second); recovers after restore",
        pass,
        figures,
    })
}

// ---------------------------------------------------------------------------------------------
// Case 2: SIGTERM (and SIGKILL) at random instants of a write.

struct KillStats {
    runs: usize,
    old_set: usize,
    new_set: usize,
    no_set: usize,
    problems: Vec<String>,
    max_leftovers: usize,
    leftovers_at_end: usize,
    bad_exits: usize,
    /// Runs whose set was mixed, torn or missing.
    broken: usize,
    /// Signals sent while a new `..<timestamp>` directory was being filled, how many of those
    /// ended with the new set, and aimed runs that saw no write start.
    at_write: usize,
    at_write_new: usize,
    at_write_missed: usize,
    /// SIGTERMs that killed the process before its handler was installed, and the latest one.
    early_deaths: usize,
    early_max: Duration,
    window: Duration,
}

async fn kill_runs(
    ctx: &Ctx,
    tag: &str,
    sig: Signal,
    runs: usize,
    rng: &mut Rng,
) -> Result<KillStats> {
    let names: Vec<String> = (0..4).map(|i| format!("{tag}-{i}")).collect();
    let len = 192 * 1024;
    let root = ctx.sidecar_root(tag)?;
    // A real tmpfs, as in a pod; the volume persists across runs like an emptyDir across
    // container restarts.
    let _mnt = Tmpfs::mount(&root.join(SECRETS_DIR), "64m")?;
    let dir = root.join(SECRETS_DIR);
    let cfg = ctx.config(&ctx.env.vault_addr, &names, Duration::from_secs(300))?;
    let mut st = KillStats {
        runs: 0,
        old_set: 0,
        new_set: 0,
        no_set: 0,
        problems: Vec::new(),
        max_leftovers: 0,
        leftovers_at_end: 0,
        bad_exits: 0,
        broken: 0,
        at_write: 0,
        at_write_new: 0,
        at_write_missed: 0,
        early_deaths: 0,
        early_max: Duration::ZERO,
        window: Duration::ZERO,
    };
    // Calibrate: how long a run takes from spawn to its new set being visible.
    let mut version = 0u64;
    let mut calib = Vec::new();
    for _ in 0..5 {
        version += 1;
        for n in &names {
            ctx.put(n, &synthetic_value(version, n, len)).await?;
        }
        let mut sc = SidecarProcess::spawn(&ctx.sidecar_bin, "run", &cfg, &root, "sidecar.log")?;
        let t0 = Instant::now();
        loop {
            if inspect_volume(&dir, &names).consistent_version() == Ok(version) {
                calib.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) || sc.child.try_wait()?.is_some() {
                bail!(
                    "calibration run never wrote its set; log:\n{}",
                    sc.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        sc.signal(Signal::TERM);
        sc.wait_timeout(Duration::from_secs(30));
    }
    calib.sort();
    // Signals land anywhere from spawn to a little after the slowest calibrated write.
    st.window = calib[calib.len() - 1].mul_f64(1.3);

    let mut previous = Some(version);
    for i in 0..runs {
        version += 1;
        for n in &names {
            ctx.put(n, &synthetic_value(version, n, len)).await?;
        }
        // Two runs in three aim at the write itself: the signal follows the moment a new
        // `..<timestamp>` directory appears (the set is being filled) by up to 1.5 ms. The third
        // lands anywhere in the window (start-up, login, fetches, write, after).
        let at_write = i % 3 != 0;
        let before = dot_entries(&dir);
        let mut sc = SidecarProcess::spawn(&ctx.sidecar_bin, "run", &cfg, &root, "sidecar.log")?;
        let spawned = Instant::now();
        let mut hit_write = false;
        let delay = if at_write {
            let limit = st.window * 4;
            while spawned.elapsed() < limit {
                if dot_entries(&dir)
                    .iter()
                    .any(|e| !before.contains(e) && e != "..data" && e != "..data_tmp")
                {
                    hit_write = true;
                    break;
                }
                std::thread::sleep(Duration::from_micros(20));
            }
            if !hit_write {
                st.at_write_missed += 1;
            }
            std::thread::sleep(rng.duration_upto(Duration::from_micros(1500)));
            spawned.elapsed()
        } else {
            let d = rng.duration_upto(st.window);
            std::thread::sleep(d);
            d
        };
        sc.signal(sig);
        st.runs += 1;
        if hit_write {
            st.at_write += 1;
        }
        match sc.wait_timeout(Duration::from_secs(30)) {
            None => {
                st.bad_exits += 1;
                st.problems
                    .push(format!("run {i}: still running 30 s after the signal"));
            }
            Some(s) if sig == Signal::TERM && s.signal() == Some(Signal::TERM.as_raw()) => {
                // The default action: the signal came before the handler was installed.
                st.early_deaths += 1;
                st.early_max = st.early_max.max(delay);
            }
            Some(s) if sig == Signal::TERM && !s.success() => {
                st.bad_exits += 1;
                if st.problems.len() < 5 {
                    let log = sc.log_text();
                    st.problems.push(format!(
                        "run {i}: exit {s} after SIGTERM at {}: {}",
                        ms(delay),
                        log_line(&log, "ERROR")
                            .or_else(|| log.lines().last().map(str::to_string))
                            .unwrap_or_default()
                    ));
                }
            }
            Some(_) => {}
        }
        let view = inspect_volume(&dir, &names);
        st.max_leftovers = st.max_leftovers.max(view.leftovers.len());
        st.leftovers_at_end = view.leftovers.len();
        match view.consistent_version() {
            Ok(v) if v == version => {
                st.new_set += 1;
                if hit_write {
                    st.at_write_new += 1;
                }
                previous = Some(v);
            }
            Ok(v) if Some(v) == previous => {
                st.old_set += 1;
                if hit_write && sig == Signal::TERM {
                    // A write had begun: SIGTERM must let it finish (README, "Modes").
                    st.broken += 1;
                    st.problems.push(format!(
                        "run {i}: SIGTERM {} into a write left the previous set",
                        ms(delay)
                    ));
                }
            }
            Ok(v) => {
                st.broken += 1;
                st.problems.push(format!(
                    "run {i}: set of version {v}, expected {version} or {previous:?}"
                ));
            }
            Err(p) => {
                if previous.is_none() && view.data_dir.is_none() {
                    st.no_set += 1;
                } else {
                    st.broken += 1;
                    st.problems.push(format!(
                        "run {i} (signal at {}): {}",
                        ms(delay),
                        p.join("; ")
                    ));
                }
            }
        }
        // Every stable link must agree with ..data once the writer is gone.
        for (name, r) in &view.links {
            if view.files.get(name) != Some(r) {
                st.broken += 1;
                st.problems
                    .push(format!("run {i}: link {name} disagrees with ..data/{name}"));
            }
        }
    }
    Ok(st)
}

/// The `..`-prefixed entries of a volume root.
fn dot_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".."))
                .collect()
        })
        .unwrap_or_default()
}

async fn case_sigterm(ctx: &Ctx, scale: Scale, rng: &mut Rng) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (sig, n, case, tag) in [
        (Signal::TERM, scale.sigterms, "2. SIGTERM mid-write", "term"),
        (
            Signal::KILL,
            scale.sigkills,
            "2b. SIGKILL mid-write",
            "kill",
        ),
    ] {
        let st = kill_runs(ctx, tag, sig, n, rng).await?;
        // After SIGTERM the write finishes, so at most a stale link or two may remain; after
        // SIGKILL every killed write may leave its directory until the next write completes.
        let pass = st.problems.is_empty()
            && st.bad_exits == 0
            && (sig == Signal::KILL || st.max_leftovers <= 2);
        let mut figures = format!(
            "{} signals (one in three at a uniform instant in [0, {}] after spawn, two in three aimed at the write; 4 files × 192 KiB, new versions every run): after each, {} complete new sets, {} complete previous sets, {} mixed/partial/missing; max leftover `..` entries {} (at the end {}); {} bad exits",
            st.runs,
            ms(st.window),
            st.new_set,
            st.old_set,
            st.broken,
            st.max_leftovers,
            st.leftovers_at_end,
            st.bad_exits,
        );
        figures.push_str(&format!(
            "; {} signals sent 0 to 1.5 ms after a new `..<timestamp>` directory appeared (a write in progress): {} ended with the new set, {} with the previous one; {} aimed runs saw no write start",
            st.at_write,
            st.at_write_new,
            st.at_write - st.at_write_new,
            st.at_write_missed
        ));
        if st.early_deaths > 0 {
            figures.push_str(&format!(
                "; {} SIGTERMs (latest {} after exec) came before the handler was installed and ended the process with the default action (exit by signal; nothing fetched or written yet)",
                st.early_deaths,
                ms(st.early_max)
            ));
        }
        if st.no_set > 0 {
            figures.push_str(&format!("; {} runs before any set", st.no_set));
        }
        if !st.problems.is_empty() {
            figures.push_str(&format!(
                "; first problems: {}",
                st.problems
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        rows.push(Row {
            case,
            goal: if sig == Signal::TERM {
                "`..data` is one complete set of one version after every signal; exit 0; leftovers bounded"
            } else {
                "`..data` is one complete set of one version after every kill; leftovers are removed by the next completed write"
            },
            pass,
            figures,
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Case 3: a full tmpfs.

async fn wait_log(sc: &SidecarProcess, needle: &str, after: usize, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if sc.log_text().matches(needle).count() > after {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn case_tmpfs(ctx: &Ctx) -> Result<Row> {
    let names: Vec<String> = (0..3).map(|i| format!("full-{i}")).collect();
    let small = 40 * 1024;
    let root = ctx.sidecar_root("tmpfs")?;
    let dir = root.join(SECRETS_DIR);
    let mnt = Tmpfs::mount(&dir, "256k")?;
    for n in &names {
        ctx.put(n, &synthetic_value(1, n, small)).await?;
    }
    let refresh = Duration::from_secs(5);
    let cfg = ctx.config(&ctx.env.vault_addr, &names, refresh)?;
    let mut sc = SidecarProcess::spawn(&ctx.sidecar_bin, "run", &cfg, &root, "../tmpfs.log")?;
    let t0 = Instant::now();
    while inspect_volume(&dir, &names).consistent_version() != Ok(1) {
        if t0.elapsed() > Duration::from_secs(60) || sc.child.try_wait()?.is_some() {
            bail!("the tmpfs sidecar never wrote; log:\n{}", sc.log_text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut problems = Vec::new();
    let snapshot = |dir: &Path| -> Vec<Vec<u8>> {
        names
            .iter()
            .map(|n| std::fs::read(dir.join(n)).unwrap_or_default())
            .collect()
    };
    let good = snapshot(&dir);

    // (a) Something else filled the volume: the next set (same size) does not fit.
    let filler = dir.join("filler");
    {
        let mut f = std::fs::File::create(&filler)?;
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let used_before = std::fs::metadata(&filler).map(|m| m.len()).unwrap_or(0);
    // Free a little, so metadata operations still work but a 120 KiB set does not fit.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)?
        .set_len(used_before.saturating_sub(64 * 1024))?;
    let fails_before = sc.log_text().matches("refresh failed").count();
    for n in &names {
        ctx.put(n, &synthetic_value(2, n, small)).await?;
    }
    let failed_a = wait_log(&sc, "refresh failed", fails_before, refresh * 4).await;
    let view_a = inspect_volume(&dir, &names);
    if view_a.consistent_version() != Ok(1) || snapshot(&dir) != good {
        problems.push(format!(
            "(a) the last good set changed: {:?}",
            view_a.consistent_version()
        ));
    }
    let leftovers_a = view_a.leftovers.len();
    let log = sc.log_text();
    let quote = log
        .lines()
        .filter(|l| l.contains("refresh failed"))
        .nth(fails_before)
        .map(|l| log_line(l, "refresh failed").unwrap_or_default())
        .unwrap_or_else(|| "(no refresh failure logged)".into());

    // Space comes back: the pending set must be written without another change in the store.
    std::fs::remove_file(&filler)?;
    let freed = Instant::now();
    let mut recovered_a = None;
    while freed.elapsed() < refresh * 6 {
        if inspect_volume(&dir, &names).consistent_version() == Ok(2) {
            recovered_a = Some(freed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if recovered_a.is_none() {
        problems.push("(a) the pending set was not written after space came back".into());
    }
    let good2 = snapshot(&dir);

    // (b) The new set alone is larger than the volume (3 × 100 KiB in 256 KiB).
    let fails_before = sc.log_text().matches("refresh failed").count();
    for n in &names {
        ctx.put(n, &synthetic_value(3, n, 100 * 1024)).await?;
    }
    let failed_b = wait_log(&sc, "refresh failed", fails_before, refresh * 4).await;
    let view_b = inspect_volume(&dir, &names);
    if view_b.consistent_version() != Ok(2) || snapshot(&dir) != good2 {
        problems.push(format!(
            "(b) the last good set changed: {:?}",
            view_b.consistent_version()
        ));
    }
    let leftovers_b = view_b.leftovers.len();
    for n in &names {
        ctx.put(n, &synthetic_value(4, n, small)).await?;
    }
    let t_b = Instant::now();
    let mut recovered_b = None;
    while t_b.elapsed() < refresh * 6 {
        if inspect_volume(&dir, &names).consistent_version() == Ok(4) {
            recovered_b = Some(t_b.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if recovered_b.is_none() {
        problems.push("(b) a set that fits again was not written".into());
    }

    // (c) What a writer killed mid-write leaves (a partial `..<timestamp>` directory, case 2b)
    // takes the room the next set needs. Only the writer creates such directories, and the next
    // successful write removes them; the question is whether a write can still succeed.
    let partial = dir.join("..1000000000.000000000_1_0");
    std::fs::create_dir(&partial)?;
    // One set's worth, as a write killed just before its swap leaves: with the current set that
    // is 240 KiB of the 256 KiB volume, so a third set cannot fit beside them.
    for n in &names {
        std::fs::write(partial.join(n), vec![b'x'; small])?;
    }
    let fails_before = sc.log_text().matches("refresh failed").count();
    for n in &names {
        ctx.put(n, &synthetic_value(5, n, small)).await?;
    }
    let t_c = Instant::now();
    let mut recovered_c = None;
    while t_c.elapsed() < refresh * 3 {
        if inspect_volume(&dir, &names).consistent_version() == Ok(5) {
            recovered_c = Some(t_c.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view_c = inspect_volume(&dir, &names);
    let failures_c = sc
        .log_text()
        .matches("refresh failed")
        .count()
        .saturating_sub(fails_before);
    if view_c.consistent_version().is_err() {
        problems.push(format!(
            "(c) the set is broken: {:?}",
            view_c.consistent_version()
        ));
    }
    if recovered_c.is_none() {
        problems.push(format!(
            "(c) the new set was never written: {failures_c} refresh failures in {}, the partial directory is still there: {}",
            secs(t_c.elapsed()),
            partial.exists()
        ));
    }
    if !failed_a || !failed_b {
        problems.push(format!(
            "a refresh failure was not logged (a: {failed_a}, b: {failed_b})"
        ));
    }
    sc.signal(Signal::TERM);
    let exit = sc.wait_timeout(Duration::from_secs(30));
    drop(mnt);
    let pass = problems.is_empty() && exit.is_some_and(|s| s.success());
    let mut figures = format!(
        "256 KiB tmpfs, 3 files × 40 KiB: (a) volume filled by another writer → last good set unchanged and readable: {}, leftover `..` entries {leftovers_a}, pending set written {} after space came back; (b) a 3 × 100 KiB set → last good set unchanged: {}, leftovers {leftovers_b}, a fitting set written {} later; (c) a partial `..<timestamp>` directory of one set (what a write killed before its swap leaves, see 2b) beside the current set → set still readable: {}, new set written {}. Log: `{quote}`",
        view_a.consistent_version() == Ok(1),
        recovered_a.map_or("never".into(), secs),
        view_b.consistent_version() == Ok(2),
        recovered_b.map_or("never".into(), secs),
        view_c.consistent_version().is_ok(),
        recovered_c.map_or("never".into(), secs),
    );
    if !problems.is_empty() {
        figures.push_str(&format!("; problems: {}", problems.join(" | ")));
    }
    Ok(Row {
        case: "3. tmpfs full",
        goal: "the last good set stays readable and unchanged; the log names the failure clearly; a new set is written once it can fit",
        pass,
        figures,
    })
}

// ---------------------------------------------------------------------------------------------
// Case 4: webhook abuse.

struct Webhook {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

fn make_pki(dir: &Path) -> Result<(PathBuf, PathBuf, String)> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "hush faults CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &ca)?;
    let crt = dir.join("tls.crt");
    let keyf = dir.join("tls.key");
    std::fs::write(&crt, cert.pem())?;
    std::fs::write(&keyf, key.serialize_pem())?;
    Ok((crt, keyf, ca.pem()))
}

fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Webhook {
    fn connect(&self, timeout: Duration) -> Result<Tls> {
        let tcp = TcpStream::connect_timeout(&self.addr, timeout)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let _ = tcp.set_nodelay(true);
        let conn = rustls::ClientConnection::new(
            self.tls.clone(),
            rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned(),
        )?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    /// One request on a fresh connection: (status, body, latency including the handshake).
    fn request(
        &self,
        path: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>, Duration)> {
        let t0 = Instant::now();
        let mut tls = self.connect(timeout)?;
        let (status, body) = send_on(&mut tls, path, body, false)?;
        Ok((status, body, t0.elapsed()))
    }
}

/// Sends one request and reads one response on an open connection.
fn send_on(tls: &mut Tls, path: &str, body: &[u8], keep_alive: bool) -> Result<(u16, Vec<u8>)> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    tls.write_all(head.as_bytes())?;
    tls.write_all(body)?;
    tls.flush()?;
    read_response(tls)
}

fn read_response(tls: &mut Tls) -> Result<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            bail!("connection closed before a response");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, body))
}

fn review_body(uid: &str) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a",
            "operation": "CREATE",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "app",
                    "namespace": "team-a",
                    "annotations": {
                        "hush.dev/inject": "true",
                        "hush.dev/role": "app",
                        "hush.dev/secret-db": "vault:secret/app#password"
                    }
                },
                "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "registry.example/app:1"}]}
            }
        }
    })
    .to_string()
    .into_bytes()
}

/// Bodies the webhook must refuse cleanly (4xx), each named for the table.
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let good = review_body("bad");
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not JSON", b"\x00\xff<html>".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("null", b"null".to_vec()),
        ("wrong types", br#"{"apiVersion":1,"kind":[],"request":"x"}"#.to_vec()),
        (
            "wrong version",
            String::from_utf8_lossy(&good)
                .replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
                .into_bytes(),
        ),
        (
            "object not a pod",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":"just a string"}}"#.to_vec(),
        ),
        ("deep nesting", {
            let mut b = b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u\",\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":".to_vec();
            b.extend(std::iter::repeat_n(b'[', 200_000));
            b
        }),
    ];
    // 10,000 hush.dev annotations: bounded by the parser, not by the body limit.
    let mut ann = serde_json::Map::new();
    ann.insert("hush.dev/inject".into(), "true".into());
    for i in 0..10_000 {
        ann.insert(
            format!("hush.dev/secret-f{i}"),
            format!("vault:secret/app{i}#k").into(),
        );
    }
    let mut many: serde_json::Value =
        serde_json::from_slice(&good).unwrap_or(serde_json::Value::Null);
    if let Some(m) = many.pointer_mut("/request/object/metadata/annotations") {
        *m = serde_json::Value::Object(ann);
    }
    v.push(("10k annotations", many.to_string().into_bytes()));
    v
}

/// A body just under the 3 MiB limit that parses into many small JSON values (amplification).
fn amplifying_body() -> Vec<u8> {
    let mut b = b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"amp\",\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"namespace\":\"team-a\",\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"},\"x\":[".to_vec();
    let limit = 3 * 1024 * 1024 - 1024;
    while b.len() < limit {
        b.extend_from_slice(b"0,");
    }
    b.extend_from_slice(b"0]}}}");
    b
}

#[derive(Default)]
struct Counters {
    ok: AtomicUsize,
    refused_4xx: AtomicUsize,
    server_5xx: AtomicUsize,
    io_errors: AtomicUsize,
    closed_by_server: AtomicUsize,
}

fn spawn_named<F: FnOnce() + Send + 'static>(
    name: &str,
    f: F,
) -> Result<std::thread::JoinHandle<()>> {
    Ok(std::thread::Builder::new()
        .name(name.into())
        .stack_size(256 * 1024)
        .spawn(f)?)
}

async fn case_webhook(ctx: &Ctx, scale: Scale) -> Result<Row> {
    // Enough descriptors for the attack on both ends (the injector inherits the limit).
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: hard,
            maximum: hard,
        },
    );
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or("unlimited".to_string(), |v| v.to_string());
    let dir = ctx.work.join("webhook");
    std::fs::create_dir_all(&dir)?;
    let (crt, key, ca_pem) = make_pki(&dir)?;
    let port = hush_tests::harness::free_port();
    let health = hush_tests::harness::free_port();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:{port}\n  healthListen: 127.0.0.1:{health}\n  tlsCertFile: {}\n  tlsKeyFile: {}\nsidecar:\n  image: hush-sidecar:faults\noperator:\n  vault:\n    addr: https://vault.example:8200\nallowedRoles:\n  team-a: [app]\n",
        crt.display(),
        key.display()
    );
    let cfg_path = dir.join("injector.yaml");
    std::fs::write(&cfg_path, yaml)?;
    hush_injector::RawConfig::from_file(&cfg_path)
        .and_then(hush_injector::RawConfig::build)
        .context("the fault suite's injector config is valid")?;
    let log = std::fs::File::create(dir.join("injector.log"))?;
    let mut child = std::process::Command::new(&ctx.injector_bin)
        .arg("--config")
        .arg(&cfg_path)
        .env_clear()
        .env("HUSH_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let pid = child.id();
    let wh = Arc::new(Webhook {
        addr: ([127, 0, 0, 1], port).into(),
        tls: client_config(&ca_pem)?,
    });
    let t0 = Instant::now();
    loop {
        match wh.request("/mutate", &review_body("warm"), Duration::from_secs(2)) {
            Ok((200, _, _)) => break,
            _ if t0.elapsed() > Duration::from_secs(30) => {
                let _ = child.kill();
                bail!("the injector did not answer within 30 s");
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    // Baseline latency, idle.
    let mut idle = Vec::new();
    for i in 0..20 {
        let (s, b, d) = wh.request(
            "/mutate",
            &review_body(&format!("idle-{i}")),
            WEBHOOK_TIMEOUT,
        )?;
        if s != 200 || !String::from_utf8_lossy(&b).contains("\"patch\"") {
            bail!("a normal review was not patched (status {s})");
        }
        idle.push(d);
    }
    idle.sort();
    let idle_rss = mem_status(pid).unwrap_or_default();

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let peak_rss = Arc::new(AtomicU64::new(0));
    let peak_fds = Arc::new(AtomicUsize::new(0));
    {
        let (stop, peak_rss, peak_fds) = (stop.clone(), peak_rss.clone(), peak_fds.clone());
        threads.push(spawn_named("rss", move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(m) = mem_status(pid) {
                    peak_rss.fetch_max(m.rss_kib, Ordering::Relaxed);
                }
                peak_fds.fetch_max(open_fds(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })?);
    }

    // Slowloris: TLS up, then a header one byte a second, never finished.
    let slow = Arc::new(Counters::default());
    let slow_open = Arc::new(AtomicUsize::new(0));
    for i in 0..scale.slowloris {
        let (wh, stop, slow, slow_open) =
            (wh.clone(), stop.clone(), slow.clone(), slow_open.clone());
        threads.push(spawn_named("slowloris", move || {
            let Ok(mut tls) = wh.connect(Duration::from_secs(30)) else {
                slow.io_errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            slow_open.fetch_add(1, Ordering::Relaxed);
            let head = format!("POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ");
            if tls
                .write_all(head.as_bytes())
                .and_then(|()| tls.flush())
                .is_err()
            {
                slow.closed_by_server.fetch_add(1, Ordering::Relaxed);
                return;
            }
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                if tls.write_all(b"a").and_then(|()| tls.flush()).is_err() {
                    slow.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            slow.ok.fetch_add(1, Ordering::Relaxed);
        })?);
    }
    // Plain TCP that never starts TLS (bounded by the handshake timeout).
    let raw_open = Arc::new(AtomicUsize::new(0));
    for _ in 0..(scale.slowloris / 4) {
        let (addr, stop, raw_open) = (wh.addr, stop.clone(), raw_open.clone());
        threads.push(spawn_named("raw", move || {
            if let Ok(s) = TcpStream::connect(addr) {
                raw_open.fetch_add(1, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                }
                drop(s);
            }
        })?);
    }
    // A thousand concurrent connections, each sending a normal review at once and staying open.
    let conc = Arc::new(Counters::default());
    let barrier = Arc::new(std::sync::Barrier::new(scale.concurrent));
    for i in 0..scale.concurrent {
        let (wh, stop, conc, barrier) = (wh.clone(), stop.clone(), conc.clone(), barrier.clone());
        threads.push(spawn_named("concurrent", move || {
            let tls = wh.connect(Duration::from_secs(60));
            barrier.wait();
            let Ok(mut tls) = tls else {
                conc.io_errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            match send_on(&mut tls, "/mutate", &review_body(&format!("c-{i}")), true) {
                Ok((200, _)) => conc.ok.fetch_add(1, Ordering::Relaxed),
                Ok((s, _)) if s >= 500 => conc.server_5xx.fetch_add(1, Ordering::Relaxed),
                Ok(_) => conc.refused_4xx.fetch_add(1, Ordering::Relaxed),
                Err(_) => conc.io_errors.fetch_add(1, Ordering::Relaxed),
            };
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
            }
        })?);
    }
    // The probe: a normal review every half second while the attack runs. Phase 1 holds the
    // connections only; phase 2 adds oversized and malformed bodies, phase 3 amplifying ones, so
    // each phase's memory can be told apart.
    let mut probe = Vec::new();
    let mut probe_failures = Vec::new();
    let mut n = 0;
    let third = scale.webhook_attack / 3;
    let bad = Arc::new(Counters::default());
    let oversized = Arc::new(Counters::default());
    let amp = Arc::new(Counters::default());
    let mut peaks = Vec::new();
    for phase in 0..3 {
        if phase == 1 {
            peak_rss.store(0, Ordering::Relaxed);
            // Oversized bodies (declared and chunked), malformed bodies and amplifying bodies, in loops.
            {
                let (wh, stop, oversized) = (wh.clone(), stop.clone(), oversized.clone());
                threads.push(spawn_named("oversized", move || {
                let big = vec![b' '; 4 * 1024 * 1024];
                let mut chunked = false;
                while !stop.load(Ordering::Relaxed) {
                    let r = wh.connect(WEBHOOK_TIMEOUT).and_then(|mut tls| {
                        if chunked {
                            tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")?;
                            for part in big.chunks(64 * 1024) {
                                if tls.write_all(format!("{:x}\r\n", part.len()).as_bytes()).is_err()
                                    || tls.write_all(part).is_err()
                                    || tls.write_all(b"\r\n").is_err()
                                {
                                    break;
                                }
                            }
                            let _ = tls.write_all(b"0\r\n\r\n");
                            read_response(&mut tls)
                        } else {
                            send_on(&mut tls, "/mutate", &big, false)
                        }
                    });
                    chunked = !chunked;
                    match r {
                        Ok((413, _)) => oversized.refused_4xx.fetch_add(1, Ordering::Relaxed),
                        Ok((s, _)) if s >= 500 => oversized.server_5xx.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => oversized.ok.fetch_add(1, Ordering::Relaxed),
                        // The server may answer 413 and close before the upload ends.
                        Err(_) => oversized.io_errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })?);
            }
            {
                let (wh, stop, bad) = (wh.clone(), stop.clone(), bad.clone());
                threads.push(spawn_named("malformed", move || {
                    let bodies = malformed_bodies();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let (_, body) = &bodies[i % bodies.len()];
                        let path = if i.is_multiple_of(2) {
                            "/mutate"
                        } else {
                            "/validate"
                        };
                        i += 1;
                        match wh.request(path, body, WEBHOOK_TIMEOUT) {
                            Ok((s, _, _)) if (400..500).contains(&s) => {
                                bad.refused_4xx.fetch_add(1, Ordering::Relaxed)
                            }
                            Ok((s, _, _)) if s >= 500 => {
                                bad.server_5xx.fetch_add(1, Ordering::Relaxed)
                            }
                            Ok(_) => bad.ok.fetch_add(1, Ordering::Relaxed),
                            Err(_) => bad.io_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })?);
            }
        }
        if phase == 2 {
            peak_rss.store(0, Ordering::Relaxed);
            for _ in 0..4 {
                let (wh, stop, amp) = (wh.clone(), stop.clone(), amp.clone());
                threads.push(spawn_named("amplify", move || {
                    let body = amplifying_body();
                    while !stop.load(Ordering::Relaxed) {
                        match wh.request("/mutate", &body, Duration::from_secs(30)) {
                            Ok((s, _, _)) if s >= 500 => {
                                amp.server_5xx.fetch_add(1, Ordering::Relaxed)
                            }
                            Ok((s, _, _)) if s >= 400 => {
                                amp.refused_4xx.fetch_add(1, Ordering::Relaxed)
                            }
                            Ok(_) => amp.ok.fetch_add(1, Ordering::Relaxed),
                            Err(_) => amp.io_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })?);
            }
        }
        let phase_start = Instant::now();
        while phase_start.elapsed() < third {
            n += 1;
            let wh2 = wh.clone();
            let r = tokio::task::spawn_blocking(move || {
                wh2.request(
                    "/mutate",
                    &review_body(&format!("probe-{n}")),
                    WEBHOOK_TIMEOUT,
                )
            })
            .await?;
            match r {
                Ok((200, b, d)) if String::from_utf8_lossy(&b).contains("\"patch\"") => {
                    probe.push(d)
                }
                Ok((s, _, d)) => probe_failures.push(format!("status {s} after {}", ms(d))),
                Err(e) => probe_failures.push(format!("{e:#}")),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        peaks.push(peak_rss.load(Ordering::Relaxed));
    }
    let during = mem_status(pid).unwrap_or_default();
    let slow_open_at_end = slow_open.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let alive = child.try_wait()?.is_none();
    let after = mem_status(pid).unwrap_or_default();
    let after_ok = wh
        .request("/mutate", &review_body("after"), WEBHOOK_TIMEOUT)
        .map(|(s, _, d)| (s, d));
    if let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(p, Signal::TERM);
    }
    let exit = {
        let t = Instant::now();
        loop {
            if let Some(s) = child.try_wait()? {
                break Some(s);
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    probe.sort();
    let probe_max = probe.last().copied().unwrap_or_default();
    let c = |x: &Counters| {
        format!(
            "{} 200, {} 4xx, {} 5xx, {} I/O errors",
            x.ok.load(Ordering::Relaxed),
            x.refused_4xx.load(Ordering::Relaxed),
            x.server_5xx.load(Ordering::Relaxed),
            x.io_errors.load(Ordering::Relaxed)
        )
    };
    let five_xx = [&conc, &bad, &oversized, &amp]
        .iter()
        .map(|x| x.server_5xx.load(Ordering::Relaxed))
        .sum::<usize>();
    let hwm = during.hwm_kib.max(after.hwm_kib);
    let pass = alive
        && hwm <= INJECTOR_MEMORY_LIMIT_KIB
        && probe_failures.is_empty()
        && !probe.is_empty()
        && probe_max < WEBHOOK_TIMEOUT
        && five_xx == 0
        && matches!(after_ok, Ok((200, _)));
    let mut figures = format!(
        "`{}`, {} of attack, RLIMIT_NOFILE {nofile}: {slow_open_at_end} slowloris TLS connections held (server closed {}), {} raw TCP never handshaking, {} concurrent keep-alive connections ({}), oversized 4 MiB bodies ({}; 413 expected), malformed bodies ({}), 4 loops of 3 MiB amplifying bodies ({}). Probe review every 0.5 s: {} answered, latency p50 {} max {} (idle p50 {}), {} failed; injector alive: {alive}; RSS idle {} KiB, peak sampled {} KiB with the connections held ({:.1} KiB a connection), {} KiB with oversized and malformed bodies added, {} KiB with amplifying bodies added, VmHWM {} KiB (chart limit {INJECTOR_MEMORY_LIMIT_KIB} KiB), after {} KiB; peak open fds {}; exit on SIGTERM {:?}",
        ctx.injector_bin.display(),
        secs(scale.webhook_attack),
        slow.closed_by_server.load(Ordering::Relaxed),
        raw_open.load(Ordering::Relaxed),
        scale.concurrent,
        c(&conc),
        c(&oversized),
        c(&bad),
        c(&amp),
        probe.len(),
        ms(percentile(&probe, 0.5)),
        ms(probe_max),
        ms(percentile(&idle, 0.5)),
        probe_failures.len(),
        idle_rss.rss_kib,
        peaks[0],
        (peaks[0].saturating_sub(idle_rss.rss_kib)) as f64
            / (slow_open_at_end + raw_open.load(Ordering::Relaxed) + scale.concurrent).max(1)
                as f64,
        peaks[1],
        peaks[2],
        hwm,
        after.rss_kib,
        peak_fds.load(Ordering::Relaxed),
        exit.map(|s| s.to_string()),
    );
    if !probe_failures.is_empty() {
        figures.push_str(&format!(
            "; probe failures: {}",
            probe_failures
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    Ok(Row {
        case: "4. Webhook abuse",
        goal: "no crash; peak RSS (VmHWM) within the chart's 64Mi limit; a normal review answered within the 5 s webhook timeout during the attack; no 5xx",
        pass,
        figures,
    })
}

// ---------------------------------------------------------------------------------------------
// The table.

const FAULTS_BEGIN: &str = "<!-- faults:begin -->";
const FAULTS_END: &str = "<!-- faults:end -->";
const FUZZ_BEGIN: &str = "<!-- fuzz:begin -->";
const FUZZ_END: &str = "<!-- fuzz:end -->";

const HEADER: &str = "# Fault suite results\n\nWritten by `scripts/faults` (`tests/src/bin/hush-faults.rs`); how to read it: [docs/faults.md](../../docs/faults.md).\n\n";

/// Replaces the part of `out` between `begin` and `end` with `section`, creating the file.
fn write_section(out: &Path, begin: &str, end: &str, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(out).unwrap_or_else(|_| {
        format!("{HEADER}{FAULTS_BEGIN}\n{FAULTS_END}\n\n{FUZZ_BEGIN}\n{FUZZ_END}\n")
    });
    let new = match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{begin}\n{section}{}", &old[..b], &old[e..])
        }
        _ => format!("{old}\n{begin}\n{section}{end}\n"),
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, new)?;
    Ok(())
}

fn table(rows: &[Row], smoke: bool, seed: u64, took: Duration) -> String {
    let mut s = format!(
        "## Faults\n\n{} run, {} UTC, seed {seed}, {} in total, binaries from `{}`; machine: {} cores.\n\n| case | goal | result | figures |\n|---|---|---|---|\n",
        if smoke { "Smoke (`--smoke`)" } else { "Full" },
        utc_now(),
        secs(took),
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|p| p.display().to_string()))
            .unwrap_or_default(),
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.case,
            r.goal,
            if r.pass { "pass" } else { "**FAIL**" },
            r.figures.replace('|', "\\|").replace('\n', " ")
        ));
    }
    s
}

/// The faults section of `out` with the rows of `rows` replaced (by case), or `fresh` if there is
/// no earlier table to merge into.
fn merge_rows(out: &Path, rows: &[Row], fresh: &str, seed: u64) -> String {
    let Some(old) = std::fs::read_to_string(out).ok().and_then(|t| {
        let b = t.find(FAULTS_BEGIN)? + FAULTS_BEGIN.len();
        let e = t.find(FAULTS_END)?;
        (b < e).then(|| t[b..e].trim_start_matches('\n').to_string())
    }) else {
        return fresh.to_string();
    };
    if !old.contains("| case | goal | result | figures |") {
        return fresh.to_string();
    }
    let new_lines: Vec<String> = fresh
        .lines()
        .filter(|l| {
            rows.iter()
                .any(|r| l.starts_with(&format!("| {} |", r.case)))
        })
        .map(str::to_string)
        .collect();
    let mut lines: Vec<String> = Vec::new();
    let mut used = vec![false; new_lines.len()];
    for l in old.lines() {
        if l.starts_with("Rows ") {
            // An earlier partial run's note: the rows it names are in this one or older.
            continue;
        }
        match new_lines
            .iter()
            .position(|n| n.split(" | ").next() == l.split(" | ").next() && l.starts_with("| "))
        {
            Some(i) => {
                lines.push(new_lines[i].clone());
                used[i] = true;
            }
            None => lines.push(l.to_string()),
        }
    }
    // New cases go after the last row, and the rows stay in case order.
    let last_row = lines
        .iter()
        .rposition(|l| l.starts_with("| "))
        .map_or(lines.len(), |i| i + 1);
    let mut tail = lines.split_off(last_row);
    for (i, n) in new_lines.iter().enumerate() {
        if !used[i] {
            lines.push(n.clone());
        }
    }
    let first_row = lines
        .iter()
        .position(|l| l.starts_with("|---"))
        .map_or(0, |i| i + 1);
    lines[first_row..].sort_by(|a, b| a.split(" | ").next().cmp(&b.split(" | ").next()));
    lines.append(&mut tail);
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let names: Vec<&str> = rows.iter().map(|r| r.case).collect();
    lines.push(String::new());
    lines.push(format!(
        "Rows {} re-run on their own at {} UTC, seed {seed}, binaries from `{}`.",
        names.join(", "),
        utc_now(),
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|p| p.display().to_string()))
            .unwrap_or_default()
    ));
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Fuzzing figures.

struct FuzzFigures {
    execs: Option<u64>,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus_files: usize,
    corpus_bytes: u64,
    crashes: Vec<String>,
}

fn parse_fuzz_log(text: &str) -> (Option<u64>, Option<u64>, Option<u64>) {
    let mut execs = None;
    let mut cov = None;
    let mut ft = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Done ") {
            execs = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        }
        if line.starts_with('#') && line.contains("cov: ") {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(n) = words.first().and_then(|w| w[1..].parse().ok()) {
                execs = Some(n).max(execs);
            }
            for w in words.windows(2) {
                match w[0] {
                    "cov:" => cov = w[1].parse().ok(),
                    "ft:" => ft = w[1].parse().ok(),
                    _ => {}
                }
            }
        }
    }
    (execs, cov, ft)
}

fn pairs(list: &[String]) -> BTreeMap<String, PathBuf> {
    list.iter()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
        .collect()
}

fn fuzz_table(
    logs: &Path,
    corpora: &[String],
    artifacts: &[String],
    seconds: u64,
    out: &Path,
) -> Result<()> {
    let corpora = pairs(corpora);
    let artifacts = pairs(artifacts);
    let mut rows = BTreeMap::new();
    for (target, corpus) in &corpora {
        let text = std::fs::read_to_string(logs.join(format!("{target}.log"))).unwrap_or_default();
        let (execs, cov, ft) = parse_fuzz_log(&text);
        let (mut files, mut bytes) = (0usize, 0u64);
        if let Ok(d) = std::fs::read_dir(corpus) {
            for e in d.flatten() {
                files += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        let crashes = artifacts
            .get(target)
            .and_then(|d| std::fs::read_dir(d).ok())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| {
                        ["crash-", "leak-", "timeout-", "oom-", "slow-unit-"]
                            .iter()
                            .any(|p| n.starts_with(p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.insert(
            target.clone(),
            FuzzFigures {
                execs,
                cov,
                ft,
                corpus_files: files,
                corpus_bytes: bytes,
                crashes,
            },
        );
    }
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let mut s = format!(
        "## Fuzzing\n\n`scripts/faults --fuzz {seconds}`, {} UTC: each target ran {seconds} s (`-max_total_time`), at most two at a time, `nice -n 19`, on {} cores shared with other work.\n\n| target | input | executions | cov | ft | corpus (files, bytes) | crashes |\n|---|---|---|---|---|---|---|\n",
        utc_now(),
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    for (t, f) in &rows {
        s.push_str(&format!(
            "| `{t}` | {} | {} | {} | {} | {}, {} | {} |\n",
            fuzz_input(t),
            opt(f.execs),
            opt(f.cov),
            opt(f.ft),
            f.corpus_files,
            f.corpus_bytes,
            if f.crashes.is_empty() {
                "0".to_string()
            } else {
                format!("**{}**: {}", f.crashes.len(), f.crashes.join(", "))
            }
        ));
    }
    write_section(out, FUZZ_BEGIN, FUZZ_END, &s)?;
    print!("{s}");
    Ok(())
}

fn fuzz_input(target: &str) -> &'static str {
    match target {
        "annotations" => {
            "pod annotations → `annotations::check`, `SidecarConfig::from_annotations`, HUSH_CONFIG round trip"
        }
        "config_json" => "`HUSH_CONFIG` → `SidecarConfig::from_json`, round trip",
        "source_ref" => "`vault:`/`aws:`/`sealed:` references → `SourceRef::parse`, `validate`",
        "admission_review" => {
            "AdmissionReview bodies → `hush_injector::review` (`/mutate`, `/validate`)"
        }
        "sealed_parse" => {
            "sealed ConfigMaps, Secret manifests, `_hush`, identities, `.hush.yaml` (sealer-cli/fuzz `parse`)"
        }
        "sealed_open" => "mutated sealed sets → `open_value` (sealer-cli/fuzz `open`)",
        _ => "",
    }
}

// ---------------------------------------------------------------------------------------------

async fn setup(args: &Args, seed: u64) -> Result<Ctx> {
    let env = TestEnv::try_load().map_err(|missing| {
        anyhow::anyhow!(
            "test environment variable {missing} is not set: start the servers with `scripts/test-env up`"
        )
    })?;
    let settings = vaultrs::client::VaultClientSettingsBuilder::default()
        .address(&env.vault_addr)
        .token(&env.vault_token)
        .ca_certs(vec![env.vault_cacert.display().to_string()])
        .verify(true)
        .build()?;
    let root_client = vaultrs::client::VaultClient::new(settings)?;
    let prefix = unique_name("faults");
    let policy = format!(
        "path \"secret/data/{prefix}/*\" {{ capabilities = [\"read\"] }}\npath \"secret/metadata/{prefix}/*\" {{ capabilities = [\"read\"] }}\npath \"secret/detailed-metadata/{prefix}/*\" {{ capabilities = [\"list\"] }}\n"
    );
    vaultrs::sys::policy::set(&root_client, &prefix, &policy)
        .await
        .context("OpenBao: write the fault suite's policy (is `scripts/test-env up` done?)")?;
    let auth = vaultrs::token::new(
        &root_client,
        Some(
            vaultrs::api::token::requests::CreateTokenRequest::builder()
                .policies(vec![prefix.clone()])
                .ttl("4h")
                .renewable(true)
                .display_name("hush-faults"),
        ),
    )
    .await
    .context("OpenBao: create the fault suite's token")?;
    let exe = std::env::current_exe()?;
    let bin_dir = exe
        .parent()
        .context("the binary lives in target/<profile>")?
        .to_path_buf();
    let sidecar_bin = args
        .sidecar_bin
        .clone()
        .unwrap_or_else(|| bin_dir.join("hush-sidecar"));
    let injector_bin = args
        .injector_bin
        .clone()
        .unwrap_or_else(|| bin_dir.join("hush-injector"));
    for b in [&sidecar_bin, &injector_bin] {
        if !b.exists() {
            bail!("{} is missing: run `cargo build --workspace`", b.display());
        }
    }
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("hush-faults-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)?;
    Ok(Ctx {
        env,
        root_client,
        sidecar_bin,
        injector_bin,
        work,
        token: auth.client_token,
        prefix,
        seed,
    })
}

fn failed_row(case: &'static str, e: &anyhow::Error) -> Row {
    Row {
        case,
        goal: "the case runs",
        pass: false,
        figures: format!("the case could not run: {e:#}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Cmd::FuzzTable {
        logs,
        corpora,
        artifacts,
        seconds,
        out,
    }) = &args.command
    {
        return fuzz_table(logs, corpora, artifacts, *seconds, out);
    }
    let scale = if args.smoke { SMOKE } else { FULL };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let want = |c: &str| args.cases.is_empty() || args.cases.iter().any(|x| x == c);
    println!(
        "hush-faults: {} run, seed {seed}",
        if args.smoke { "smoke" } else { "full" }
    );
    let started = Instant::now();
    let ctx = Arc::new(setup(&args, seed).await?);
    let mut rows = Vec::new();
    // The outage is mostly waiting: it runs beside the other cases.
    let outage = want("outage").then(|| {
        let ctx = ctx.clone();
        tokio::spawn(async move { case_outage(&ctx, scale).await })
    });
    let mut rng = Rng::new(ctx.seed);
    if want("sigterm") {
        match case_sigterm(&ctx, scale, &mut rng).await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(failed_row("2. SIGTERM mid-write", &e)),
        }
    }
    if want("tmpfs") {
        rows.push(
            case_tmpfs(&ctx)
                .await
                .unwrap_or_else(|e| failed_row("3. tmpfs full", &e)),
        );
    }
    if want("webhook") {
        rows.push(
            case_webhook(&ctx, scale)
                .await
                .unwrap_or_else(|e| failed_row("4. Webhook abuse", &e)),
        );
    }
    if let Some(h) = outage {
        let r = match h.await {
            Ok(r) => r.unwrap_or_else(|e| failed_row("1. OpenBao unreachable", &e)),
            Err(e) => failed_row("1. OpenBao unreachable", &anyhow::anyhow!("{e}")),
        };
        rows.insert(0, r);
    }
    let _ = vaultrs::token::revoke(&ctx.root_client, &ctx.token).await;
    if args.work.is_none() {
        let _ = std::fs::remove_dir_all(&ctx.work);
    }
    let out = match (&args.out, args.smoke) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => None,
        (None, false) => Some(ctx.env.root.join("bench/results/faults.md")),
    };
    let mut text = table(&rows, args.smoke, seed, started.elapsed());
    if let Some(out) = &out {
        if !args.cases.is_empty() {
            // A partial run replaces its own rows and keeps the others of the last run.
            text = merge_rows(out, &rows, &text, seed);
        }
        write_section(out, FAULTS_BEGIN, FAULTS_END, &text)?;
    }
    print!("{text}");
    if let Some(out) = &out {
        println!("written to {}", out.display());
    }
    if rows.iter().any(|r| !r.pass) {
        eprintln!("hush-faults: a fault case failed (see the table)");
        std::process::exit(1);
    }
    Ok(())
}
