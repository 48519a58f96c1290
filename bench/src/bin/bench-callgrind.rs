//! `scripts/bench-callgrind` and `scripts/bench-check`'s driver: instruction counts (callgrind
//! `Ir`) of Hush's hot paths, which barely depend on the machine's load, so they can be committed
//! and re-checked. The figures, each also measured for its floor where one exists (informative, not
//! checked):
//! - `injector.admission`: one `/mutate` of the realistic pod on a kept-alive TLS connection. Two
//!   runs of the injector under callgrind: start, connect, one request, SIGTERM; and the same with K
//!   more requests. The figure is the difference divided by K, so start-up, the handshake and the
//!   shutdown cancel out. TLS reloads are set to once an hour so no timer fires in either run.
//! - `sidecar.first_files`: `hush-sidecar once` with 10 KV v2 secrets from OpenBao through the
//!   counting proxy (whose ECDSA certificate is the same kind every run): the whole process, start
//!   to files written to exit.
//! - `sidecar.unchanged_cycle`: `hush-sidecar run` with the same secrets, M SIGHUP cycles in which
//!   nothing changed, minus the same run with none, divided by M. Each cycle is waited for on the
//!   proxy (its one LIST) before the next SIGHUP.
//! - `sealer.seal_1000x64`: `hush seal` of a Secret with 1,000 keys of 64 random bytes, the whole
//!   process.
//!
//! `--write DIR` writes `callgrind.tsv` and `callgrind.md` there; `--check FILE` compares with the
//! committed TSV, prints each figure, the committed one and the ratio, and exits 1 if any is more
//! than 10% above.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use hush_bench::callgrind::{self, Figure};
use hush_bench::configs;
use hush_bench::load::{Conn, Target};
use hush_bench::proxy::{Proxy, Upstream};
use hush_bench::report::{Table, machine, ratio, save, today};
use hush_bench::review::{injector_yaml, patch_of, realistic_review};
use hush_bench::run::{
    TestEnv, free_port, signal, spawn_logged, stop, tail, wait_files, work_dir, workspace_bin,
};
use hush_bench::tls::{Pki, client_config};
use hush_bench::vault::{Bao, fresh_prefix};
use rustix::process::Signal;

#[derive(Parser)]
struct Args {
    /// Admissions in the injector's measured run.
    #[arg(long, default_value_t = 200)]
    admissions: u64,
    /// Unchanged cycles in the sidecar's measured run. Many, because the two runs' start-ups differ
    /// a little from run to run, and that difference is divided by this number.
    #[arg(long, default_value_t = 100)]
    cycles: u32,
    /// Write callgrind.tsv and callgrind.md into this directory.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Compare with this committed callgrind.tsv; exit 1 if a figure is more than 10% above it.
    #[arg(long)]
    check: Option<PathBuf>,
    /// Keep the work directory with every callgrind profile (for `callgrind_annotate`; build with
    /// `CARGO_PROFILE_RELEASE_STRIP=false` to see function names) and print where it is.
    #[arg(long)]
    keep: bool,
}

const TOLERANCE: f64 = 0.10;
const PATIENCE: Duration = Duration::from_secs(180);

async fn open_when_up(target: &Target, child: &mut Child, log: &Path) -> Result<Conn> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            bail!("the webhook exited ({st}):\n{}", tail(log));
        }
        // A refused connection costs the server nothing: it is not listening yet.
        if let Ok(c) = Conn::open(target).await {
            return Ok(c);
        }
        if start.elapsed() > PATIENCE {
            bail!("the webhook did not come up under valgrind:\n{}", tail(log));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One webhook run under callgrind: start, 1 + `k` requests on one connection, SIGTERM. Returns
/// the total and the first answer.
async fn webhook_run(
    program: &Path,
    args: &[String],
    listen: std::net::SocketAddr,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    k: u64,
    out: &Path,
) -> Result<(u64, Bytes)> {
    let log = out.with_extension("log");
    let mut cmd = callgrind::command(program, out);
    cmd.args(args).env("RUST_LOG", "warn");
    let mut child = spawn_logged(&mut cmd, &log)?;
    let target = Target {
        addr: listen,
        tls: tls.clone(),
        path: "/mutate".into(),
        body: Bytes::from(realistic_review()),
    };
    let answer = async {
        let mut conn = open_when_up(&target, &mut child, &log).await?;
        let (status, first) = conn.request().await?;
        if status != 200 {
            bail!("HTTP {status}:\n{}", tail(&log));
        }
        for _ in 0..k {
            conn.request().await?;
        }
        anyhow::Ok(first)
    }
    .await;
    tokio::task::block_in_place(|| stop(&mut child, PATIENCE))?;
    let answer = answer?;
    Ok((callgrind::total(out)?, answer))
}

struct Webhooks {
    hush: u64,
    floor: Option<u64>,
}

async fn admissions(work: &Path, k: u64) -> Result<Webhooks> {
    let pki = Pki::loopback()?;
    pki.write(work)?;
    let tls = client_config(&pki.ca_pem, &[b"http/1.1"])?;
    let injector = workspace_bin("hush-injector")?;
    let mut hush = Vec::new();
    let mut patch = String::new();
    for n in [0, k] {
        eprintln!("==> callgrind: hush-injector, 1 + {n} admissions");
        let (listen, health) = (free_port()?, free_port()?);
        let cfg = work.join(format!("injector-{n}.yaml"));
        std::fs::write(&cfg, injector_yaml(listen, health, work, 3600))?;
        let args = vec!["--config".to_string(), cfg.display().to_string()];
        let (total, first) = webhook_run(
            &injector,
            &args,
            listen,
            &tls,
            n,
            &work.join(format!("cg.injector.{n}")),
        )
        .await?;
        patch = patch_of(&first)?;
        hush.push(total);
    }
    let patch_file = work.join("patch.b64");
    std::fs::write(&patch_file, &patch)?;
    let floor_bin = workspace_bin("floor-webhook")?;
    let mut floor = Vec::new();
    for n in [0, k] {
        eprintln!("==> callgrind: floor-webhook, 1 + {n} admissions");
        let listen = free_port()?;
        let args: Vec<String> = vec![
            "--listen".into(),
            listen.to_string(),
            "--cert".into(),
            work.join("tls.crt").display().to_string(),
            "--key".into(),
            work.join("tls.key").display().to_string(),
            "--patch-file".into(),
            patch_file.display().to_string(),
        ];
        match webhook_run(
            &floor_bin,
            &args,
            listen,
            &tls,
            n,
            &work.join(format!("cg.floor.{n}")),
        )
        .await
        {
            Ok((t, _)) => floor.push(t),
            Err(e) => eprintln!("==> the floor webhook could not be measured: {e:#}"),
        }
    }
    let per = |v: &[u64]| match v {
        [a, b] => Some(b.saturating_sub(*a) / k.max(1)),
        _ => None,
    };
    Ok(Webhooks {
        hush: per(&hush).context("the injector runs gave no counts")?,
        floor: per(&floor),
    })
}

struct Sidecar {
    first_files: u64,
    cycle: u64,
    run_start_stop: u64,
    floor_first_files: Option<u64>,
}

async fn sidecar(work: &Path, cycles: u32) -> Result<Sidecar> {
    let env = TestEnv::vault()?;
    let bao = Bao::new(&env.vault_addr, &env.vault_cacert, &env.vault_token)?;
    let prefix = fresh_prefix();
    let values = bao.seed(&prefix, 10).await?;
    let names: Vec<String> = values.keys().cloned().collect();
    let proxy = Proxy::https(Upstream {
        host_port: env.vault_host_port(),
        ca_pem: Some(std::fs::read_to_string(&env.vault_cacert)?),
    })
    .await?;
    let proxy_ca = proxy.ca_pem.clone().context("the proxy is TLS")?;
    let cfg = configs::vault_kv(&prefix, &names, &proxy.url(), &proxy_ca);
    let bin = workspace_bin("hush-sidecar")?;

    // Start to first files: `once`.
    eprintln!("==> callgrind: hush-sidecar once, 10 secrets");
    let root = work.join("sidecar-once");
    let out = work.join("cg.sidecar.once");
    let log = out.with_extension("log");
    let sidecar_under_callgrind = |out: &Path, root: &Path, token: &str| {
        configs::sidecar_command(
            callgrind::command(&bin, out),
            &cfg,
            root,
            free_port()?,
            Some(token),
        )
    };
    let token = bao.token(&prefix).await?;
    let mut cmd = sidecar_under_callgrind(&out, &root, &token)?;
    cmd.arg("once");
    let mut child = spawn_logged(&mut cmd, &log)?;
    let st = tokio::task::block_in_place(|| child.wait())?;
    if !st.success() {
        bail!("hush-sidecar once failed ({st}):\n{}", tail(&log));
    }
    let first_files = callgrind::total(&out)?;

    // Unchanged cycles: `run` with 0 and with `cycles` SIGHUPs.
    let mut totals = Vec::new();
    for m in [0, cycles] {
        eprintln!("==> callgrind: hush-sidecar run, {m} unchanged cycles");
        let root = work.join(format!("sidecar-run-{m}"));
        let out = work.join(format!("cg.sidecar.run.{m}"));
        let log = out.with_extension("log");
        let token = bao.token(&prefix).await?;
        let mut cmd = sidecar_under_callgrind(&out, &root, &token)?;
        cmd.arg("run");
        let t0 = Instant::now();
        let mut child = spawn_logged(&mut cmd, &log)?;
        let r = tokio::task::block_in_place(|| -> Result<()> {
            wait_files(
                &configs::secrets_dir(&root),
                &values,
                t0,
                &mut child,
                &log,
                PATIENCE,
            )?;
            // The started marker follows the files; let the first round settle.
            std::thread::sleep(Duration::from_secs(2));
            for _ in 0..m {
                let c0 = proxy.log.len();
                signal(&child, Signal::HUP)?;
                let t = Instant::now();
                while proxy.log.len() == c0 {
                    if t.elapsed() > PATIENCE {
                        bail!("no request after SIGHUP:\n{}", tail(&log));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                // The answer is processed and the (unchanged) set compared after the request.
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        });
        tokio::task::block_in_place(|| stop(&mut child, PATIENCE))?;
        r?;
        totals.push(callgrind::total(&out)?);
    }
    let run_start_stop = totals[0];
    let cycle = totals[1].saturating_sub(totals[0]) / u64::from(cycles.max(1));

    // The floor: start to first files, then SIGTERM.
    eprintln!("==> callgrind: floor-vault, 10 secrets");
    let floor_first_files = async {
        let dir = work.join("floor");
        let files = dir.join("out");
        std::fs::create_dir_all(&files)?;
        std::fs::write(dir.join("token"), bao.token(&prefix).await?)?;
        std::fs::write(dir.join("ca.pem"), &proxy_ca)?;
        let out = work.join("cg.floor-vault");
        let log = out.with_extension("log");
        let mut cmd = callgrind::command(&workspace_bin("floor-vault")?, &out);
        cmd.arg("--addr")
            .arg(proxy.url())
            .arg("--ca")
            .arg(dir.join("ca.pem"))
            .arg("--token-file")
            .arg(dir.join("token"))
            .arg("--prefix")
            .arg(&prefix)
            .arg("--names")
            .arg(names.join(","))
            .arg("--out")
            .arg(&files);
        let t0 = Instant::now();
        let mut child = spawn_logged(&mut cmd, &log)?;
        let r = tokio::task::block_in_place(|| {
            wait_files(&files, &values, t0, &mut child, &log, PATIENCE)
        });
        tokio::task::block_in_place(|| stop(&mut child, PATIENCE))?;
        r?;
        callgrind::total(&out)
    }
    .await;
    let floor_first_files = floor_first_files
        .map_err(|e| eprintln!("==> the floor could not be measured: {e:#}"))
        .ok();
    Ok(Sidecar {
        first_files,
        cycle,
        run_start_stop,
        floor_first_files,
    })
}

struct Seal {
    hush: u64,
    age: Option<u64>,
}

fn seal(work: &Path) -> Result<Seal> {
    eprintln!("==> callgrind: hush seal, 1,000 keys x 64 B");
    let hush = workspace_bin("hush")?;
    let key = work.join("key.txt");
    let (_, recipient) = hush_bench::run::keygen(&hush, &key)?;
    let values = configs::sealer_values(1000, 64);
    let src = work.join("secret.yaml");
    std::fs::write(&src, configs::secret_manifest("bench", "bench", &values))?;
    let out = work.join("cg.seal");
    let mut cmd = callgrind::command(&hush, &out);
    cmd.args(["seal", "-r", &recipient, "-o"])
        .arg(work.join("sealed.yaml"))
        .arg(&src);
    let st = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if !st.success() {
        bail!("hush seal under callgrind failed ({st})");
    }
    let hush_total = callgrind::total(&out)?;
    // The floor: age on the same plaintext bytes (a Go program; best effort under valgrind).
    let raw = work.join("secret.raw");
    configs::write_concatenated(&raw, &values)?;
    let out = work.join("cg.age");
    let mut cmd = callgrind::command(Path::new("/usr/bin/age"), &out);
    cmd.args(["-a", "-r", &recipient, "-o"])
        .arg(work.join("secret.age"))
        .arg(&raw);
    let age = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .and_then(|_| callgrind::total(&out).ok());
    Ok(Seal {
        hush: hush_total,
        age,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.write.is_none() && args.check.is_none() {
        bail!("give --write DIR or --check FILE");
    }
    let work = work_dir("callgrind")?;
    let started = Instant::now();
    let w = admissions(&work, args.admissions).await?;
    let s = sidecar(&work, args.cycles).await?;
    let z = tokio::task::block_in_place(|| seal(&work))?;
    let figures = vec![
        Figure { name: "injector.admission".into(), instructions: w.hush, what: format!("one /mutate of the realistic pod on a kept-alive TLS connection: (run with 1+{k} requests - run with 1) / {k}", k = args.admissions) },
        Figure { name: "sidecar.first_files".into(), instructions: s.first_files, what: "hush-sidecar once: start, token auth, 10 KV v2 secrets through the proxy, files written, exit".into() },
        Figure { name: "sidecar.unchanged_cycle".into(), instructions: s.cycle, what: format!("hush-sidecar run: one SIGHUP refresh in which nothing changed: (run with {m} cycles - run with 0) / {m}", m = args.cycles) },
        Figure { name: "sidecar.run_start_stop".into(), instructions: s.run_start_stop, what: "hush-sidecar run: start, first files, SIGTERM, exit (no cycle)".into() },
        Figure { name: "sealer.seal_1000x64".into(), instructions: z.hush, what: "hush seal of a Secret with 1,000 keys of 64 random bytes, whole process".into() },
    ];
    let floors: BTreeMap<&str, (Option<u64>, &str)> = BTreeMap::from([
        (
            "injector.admission",
            (w.floor, "floor-webhook, same method"),
        ),
        (
            "sidecar.first_files",
            (
                s.floor_first_files,
                "floor-vault: start, 10 GETs, files, SIGTERM",
            ),
        ),
        (
            "sealer.seal_1000x64",
            (z.age, "age -a -e of the same 64,000 bytes"),
        ),
    ]);
    eprintln!(
        "==> callgrind runs took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let mut failed = false;
    if let Some(file) = &args.check {
        let committed = callgrind::read_tsv(file)?;
        let mut t = Table::new(&[
            "figure",
            "now (Ir)",
            "committed (Ir)",
            "now / committed",
            "verdict",
        ]);
        for c in callgrind::check(&figures, &committed) {
            let bad = c.fails(TOLERANCE);
            failed |= bad;
            t.row(vec![
                c.name.clone(),
                c.now.to_string(),
                c.committed.map_or_else(|| "none".into(), |v| v.to_string()),
                c.ratio()
                    .map_or_else(|| "n/a".into(), |r| format!("{r:.3}")),
                if bad {
                    "FAIL (more than 10% above)".into()
                } else {
                    "ok".into()
                },
            ]);
        }
        println!("{}", t.markdown());
    }
    if let Some(dir) = &args.write {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("callgrind.tsv"), callgrind::tsv(&figures))?;
        let mut t = Table::new(&[
            "figure",
            "Hush (Ir)",
            "floor (Ir)",
            "Hush / floor",
            "what Hush did",
            "floor",
        ]);
        for f in &figures {
            let (fl, what) = floors.get(f.name.as_str()).copied().unwrap_or((None, ""));
            t.row(vec![
                format!("`{}`", f.name),
                group(f.instructions),
                fl.map_or_else(|| "n/a".into(), group),
                ratio(Some(f.instructions as f64), fl.map(|v| v as f64)),
                f.what.clone(),
                what.to_string(),
            ]);
        }
        let text = format!(
            "# Callgrind instruction counts\n\n\
             `scripts/bench-callgrind` on {date} (release build; valgrind --tool=callgrind, `Ir` = instructions \
             executed, all threads). Machine: {machine}. Unlike times, these barely move with the load, so \
             they are committed in [callgrind.tsv](callgrind.tsv) and `scripts/bench-check` fails if one \
             grows more than 10%. Floors are informative and not checked. Method: \
             [docs/benchmarks.md](../../docs/benchmarks.md).\n\n{table}\n\
             A sidecar start used to cost about 420 million more instructions, for Hush and the floor \
             alike: aws-lc's one-time seeding of its DRBG from CPU jitter entropy \
             (`tree_jitter_initialize_once`, aws-lc-sys 0.47), paid by any process on this TLS stack \
             before its first handshake. The workspace builds aws-lc without it and seeds from the \
             kernel (`.cargo/config.toml`; why: docs/dependencies.md); a floor built outside this \
             repository would pay it again. `hush seal`'s cost is one X25519 per key, spread over one \
             thread per core (the floor, `age`, does one per file).\n",
            date = today(),
            machine = machine(),
            table = t.markdown(),
        );
        save(&dir.join("callgrind.md"), &text)?;
    }
    if args.keep {
        eprintln!("==> profiles kept in {}", work.display());
    } else {
        std::fs::remove_dir_all(&work).context("removing the work directory")?;
    }
    if failed {
        eprintln!(
            "a callgrind figure is more than 10% above the committed one; if that is intended, \
             rerun scripts/bench-callgrind and commit bench/results/callgrind.{{tsv,md}}"
        );
        std::process::exit(1);
    }
    Ok(())
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
