//! `scripts/bench-aws`'s driver: hush-sidecar with N AWS Secrets Manager secrets (JSON, one
//! `#json-key` file each) against the test environment's moto, through a counting HTTP proxy on
//! loopback. Reports the time to first secrets (process spawn until every file holds its value),
//! the API calls of the first fetch and of each unchanged refresh cycle (by `x-amz-target`), RSS
//! and anonymous RSS, and CPU per cycle. The sidecar runs on CPU 1, this driver and the proxy on
//! CPU 0. There is no floor or peer here: the AWS Secrets Manager Agent is not on any registry this
//! project builds from; its published figures are quoted for comparison.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use clap::Parser;
use hush_bench::configs;
use hush_bench::proc;
use hush_bench::proxy::{Answer, Proxy, Upstream};
use hush_bench::report::{Table, machine, pinning, save, today};
use hush_bench::run::{
    SERVER_CPU, TestEnv, free_port, pinned, spawn_logged, stop, wait_files, work_dir, workspace_bin,
};
use hush_bench::vault::{fresh_prefix, random_hex};

#[derive(Parser)]
struct Args {
    /// Secrets.
    #[arg(long, default_value_t = 50)]
    secrets: usize,
    /// Refresh cycles to watch.
    #[arg(long, default_value_t = 4)]
    cycles: usize,
    /// Where to write the Markdown results.
    #[arg(long, default_value = "bench/results/aws.md")]
    out: PathBuf,
}

const REFRESH: Duration = Duration::from_secs(5);
const BATCH: &str = "secretsmanager.BatchGetSecretValue";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let env = TestEnv::aws()?;
    let n = args.secrets;
    let per_cycle = n.div_ceil(20);
    let sm = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(env.aws_region.clone()))
            .endpoint_url(&env.aws_endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "bench"))
            .build(),
    );
    let prefix = fresh_prefix();
    eprintln!("==> creating {n} secrets under {prefix}/ in moto");
    let mut ids = BTreeMap::new();
    let mut values = BTreeMap::new();
    for i in 0..n {
        let (file, id, pw) = (
            format!("s{i:02}"),
            format!("{prefix}/s{i:02}"),
            random_hex(16),
        );
        sm.create_secret()
            .name(&id)
            .secret_string(
                serde_json::json!({ "user": format!("u{i}"), "password": pw }).to_string(),
            )
            .send()
            .await
            .with_context(|| format!("creating {id} in moto"))?;
        ids.insert(file.clone(), id);
        values.insert(file, pw);
    }
    let host_port = env
        .aws_endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let proxy = Proxy::http(Upstream {
        host_port,
        ca_pem: None,
    })
    .await?;
    let cfg = configs::aws(&ids, "password", &env.aws_region, &proxy.url(), REFRESH);
    let work = work_dir("aws")?;
    let log = work.join("sidecar.log");
    let mut cmd = configs::sidecar_command(
        pinned(SERVER_CPU, &workspace_bin("hush-sidecar")?),
        &cfg,
        &work,
        free_port()?,
        None,
    )?;
    cmd.env("HOME", &work)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .arg("run");
    let t0 = Instant::now();
    let mut child = spawn_logged(&mut cmd, &log)?;
    let out = tokio::task::block_in_place(|| -> Result<_> {
        let first = wait_files(
            &configs::secrets_dir(&work),
            &values,
            t0,
            &mut child,
            &log,
            Duration::from_secs(60),
        )?;
        let first_calls = proxy.log.len();
        let pid = child.id();
        let rss_start = proc::mem(pid)?;
        let cpu0 = proc::cpu(pid)?;
        let deadline = Instant::now() + REFRESH * u32::try_from(args.cycles + 3)?;
        loop {
            let batches = proxy
                .log
                .since(first_calls)
                .iter()
                .filter(|(_, k)| k == BATCH)
                .count();
            if batches >= per_cycle * args.cycles || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        let cpu1 = proc::cpu(pid)?;
        let steady = proc::mem(pid)?;
        Ok((first, first_calls, rss_start, steady, cpu1 - cpu0))
    });
    tokio::task::block_in_place(|| stop(&mut child, Duration::from_secs(30)))?;
    let (first, first_calls, rss_start, steady, cpu) = out?;
    // Group the steady calls into cycles: a gap of more than half the refresh starts a new one.
    // Each cycle: its calls, and what their answers carried (response bytes, secret values).
    let mut cycles: Vec<(Vec<String>, Answer)> = Vec::new();
    let mut last: Option<Instant> = None;
    let answers = proxy.log.answers_since(first_calls);
    for (i, (t, op)) in proxy.log.since(first_calls).into_iter().enumerate() {
        if last.is_none_or(|l| t.duration_since(l) > REFRESH / 2) {
            cycles.push((Vec::new(), Answer::default()));
        }
        if let Some((calls, carried)) = cycles.last_mut() {
            calls.push(op.trim_start_matches("secretsmanager.").to_string());
            if let Some(a) = answers.get(i) {
                carried.body_bytes += a.body_bytes;
                carried.values += a.values;
            }
        }
        last = Some(t);
    }
    let value_bytes: usize = values.values().map(String::len).sum();
    let sizes: Vec<usize> = cycles.iter().map(|(calls, _)| calls.len()).collect();
    let ops: std::collections::BTreeSet<&String> =
        cycles.iter().flat_map(|(calls, _)| calls).collect();
    let first_ops: BTreeMap<String, u64> =
        proxy
            .log
            .since(0)
            .into_iter()
            .take(first_calls)
            .fold(BTreeMap::new(), |mut m, (_, k)| {
                *m.entry(k.trim_start_matches("secretsmanager.").to_string())
                    .or_insert(0) += 1;
                m
            });
    let n_cycles = cycles.len().max(1);
    let mut t = Table::new(&["metric", "value"]);
    let rows: Vec<(String, String)> = vec![
        (
            "secrets".into(),
            format!("{n} (JSON, one `#json-key` file each)"),
        ),
        (
            "time to first secret (spawn -> all files hold their values)".into(),
            format!("{:.0} ms", first.as_secs_f64() * 1000.0),
        ),
        (
            "API calls for the first fetch".into(),
            first_ops
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "RSS / anon after the first fetch".into(),
            format!(
                "{:.1} MB / {:.1} MB",
                rss_start.rss_mb(),
                rss_start.anon_mb()
            ),
        ),
        (
            format!("steady RSS / anon after {} refresh cycles", cycles.len()),
            format!("{:.1} MB / {:.1} MB", steady.rss_mb(), steady.anon_mb()),
        ),
        (
            "API calls per unchanged cycle".into(),
            format!(
                "{sizes:?} ({}); ceil({n}/20) = {per_cycle}",
                ops.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "what an unchanged cycle's answers carried".into(),
            format!(
                "{} (response body bytes, secret values); the {n} passwords alone are {value_bytes} B",
                cycles
                    .iter()
                    .map(|(_, a)| format!("{} B, {} values", a.body_bytes, a.values))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        (
            "CPU per unchanged cycle".into(),
            format!(
                "{:.1} ms ({:.0} ms over {n_cycles} cycles; /proc/PID/stat counts {} ms ticks)",
                cpu.as_secs_f64() * 1000.0 / n_cycles as f64,
                cpu.as_secs_f64() * 1000.0,
                1000 / proc::ticks_per_second().max(1)
            ),
        ),
    ];
    for (k, v) in rows {
        t.row(vec![k, v]);
    }
    let text = format!(
        "# AWS Secrets Manager benchmark (scripts/bench-aws)\n\n\
         Run {date} against moto on loopback (through a counting HTTP proxy), release build, refresh \
         every {r} s. Machine: {machine}. {pinning}\n\n{table}\n\
         ## Compared with the AWS Secrets Manager Agent\n\n\
         - AWS Secrets Manager Agent (published, not built here: it is on none of the registries this \
         project builds from): 13.4 MB RSS; cache TTL 300 s; on expiry one DescribeSecret per secret \
         (plus GetSecretValue when it changed), i.e. 50 calls per TTL for 50 secrets.\n\
         - hush-sidecar: {rss:.1} MB RSS; every refresh ({r} s here, 300 s by default) checks all {n} \
         AWSCURRENT secrets with {per_cycle} BatchGetSecretValue calls, and a changed secret costs no \
         extra call (its value comes with the batch).\n\
         - moto answers on loopback in about a millisecond; against the real service, time to first \
         secret is dominated by network round trips: the first fetch is ceil(N/20) sequential \
         BatchGetSecretValue calls (plus one STS call with web identity).\n\n\
         ## Values on the wire\n\n\
         Every unchanged cycle receives every secret value again (the row above counts them in the \
         answers): `BatchGetSecretValue` is the only call that checks 20 secrets at once, and it \
         returns values. Why Hush keeps it rather than a call pattern that returns none \
         (`DescribeSecret`, `ListSecrets`): docs/architecture.md, the cheap checks.\n",
        date = today(),
        r = REFRESH.as_secs(),
        machine = machine(),
        pinning = pinning(),
        table = t.markdown(),
        rss = steady.rss_mb(),
    );
    save(&args.out, &text)?;
    std::fs::remove_dir_all(&work).context("removing the work directory")?;
    if sizes.is_empty() || sizes.iter().any(|&s| s > per_cycle) {
        bail!("an unchanged cycle cost more than ceil(N/20) calls: {sizes:?}");
    }
    Ok(())
}
