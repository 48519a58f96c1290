//! Measurements of a running process from `/proc`, the same way for Hush, its floors and its
//! peers: resident memory (`VmRSS`, `RssAnon`, `VmHWM` from `/proc/PID/status`, and `Pss` and
//! `Anonymous` from `/proc/PID/smaps_rollup`), CPU time (`utime + stime` from `/proc/PID/stat`, all
//! threads of the process), and the median of repeated runs. Anonymous memory is what a process
//! allocated itself; RSS also counts the shared pages of its binary and libraries.

use std::time::Duration;

use anyhow::{Context, Result};

/// Memory of one process, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mem {
    /// `VmRSS`: resident pages.
    pub rss_kb: u64,
    /// `RssAnon`: resident anonymous pages (heap, stacks).
    pub anon_kb: u64,
    /// `VmHWM`: peak RSS so far.
    pub hwm_kb: u64,
    /// `Pss` from `smaps_rollup`: RSS with shared pages divided among their users.
    pub pss_kb: u64,
}

impl Mem {
    /// RSS in MB (MiB), for tables.
    pub fn rss_mb(&self) -> f64 {
        self.rss_kb as f64 / 1024.0
    }
    /// Anonymous RSS in MB (MiB).
    pub fn anon_mb(&self) -> f64 {
        self.anon_kb as f64 / 1024.0
    }
    /// Peak RSS in MB (MiB).
    pub fn hwm_mb(&self) -> f64 {
        self.hwm_kb as f64 / 1024.0
    }
}

fn field_kb(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Reads the memory figures of `pid`.
pub fn mem(pid: u32) -> Result<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone (reading /proc/{pid}/status)"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Ok(Mem {
        rss_kb: field_kb(&status, "VmRSS").unwrap_or(0),
        anon_kb: field_kb(&status, "RssAnon").unwrap_or(0),
        hwm_kb: field_kb(&status, "VmHWM").unwrap_or(0),
        pss_kb: field_kb(&rollup, "Pss").unwrap_or(0),
    })
}

/// Samples a process's memory every 200 ms in a thread and keeps the largest RSS and anonymous
/// RSS seen, for "RSS under load".
#[derive(Debug)]
pub struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Mem>,
}

impl Sampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Sampler {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut max = Mem::default();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(m) = mem(pid) {
                    max.rss_kb = max.rss_kb.max(m.rss_kb);
                    max.anon_kb = max.anon_kb.max(m.anon_kb);
                    max.hwm_kb = max.hwm_kb.max(m.hwm_kb);
                    max.pss_kb = max.pss_kb.max(m.pss_kb);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            max
        });
        Sampler { stop, handle }
    }

    /// Stops and returns the largest figures seen.
    pub fn stop(self) -> Mem {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Clock ticks per second of `/proc/PID/stat` times.
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// CPU time (user + system, all threads) `pid` has used so far.
pub fn cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone (reading /proc/{pid}/stat)"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/PID/stat format")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 0, utime is field 11, stime field 12.
    let ticks: u64 = f
        .get(11)
        .zip(f.get(12))
        .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
        .context("unexpected /proc/PID/stat format")?;
    Ok(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / ticks_per_second().max(1),
    ))
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if !n.is_multiple_of(2) => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `p`-th percentile (0 to 100) of sorted `values`, nearest rank; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 99.9), 100.0);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let m = mem(me).unwrap();
        assert!(m.rss_kb > 0 && m.anon_kb > 0 && m.hwm_kb >= m.rss_kb);
        cpu(me).unwrap();
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tx\nVmHWM:\t  1234 kB\nVmRSS:\t  1000 kB\nRssAnon:\t 600 kB\n";
        assert_eq!(field_kb(s, "VmRSS"), Some(1000));
        assert_eq!(field_kb(s, "RssAnon"), Some(600));
        assert_eq!(field_kb(s, "Vm"), None);
    }
}
