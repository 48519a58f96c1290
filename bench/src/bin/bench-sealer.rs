//! `scripts/bench-sealer`'s driver: `hush seal` / `hush unseal` against their floor, the `age` CLI
//! encrypting and decrypting the same plaintext bytes as one file (the least any age-based tool
//! does), and two peers on the same Secret manifests: sops with its age backend (`--encrypted-regex
//! '^(data|stringData)$'`, as used for Kubernetes Secrets) and kubeseal offline with an RSA 4096
//! certificate like the sealed-secrets controller's (`--recovery-unseal` with its private key for
//! the way back). Cases: 1, 100 and 1,000 keys of 64 random bytes, one 512 KiB value and one 1 MiB
//! value. Each figure is the median wall time of N runs of the process. Every tool runs on the same
//! CPUs, by default all of them: there is no server to keep apart from a client, the driver only
//! waits for the process, and a user's machine lets sops (Go) and `hush` (one thread per core over
//! the values) use every core. `--cpus 1` measures each tool on one core.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use hush_bench::configs::{sealer_values, secret_manifest};
use hush_bench::proc::median;
use hush_bench::report::{Table, machine, num, ratio, save, today};
use hush_bench::run::{work_dir, workspace_bin};

#[derive(Parser)]
struct Args {
    /// Runs per case (the 1 MiB case runs at least 3 and at most half as many).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// The sops binary (scripts/bench-peers builds it); omitted: its columns say why.
    #[arg(long)]
    sops: Option<PathBuf>,
    /// The kubeseal binary (scripts/bench-peers builds it).
    #[arg(long)]
    kubeseal: Option<PathBuf>,
    /// The CPUs every tool runs on (`taskset -c` list); default: every CPU of the machine.
    #[arg(long)]
    cpus: Option<String>,
    /// Where to write the Markdown results.
    #[arg(long, default_value = "bench/results/sealer.md")]
    out: PathBuf,
}

/// The `taskset -c` CPU list of every measured process (`--cpus`, set once in `main`).
static CPUS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn cpus() -> &'static str {
    CPUS.get().map_or("0", String::as_str)
}

/// One timed command: program, arguments, stdin file, stdout file, extra env.
struct Run<'a> {
    program: &'a Path,
    args: Vec<String>,
    stdin: Option<PathBuf>,
    stdout: Option<PathBuf>,
    env: Vec<(&'static str, String)>,
}

impl Run<'_> {
    fn once(&self, home: &Path) -> Result<f64> {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpus()).arg(self.program);
        c.args(&self.args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(match &self.stdin {
            Some(p) => Stdio::from(std::fs::File::open(p)?),
            None => Stdio::null(),
        });
        c.stdout(match &self.stdout {
            Some(p) => Stdio::from(std::fs::File::create(p)?),
            None => Stdio::null(),
        });
        c.stderr(Stdio::piped());
        let t = Instant::now();
        let out = c
            .output()
            .with_context(|| format!("running {}", self.program.display()))?;
        let dt = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "{} {:?} failed: {}",
                self.program.display(),
                self.args,
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(400)
                    .collect::<String>()
            );
        }
        Ok(dt)
    }

    /// Median wall time in ms of `n` runs after one warm-up run.
    fn median_ms(&self, n: usize, home: &Path) -> Result<f64> {
        self.once(home)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.once(home)? * 1000.0);
        }
        Ok(median(&v))
    }
}

fn run<'a>(program: &'a Path, args: &[&str]) -> Run<'a> {
    Run {
        program,
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        stdout: None,
        env: Vec::new(),
    }
}

struct Row {
    label: String,
    plain: usize,
    sealed: u64,
    seal: f64,
    unseal: f64,
    age_e: f64,
    age_d: f64,
    sops_e: Option<f64>,
    sops_d: Option<f64>,
    kubeseal_e: Option<f64>,
    kubeseal_d: Option<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // The machine's online CPUs, not this process's affinity: scripts/bench-common.sh pins the
    // driver to CPU 0, and `available_parallelism` would see only that one.
    let all = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            format!("0-{}", n - 1)
        });
    let _ = CPUS.set(args.cpus.clone().unwrap_or(all));
    let work = work_dir("sealer")?;
    let hush = workspace_bin("hush")?;
    let age = PathBuf::from("/usr/bin/age");
    if !age.is_file() {
        bail!("the age CLI is missing: scripts/test-env up installs it (Debian's age)");
    }
    let key = work.join("key.txt");
    let (_, recipient) = hush_bench::run::keygen(&hush, &key)?;
    // kubeseal's certificate: RSA 4096, self-signed, like the controller's.
    let (cert, priv_key) = (work.join("kubeseal.crt"), work.join("kubeseal.key"));
    if args.kubeseal.is_some() {
        let st = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:4096",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/O=sealed-secret/CN=sealed-secret",
                "-keyout",
            ])
            .arg(&priv_key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("openssl could not make the kubeseal certificate");
        }
    }
    let startup_hush = run(&hush, &["--version"]).median_ms(20, &work)?;
    let startup_age = run(&age, &["--version"]).median_ms(20, &work)?;

    let cases: [(&str, usize, usize); 5] = [
        ("1 key x 64 B", 1, 64),
        ("100 keys x 64 B", 100, 64),
        ("1000 keys x 64 B", 1000, 64),
        ("1 value of 512 KiB", 1, 512 << 10),
        ("1 value of 1 MiB", 1, 1 << 20),
    ];
    let mut rows = Vec::new();
    for (label, n, size) in cases {
        eprintln!("==> {label}");
        let slug = format!("{n}x{size}");
        let values = sealer_values(n, size);
        let src = work.join(format!("{slug}.yaml"));
        std::fs::write(&src, secret_manifest("bench", "bench", &values))?;
        let raw = work.join(format!("{slug}.raw"));
        hush_bench::configs::write_concatenated(&raw, &values)?;
        let plain: usize = values.iter().map(|(_, v)| v.len()).sum();
        let runs = if size >= 1 << 20 {
            (args.runs / 2).max(3)
        } else {
            args.runs
        };
        let s = |p: &Path| p.display().to_string();
        let sealed = work.join(format!("{slug}.sealed.yaml"));
        let seal = run(
            &hush,
            &[
                "seal",
                "-r",
                &recipient,
                "--allow-oversize",
                "-o",
                &s(&sealed),
                &s(&src),
            ],
        )
        .median_ms(runs, &work)?;
        let unseal = run(&hush, &["unseal", "-i", &s(&key), &s(&sealed)]).median_ms(runs, &work)?;
        let age_ct = work.join(format!("{slug}.age"));
        let age_e = run(&age, &["-a", "-r", &recipient, "-o", &s(&age_ct), &s(&raw)])
            .median_ms(runs, &work)?;
        let age_d = run(&age, &["-d", "-i", &s(&key), &s(&age_ct)]).median_ms(runs, &work)?;
        let (mut sops_e, mut sops_d) = (None, None);
        if let Some(sops) = &args.sops {
            let enc = work.join(format!("{slug}.sops.yaml"));
            let mut e = run(
                sops,
                &[
                    "encrypt",
                    "--age",
                    &recipient,
                    "--encrypted-regex",
                    "^(data|stringData)$",
                    "--input-type",
                    "yaml",
                    "--output-type",
                    "yaml",
                    &s(&src),
                ],
            );
            e.stdout = Some(enc.clone());
            sops_e = Some(e.median_ms(runs, &work)?);
            let mut d = run(
                sops,
                &[
                    "decrypt",
                    "--input-type",
                    "yaml",
                    "--output-type",
                    "yaml",
                    &s(&enc),
                ],
            );
            d.env.push(("SOPS_AGE_KEY_FILE", s(&key)));
            sops_d = Some(d.median_ms(runs, &work)?);
        }
        let (mut kubeseal_e, mut kubeseal_d) = (None, None);
        if let Some(kubeseal) = &args.kubeseal {
            let enc = work.join(format!("{slug}.kubeseal.yaml"));
            let mut e = run(kubeseal, &["--cert", &s(&cert), "--format", "yaml"]);
            e.stdin = Some(src.clone());
            e.stdout = Some(enc.clone());
            kubeseal_e = Some(e.median_ms(runs, &work)?);
            let mut d = run(
                kubeseal,
                &["--recovery-unseal", "--recovery-private-key", &s(&priv_key)],
            );
            d.stdin = Some(enc.clone());
            kubeseal_d = Some(d.median_ms(runs, &work)?);
        }
        rows.push(Row {
            label: label.to_string(),
            plain,
            sealed: std::fs::metadata(&sealed)?.len(),
            seal,
            unseal,
            age_e,
            age_d,
            sops_e,
            sops_d,
            kubeseal_e,
            kubeseal_d,
        });
    }
    save(&args.out, &render(&args, &rows, startup_hush, startup_age))?;
    std::fs::remove_dir_all(&work).context("removing the work directory")?;
    Ok(())
}

fn render(args: &Args, rows: &[Row], startup_hush: f64, startup_age: f64) -> String {
    let mbs = |b: usize, ms: f64| format!("{:.2}", b as f64 / (ms / 1000.0) / 1e6);
    let mut t = Table::new(&[
        "case",
        "plaintext bytes",
        "sealed bytes",
        "hush seal ms",
        "hush unseal ms",
        "seal MB/s",
        "unseal MB/s",
        "age -e ms (floor)",
        "age -d ms (floor)",
        "seal / age -e",
        "unseal / age -d",
    ]);
    for r in rows {
        let over = if r.sealed > 1 << 20 {
            " (over 1 MiB: refused without --allow-oversize)"
        } else {
            ""
        };
        t.row(vec![
            r.label.clone(),
            r.plain.to_string(),
            format!("{}{over}", r.sealed),
            format!("{:.1}", r.seal),
            format!("{:.1}", r.unseal),
            mbs(r.plain, r.seal),
            mbs(r.plain, r.unseal),
            format!("{:.1}", r.age_e),
            format!("{:.1}", r.age_d),
            ratio(Some(r.seal), Some(r.age_e)),
            ratio(Some(r.unseal), Some(r.age_d)),
        ]);
    }
    let mut p = Table::new(&[
        "case",
        "hush seal ms",
        "sops -e ms",
        "kubeseal ms",
        "seal: Hush / sops",
        "seal: Hush / kubeseal",
        "hush unseal ms",
        "sops -d ms",
        "kubeseal --recovery-unseal ms",
        "unseal: Hush / sops",
        "unseal: Hush / kubeseal",
    ]);
    for r in rows {
        p.row(vec![
            r.label.clone(),
            format!("{:.1}", r.seal),
            num(r.sops_e, 1, ""),
            num(r.kubeseal_e, 1, ""),
            ratio(Some(r.seal), r.sops_e),
            ratio(Some(r.seal), r.kubeseal_e),
            format!("{:.1}", r.unseal),
            num(r.sops_d, 1, ""),
            num(r.kubeseal_d, 1, ""),
            ratio(Some(r.unseal), r.sops_d),
            ratio(Some(r.unseal), r.kubeseal_d),
        ]);
    }
    let missing = |name: &str, p: &Option<PathBuf>| match p {
        Some(_) => String::new(),
        None => format!(
            " {name} was not given (scripts/bench-peers builds it), so its columns are n/a."
        ),
    };
    let pinning = format!(
        "Every tool runs on CPUs {} (`taskset -c`; no server to keep apart, the driver only waits).",
        cpus()
    );
    format!(
        "# hush sealer benchmark\n\n\
         `scripts/bench-sealer` on {date}: release build, median of {runs} runs (1 MiB case: {big}), \
         wall time including process start. Machine: {machine}. {pinning}\n\n\
         Startup (`--version`): hush {sh:.1} ms, age {sa:.1} ms.\n\n\
         ## Hush and its floor\n\n{t}\n\
         `age -e`/`age -d` encrypt/decrypt the same plaintext bytes as one armored file with one \
         recipient: the floor for any age-based tool. hush does one age encryption per key (plus the MAC \
         key), hashes every ciphertext for the MAC, and reads/writes YAML; unseal also verifies the MAC \
         and every binding header. A 1 MiB value seals to more than the 1 MiB ConfigMap limit: `hush seal` \
         refuses it unless `--allow-oversize` is given (used here for measurement only).\n\n\
         ## Hush and its peers\n\n{p}\n\
         Same Secret manifests. sops {sv} with its age backend and `--encrypted-regex \
         '^(data|stringData)$'` (one AES-GCM data key per file, wrapped once with age; values encrypted \
         with AES-GCM). kubeseal {kv} offline (`--cert`, RSA 4096 like the controller's certificate; one \
         RSA-OAEP + AES-GCM hybrid encryption per value); its way back is `--recovery-unseal` with the \
         private key. Both are built from the Go module proxy by `scripts/bench-peers`.{ms}{mk}\n\n\
         Stable instruction counts (seal of 1,000 keys): [callgrind.md](callgrind.md). Method: \
         [docs/benchmarks.md](../../docs/benchmarks.md).\n",
        date = today(),
        runs = args.runs,
        big = (args.runs / 2).max(3),
        machine = machine(),
        pinning = pinning,
        sh = startup_hush,
        sa = startup_age,
        t = t.markdown(),
        p = p.markdown(),
        sv = version_of(args.sops.as_deref()),
        kv = version_of(args.kubeseal.as_deref()),
        ms = missing("sops", &args.sops),
        mk = missing("kubeseal", &args.kubeseal),
    )
}

/// The version in a `.cache/bin/NAME-vX.Y.Z` path.
fn version_of(p: Option<&Path>) -> String {
    p.and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('-'))
        .map_or_else(String::new, |(_, v)| v.to_string())
}
