//! `scripts/bench-injector`'s driver: hush-injector's `/mutate` over TLS on loopback with the
//! realistic pod, then the floor webhook (the same TLS and HTTP stack answering the same patch
//! bytes) under the same loads in the same run: fixed rates (500 and 2,000 req/s on 16
//! connections, latency measured from when each request was due) and the maximum (64
//! connections). For each: achieved rate, p50/p99/p99.9 latency, RSS and anonymous RSS under load,
//! and CPU per admission (`/proc/PID/stat` over the run divided by the requests). The server runs
//! on CPU 1, this driver on CPU 0 (the wrapper pins it). vault-k8s, the peer, is not served by the
//! Go module proxy, so its column says so instead of holding numbers.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use hush_bench::load::{self, Conn, LoadResult, Target};
use hush_bench::proc::{self, Mem, Sampler};
use hush_bench::report::{Table, machine, num, pinning, ratio, save, today};
use hush_bench::review::{injector_yaml, patch_of, realistic_review};
use hush_bench::run::{
    SERVER_CPU, free_port, pinned, spawn_logged, stop, tail, work_dir, workspace_bin,
};
use hush_bench::tls::{Pki, client_config};

#[derive(Parser)]
struct Args {
    /// Seconds per load run.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Where to write the Markdown results.
    #[arg(long, default_value = "bench/results/injector.md")]
    out: PathBuf,
}

/// One load of the table.
struct Load {
    label: &'static str,
    conns: usize,
    rate: Option<f64>,
}

const LOADS: [Load; 3] = [
    Load {
        label: "500 req/s (16 conns)",
        conns: 16,
        rate: Some(500.0),
    },
    Load {
        label: "2,000 req/s (16 conns)",
        conns: 16,
        rate: Some(2000.0),
    },
    Load {
        label: "max (64 conns)",
        conns: 64,
        rate: None,
    },
];

struct Measured {
    load: LoadResult,
    mem: Mem,
    cpu_us_per_req: f64,
}

struct Program {
    name: &'static str,
    idle: Mem,
    warm: Mem,
    hwm: Mem,
    answer_bytes: usize,
    runs: Vec<Measured>,
}

async fn measure(
    name: &'static str,
    child: &mut Child,
    target: &Target,
    duration: Duration,
    log: &Path,
) -> Result<Program> {
    let pid = child.id();
    // The first answer, checked (the floor's has the same size as Hush's by construction).
    let mut conn = open_when_up(target, child, log).await?;
    let (status, body) = conn.request().await?;
    if status != 200 {
        bail!("{name} answered {status}:\n{}", tail(log));
    }
    patch_of(&body)?;
    drop(conn);
    let idle = proc::mem(pid)?;
    eprintln!("==> {name}: warm-up 3 s at 500 req/s");
    load::run(target, 16, Some(500.0), Duration::from_secs(3)).await?;
    let warm = proc::mem(pid)?;
    let mut runs = Vec::new();
    for l in &LOADS {
        eprintln!("==> {name}: {} for {}s", l.label, duration.as_secs());
        let sampler = Sampler::start(pid);
        let cpu0 = proc::cpu(pid)?;
        let r = load::run(target, l.conns, l.rate, duration).await?;
        let cpu1 = proc::cpu(pid)?;
        let mem = sampler.stop();
        let cpu_us_per_req = (cpu1 - cpu0).as_secs_f64() * 1e6 / (r.answered.max(1) as f64);
        runs.push(Measured {
            load: r,
            mem,
            cpu_us_per_req,
        });
    }
    let hwm = proc::mem(pid)?;
    Ok(Program {
        name,
        idle,
        warm,
        hwm,
        answer_bytes: body.len(),
        runs,
    })
}

async fn open_when_up(target: &Target, child: &mut Child, log: &Path) -> Result<Conn> {
    for _ in 0..2000 {
        if let Some(st) = child.try_wait()? {
            bail!("the webhook exited ({st}):\n{}", tail(log));
        }
        if let Ok(c) = Conn::open(target).await {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("the webhook did not come up:\n{}", tail(log))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs(args.duration);
    let work = work_dir("injector")?;
    let pki = Pki::loopback()?;
    pki.write(&work)?;
    let body = Bytes::from(realistic_review());
    let tls = client_config(&pki.ca_pem, &[b"http/1.1"])?;

    // Hush.
    let listen = free_port()?;
    let health = free_port()?;
    let cfg = work.join("config.yaml");
    std::fs::write(&cfg, injector_yaml(listen, health, &work, 5))?;
    let log = work.join("injector.log");
    let mut cmd = pinned(SERVER_CPU, &workspace_bin("hush-injector")?);
    cmd.arg("--config").arg(&cfg).env("RUST_LOG", "warn");
    let mut child = spawn_logged(&mut cmd, &log)?;
    let target = Target {
        addr: listen,
        tls: tls.clone(),
        path: "/mutate".into(),
        body: body.clone(),
    };
    // The patch the floor answers with: Hush's own answer for this pod.
    let patch = {
        let mut c = open_when_up(&target, &mut child, &log).await?;
        let (_, answer) = c.request().await?;
        patch_of(&answer)?
    };
    let patch_file = work.join("patch.b64");
    std::fs::write(&patch_file, &patch)?;
    let hush = measure("hush-injector", &mut child, &target, duration, &log).await;
    stop(&mut child, Duration::from_secs(10))?;
    let hush = hush?;

    // The floor.
    let listen = free_port()?;
    let log = work.join("floor.log");
    let mut cmd = pinned(SERVER_CPU, &workspace_bin("floor-webhook")?);
    cmd.arg("--listen")
        .arg(listen.to_string())
        .arg("--cert")
        .arg(work.join("tls.crt"))
        .arg("--key")
        .arg(work.join("tls.key"))
        .arg("--patch-file")
        .arg(&patch_file);
    let mut child = spawn_logged(&mut cmd, &log)?;
    let target = Target {
        addr: listen,
        tls,
        path: "/mutate".into(),
        body: body.clone(),
    };
    let floor = measure("floor webhook", &mut child, &target, duration, &log).await;
    stop(&mut child, Duration::from_secs(10))?;
    let floor = floor?;

    let text = render(&args, &hush, &floor, body.len(), patch.len());
    save(&args.out, &text)?;
    std::fs::remove_dir_all(&work).context("removing the work directory")?;
    Ok(())
}

fn render(
    args: &Args,
    hush: &Program,
    floor: &Program,
    review_bytes: usize,
    patch_bytes: usize,
) -> String {
    let mut t = Table::new(&[
        "load",
        "program",
        "achieved req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "200 OK",
        "RSS under load (MB)",
        "anon under load (MB)",
        "CPU per admission (µs)",
    ]);
    for (i, l) in LOADS.iter().enumerate() {
        for p in [hush, floor] {
            let m = &p.runs[i];
            t.row(vec![
                l.label.into(),
                p.name.into(),
                format!("{:.0}", m.load.rate()),
                format!("{:.3}", m.load.p(50.0)),
                format!("{:.3}", m.load.p(99.0)),
                format!("{:.3}", m.load.p(99.9)),
                format!("{}/{}", m.load.ok, m.load.answered),
                format!("{:.1}", m.mem.rss_mb()),
                format!("{:.1}", m.mem.anon_mb()),
                format!("{:.0}", m.cpu_us_per_req),
            ]);
        }
        t.row(vec![
            l.label.into(),
            "vault-k8s (peer)".into(),
            "not built: github.com/hashicorp/vault-k8s is not served by the Go module proxy".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    let mut r = Table::new(&[
        "load",
        "Hush / floor: p50",
        "p99",
        "achieved req/s",
        "RSS under load",
        "CPU per admission",
        "Hush / peer",
    ]);
    for (i, l) in LOADS.iter().enumerate() {
        let (h, f) = (&hush.runs[i], &floor.runs[i]);
        r.row(vec![
            l.label.into(),
            ratio(Some(h.load.p(50.0)), Some(f.load.p(50.0))),
            ratio(Some(h.load.p(99.0)), Some(f.load.p(99.0))),
            ratio(Some(h.load.rate()), Some(f.load.rate())),
            ratio(Some(h.mem.rss_mb()), Some(f.mem.rss_mb())),
            ratio(Some(h.cpu_us_per_req), Some(f.cpu_us_per_req)),
            "n/a (no peer)".into(),
        ]);
    }
    let mem_line = |p: &Program| {
        format!(
            "- {}: RSS {} just after start, {} after warm-up, peak (VmHWM) {}; anonymous {} after warm-up.",
            p.name,
            num(Some(p.idle.rss_mb()), 1, " MB"),
            num(Some(p.warm.rss_mb()), 1, " MB"),
            num(Some(p.hwm.hwm_mb()), 1, " MB"),
            num(Some(p.warm.anon_mb()), 1, " MB"),
        )
    };
    format!(
        "# hush-injector benchmark\n\n\
         `scripts/bench-injector` on {date}: `/mutate` over TLS 1.3 on loopback, a realistic pod (two \
         containers, five secrets, a template, http notification; review {review_bytes} bytes, patch \
         {patch_bytes} bytes of base64), release build, {dur} s per run, load from hush-bench's own \
         driver (HTTP/1.1 keep-alive, latency from when each request was due). Machine: {machine}. \
         {pinning}\n\n\
         Floor: `floor-webhook`, the same stack (tokio, hyper, rustls/aws-lc-rs) answering every review \
         with Hush's patch bytes, so the answers have the same size ({hb} bytes for Hush, {fb} for the \
         floor). Peer: vault-k8s is not served by the Go module proxy (403 for every version), so it \
         could not be built here; no number is given for it.\n\n{table}\n\
         Ratios from the same run (latency, RSS and CPU: below 1 means Hush uses less; achieved \
         req/s: below 1 means Hush served fewer):\n\n{ratios}\n{hm}\n{fm}\n\n\
         Goals (issue 4): p99 under 1 ms at 2,000 req/s; RSS under 15 MB. Method: \
         [docs/benchmarks.md](../../docs/benchmarks.md). Stable per-admission instruction counts: \
         [callgrind.md](callgrind.md).\n",
        date = today(),
        dur = args.duration,
        machine = machine(),
        pinning = pinning(),
        hb = hush.answer_bytes,
        fb = floor.answer_bytes,
        table = t.markdown(),
        ratios = r.markdown(),
        hm = mem_line(hush),
        fm = mem_line(floor),
    )
}
