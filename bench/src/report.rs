//! The results files: Markdown tables, ratios written the same way everywhere (`Hush / floor`,
//! `Hush / peer`: below 1 means Hush uses less), and the run's context (date, CPU model, load
//! average, pinning) that every `bench/results/*.md` states, since wall-clock figures depend on it.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

/// `a / b` as `0.68x`, or `n/a` when either side is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    }
}

/// A value with `digits` decimals and a unit, or `n/a`.
pub fn num(v: Option<f64>, digits: usize, unit: &str) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}{unit}"),
        _ => "n/a".into(),
    }
}

/// A Markdown table.
#[derive(Debug, Default)]
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The Markdown text.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| {} |", self.head.join(" | "));
        let _ = writeln!(s, "|{}", "---|".repeat(self.head.len()));
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown date".into())
}

/// The machine in one sentence: cores, CPU model, load average now.
pub fn machine() -> String {
    // All CPUs of the machine, not this (pinned) process's share of them.
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), load average {load}")
}

/// The pinning sentence shared by the results files.
pub fn pinning() -> String {
    format!(
        "Client side (driver, load, proxy) pinned to CPU {}, program under test to CPU {} with `taskset`.",
        crate::run::CLIENT_CPU,
        crate::run::SERVER_CPU
    )
}

/// Writes `text` to `path` and prints it.
pub fn save(path: &Path, text: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, text)?;
    println!("{text}");
    eprintln!("==> saved {}", path.display());
    Ok(())
}
