//! Running the programs under test: the test environment's addresses (from the environment that
//! `scripts/test-env env` exports), the release binaries beside the running benchmark, processes
//! started on a chosen CPU with `taskset` (the client on CPU 0, the server on CPU 1; see
//! `docs/benchmarks.md`), waiting for files to appear with the expected bytes, and stopping a
//! process with SIGTERM and then SIGKILL.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The CPU the benchmark drivers (clients, proxies, load) run on.
pub const CLIENT_CPU: u32 = 0;
/// The CPU the program under test (server, sidecar, agent) runs on.
pub const SERVER_CPU: u32 = 1;

/// The test environment's servers, as `scripts/test-env env` exports them.
#[derive(Clone, Debug)]
pub struct TestEnv {
    /// OpenBao's `https://` address.
    pub vault_addr: String,
    /// OpenBao's CA file.
    pub vault_cacert: PathBuf,
    /// OpenBao's root token (dev server); used to create the benchmark's secrets and tokens only.
    pub vault_token: String,
    /// The `bao` binary (OpenBao CLI and agent).
    pub bao_bin: PathBuf,
    /// moto's `http://` address.
    pub aws_endpoint: String,
    /// moto's region.
    pub aws_region: String,
}

fn var(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: start the servers with scripts/test-env up, then run the bench through its scripts/bench-* wrapper")
    })
}

impl TestEnv {
    /// OpenBao's part.
    pub fn vault() -> Result<TestEnv> {
        Ok(TestEnv {
            vault_addr: var("VAULT_ADDR")?,
            vault_cacert: var("VAULT_CACERT")?.into(),
            vault_token: var("VAULT_TOKEN")?,
            bao_bin: var("HUSH_BAO_BIN")?.into(),
            aws_endpoint: String::new(),
            aws_region: String::new(),
        })
    }

    /// moto's part.
    pub fn aws() -> Result<TestEnv> {
        Ok(TestEnv {
            vault_addr: String::new(),
            vault_cacert: PathBuf::new(),
            vault_token: String::new(),
            bao_bin: PathBuf::new(),
            aws_endpoint: var("HUSH_AWS_ENDPOINT")?,
            aws_region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        })
    }

    /// OpenBao's `host:port`.
    pub fn vault_host_port(&self) -> String {
        self.vault_addr
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string()
    }
}

/// A release binary of this workspace (beside the running benchmark binary).
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe
        .parent()
        .context("the benchmark binary has no directory")?
        .join(name);
    if !p.is_file() {
        bail!(
            "{} is missing: build with `cargo build --workspace --release`",
            p.display()
        );
    }
    Ok(p)
}

/// `program args...` started on `cpu` (`taskset -c CPU`, which execs the program, so the child's
/// pid is the program's).
pub fn pinned(cpu: u32, program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(cpu.to_string()).arg(program);
    c
}

/// A free loopback port (bound and released; good enough on a quiet loopback).
pub fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// A fresh private work directory under the system temp dir.
pub fn work_dir(name: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "hush-bench-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Spawns `cmd` with stdout to null and stderr to `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child> {
    let f = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))
}

/// The last lines of a log, for error messages (logs never hold values).
pub fn tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Polls every millisecond until every `name -> value` of `expected` is a file in `dir` holding
/// exactly `value` (trailing newline ignored); returns the time since `start`. Fails when `child`
/// exits or after `timeout`.
pub fn wait_files(
    dir: &Path,
    expected: &BTreeMap<String, String>,
    start: Instant,
    child: &mut Child,
    log: &Path,
    timeout: Duration,
) -> Result<Duration> {
    loop {
        let all = expected.iter().all(|(n, v)| {
            std::fs::read_to_string(dir.join(n)).is_ok_and(|s| s.trim_end_matches('\n') == v)
        });
        if all {
            return Ok(start.elapsed());
        }
        if let Some(st) = child.try_wait()? {
            bail!("the program exited early ({st}):\n{}", tail(log));
        }
        if start.elapsed() > timeout {
            bail!("timed out waiting for the first files:\n{}", tail(log));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `signal` to `child`.
pub fn signal(child: &Child, signal: rustix::process::Signal) -> Result<()> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id())?)
        .context("a child's pid is positive")?;
    rustix::process::kill_process(pid, signal)?;
    Ok(())
}

/// SIGTERM, then SIGKILL after `grace`; reaps the child.
pub fn stop(child: &mut Child, grace: Duration) -> Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    signal(child, rustix::process::Signal::TERM)?;
    let start = Instant::now();
    while start.elapsed() < grace {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// Waits until something accepts TCP connections on `addr`, for at most `timeout`.
pub fn wait_listening(
    addr: SocketAddr,
    timeout: Duration,
    child: &mut Child,
    log: &Path,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            bail!("the program exited early ({st}):\n{}", tail(log));
        }
        if start.elapsed() > timeout {
            bail!(
                "nothing listens on {addr} after {timeout:?}:\n{}",
                tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
/// `hush keygen -o key` with the `hush` binary at `hush`: the identity file's text and its public
/// key (`age1...`).
pub fn keygen(hush: &Path, key: &Path) -> Result<(String, String)> {
    let kg = Command::new(hush)
        .arg("keygen")
        .arg("-o")
        .arg(key)
        .output()?;
    if !kg.status.success() {
        bail!("hush keygen failed");
    }
    let identity = std::fs::read_to_string(key)?;
    let recipient = identity
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .context("no public key in the keygen output")?
        .to_string();
    Ok((identity, recipient))
}
