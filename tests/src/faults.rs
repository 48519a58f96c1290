//! Shared pieces of the fault suite (`hush-faults`, run by `scripts/faults`; see docs/faults.md):
//! a loopback TCP proxy that can pass, blackhole or reset connections to a real server, synthetic
//! secret values that show a torn or mixed write at a glance, an inspector that reads a secrets
//! volume the way an app does (through `..data`) and judges the set it sees, a `hush-sidecar`
//! process launched with `HUSH_ROOT`, a tmpfs mount, and `/proc` memory figures. They live in the
//! library rather than the binary so that a regression test can reuse them; none of them holds a
//! real secret, and nothing here prints a value.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the [`FaultProxy`] does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward both ways to the target.
    Pass,
    /// Accept and read, never answer (a dead route or a hung server).
    Blackhole,
    /// Accept and close at once with a TCP reset.
    Reset,
}

/// A loopback TCP proxy in front of a real server. Changing the mode also applies to connections
/// already open (a pooled keep-alive connection must not outlive the outage).
#[derive(Debug)]
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: watch::Sender<ProxyMode>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `target` (in [`ProxyMode::Pass`]).
    pub async fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(ProxyMode::Pass);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let rx = rx.clone();
                tokio::spawn(serve(client, target, rx));
            }
        });
        Ok(FaultProxy { addr, mode: tx })
    }

    /// Switches every connection, new and open, to `mode`.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }
}

async fn serve(mut client: TcpStream, target: SocketAddr, mut rx: watch::Receiver<ProxyMode>) {
    loop {
        let mode = *rx.borrow_and_update();
        match mode {
            ProxyMode::Reset => {
                let _ = client.set_zero_linger();
                return;
            }
            ProxyMode::Blackhole => {
                let mut sink = [0u8; 4096];
                loop {
                    tokio::select! {
                        r = client.read(&mut sink) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        },
                        changed = rx.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            break;
                        }
                    }
                }
                if *rx.borrow() == ProxyMode::Pass {
                    // Half a conversation was swallowed: the client must reconnect.
                    return;
                }
            }
            ProxyMode::Pass => {
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = client.set_zero_linger();
                    return;
                };
                let _ = upstream.set_nodelay(true);
                let _ = client.set_nodelay(true);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => return,
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        // Leave the upstream; the loop applies the new mode to the client.
                    }
                }
            }
        }
    }
}

/// A synthetic value whose every byte says which version and file it belongs to, with its own
/// length and an end mark, so a torn, truncated or mixed file is recognised from its content.
pub fn synthetic_value(version: u64, name: &str, len: usize) -> String {
    let head = format!("hush-fault v={version:010} file={name} len={len:010}\n");
    let tail = "\nEND\n";
    let mut s = String::with_capacity(len.max(head.len() + tail.len()));
    s.push_str(&head);
    let line = format!("{version:010}:{name}:");
    while s.len() + tail.len() < len {
        let room = len - tail.len() - s.len();
        s.push_str(&line[..line.len().min(room)]);
    }
    s.push_str(tail);
    s
}

/// The version a [`synthetic_value`] belongs to, or why it is not a complete one for `name`.
pub fn parse_synthetic(bytes: &[u8], name: &str) -> Result<u64, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    if text.is_empty() {
        return Err("empty".into());
    }
    let (head, _) = text
        .split_once('\n')
        .ok_or_else(|| format!("no header line ({} bytes)", bytes.len()))?;
    let mut version = None;
    let mut file = None;
    let mut len = None;
    for part in head.split(' ') {
        if let Some(v) = part.strip_prefix("v=") {
            version = v.parse::<u64>().ok();
        } else if let Some(v) = part.strip_prefix("file=") {
            file = Some(v);
        } else if let Some(v) = part.strip_prefix("len=") {
            len = v.parse::<usize>().ok();
        }
    }
    let (Some(version), Some(file), Some(len)) = (version, file, len) else {
        return Err("malformed header".into());
    };
    if file != name {
        return Err(format!("holds file {file}'s content"));
    }
    if bytes.len() != len || !text.ends_with("\nEND\n") {
        return Err(format!("torn: {} of {len} bytes", bytes.len()));
    }
    if text != synthetic_value(version, name, len) {
        return Err("content differs from its version's".into());
    }
    Ok(version)
}

/// What a reader of the volume sees right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeView {
    /// Where `..data` points, if it is a `..`-prefixed directory.
    pub data_dir: Option<String>,
    /// Version of each file read through one open `..data` (`Err`: why it is not complete).
    pub files: BTreeMap<String, Result<u64, String>>,
    /// Version of each file read through its stable `<name>` link.
    pub links: BTreeMap<String, Result<u64, String>>,
    /// `..`-prefixed entries other than `..data` and the directory it points at.
    pub leftovers: Vec<String>,
}

impl VolumeView {
    /// The one version of a complete, consistent set, or every problem found.
    pub fn consistent_version(&self) -> Result<u64, Vec<String>> {
        let mut problems = Vec::new();
        if self.data_dir.is_none() {
            problems.push("..data does not resolve to a ..-prefixed directory".to_string());
        }
        let mut versions = std::collections::BTreeSet::new();
        for (name, r) in &self.files {
            match r {
                Ok(v) => {
                    versions.insert(*v);
                }
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        if versions.len() > 1 {
            problems.push(format!("mixed set: versions {versions:?}"));
        }
        match (problems.is_empty(), versions.iter().next()) {
            (true, Some(v)) => Ok(*v),
            (true, None) => Err(vec!["no files".into()]),
            _ => Err(problems),
        }
    }
}

/// Reads the volume at `dir` like an app: `..data` opened once, each of `names` read relative to
/// it, then each stable link on its own.
pub fn inspect_volume(dir: &Path, names: &[String]) -> VolumeView {
    let mut view = VolumeView::default();
    let target = std::fs::read_link(dir.join("..data"))
        .ok()
        .and_then(|t| t.to_str().map(str::to_string))
        .filter(|t| t.starts_with("..") && !t.contains('/'));
    let data_fd = rustix::fs::open(
        dir.join("..data"),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    );
    for name in names {
        let r = match &data_fd {
            Ok(fd) => read_at(fd.as_fd(), name).and_then(|b| parse_synthetic(&b, name)),
            Err(e) => Err(format!("..data: {e}")),
        };
        view.files.insert(name.clone(), r);
        let r = std::fs::read(dir.join(name))
            .map_err(|e| format!("read {name}: {}", e.kind()))
            .and_then(|b| parse_synthetic(&b, name));
        view.links.insert(name.clone(), r);
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with("..") && n != "..data" && Some(&n) != target.as_ref() {
                view.leftovers.push(n);
            }
        }
    }
    view.leftovers.sort();
    view.data_dir = target;
    view
}

fn read_at(dir: std::os::fd::BorrowedFd<'_>, name: &str) -> Result<Vec<u8>, String> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open: {e}"))?;
    let mut out = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut out)
        .map_err(|e| format!("read: {}", e.kind()))?;
    Ok(out)
}

/// Memory figures of a process from `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemStatus {
    /// Resident set size now.
    pub rss_kib: u64,
    /// Peak resident set size (high-water mark).
    pub hwm_kib: u64,
    /// Threads.
    pub threads: u64,
}

/// Reads [`MemStatus`] of `pid`; `None` once the process is gone.
pub fn mem_status(pid: u32) -> Option<MemStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(MemStatus {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
    })
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A tmpfs mounted for the duration of a case (needs root), unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (a `mount -o size=` value such as `256k`) at `path`.
    pub fn mount(path: &Path, size: &str) -> std::io::Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "mount -t tmpfs at {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// A `hush-sidecar` process run locally: `HUSH_CONFIG` from the caller, paths re-rooted under
/// `root` (`HUSH_ROOT`), metrics on a loopback port, logs to a file under `root`.
#[derive(Debug)]
pub struct SidecarProcess {
    /// The running child.
    pub child: Child,
    /// Its combined stdout and stderr.
    pub log: PathBuf,
    /// Where its `/metrics` listens.
    pub metrics: SocketAddr,
}

impl SidecarProcess {
    /// Starts `bin <command>` with `config_json` as `HUSH_CONFIG`.
    pub fn spawn(
        bin: &Path,
        command: &str,
        config_json: &str,
        root: &Path,
        log_name: &str,
    ) -> std::io::Result<SidecarProcess> {
        let port = crate::harness::free_port();
        let metrics: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = root.join(log_name);
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .arg(command)
            .env_clear()
            .env("HUSH_CONFIG", config_json)
            .env("HUSH_ROOT", root)
            .env("HUSH_METRICS_ADDR", metrics.to_string())
            .env("HUSH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        Ok(SidecarProcess {
            child,
            log,
            metrics,
        })
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: rustix::process::Signal) {
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `limit` for the exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if std::time::Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => return None,
            }
        }
    }

    /// Its `/metrics` text, empty if it does not answer.
    pub fn metrics_text(&self) -> String {
        use std::io::Write;
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&self.metrics, Duration::from_secs(2))
        else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ =
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A small xorshift generator: reproducible from its seed, good enough to pick fault instants.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A uniform duration in `[0, max]`.
    pub fn duration_upto(&mut self, max: Duration) -> Duration {
        let micros = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.next_u64() % micros.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_values_round_trip_and_torn_ones_are_caught() {
        let v = synthetic_value(42, "db", 1000);
        assert_eq!(v.len(), 1000);
        assert_eq!(parse_synthetic(v.as_bytes(), "db"), Ok(42));
        assert!(parse_synthetic(&v.as_bytes()[..999], "db").is_err());
        assert!(parse_synthetic(v.as_bytes(), "other").is_err());
        assert!(parse_synthetic(b"", "db").is_err());
        let mixed = v.replacen("0000000042:db:", "0000000041:db:", 3);
        assert!(parse_synthetic(mixed.as_bytes(), "db").is_err());
    }

    #[test]
    fn a_view_with_two_versions_is_mixed() {
        let mut view = VolumeView {
            data_dir: Some("..x".into()),
            ..VolumeView::default()
        };
        view.files.insert("a".into(), Ok(1));
        view.files.insert("b".into(), Ok(2));
        assert!(view.consistent_version().is_err());
        view.files.insert("b".into(), Ok(1));
        assert_eq!(view.consistent_version(), Ok(1));
    }
}
