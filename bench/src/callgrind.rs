//! Instruction counts with `valgrind --tool=callgrind`: unlike wall time or CPU seconds they barely
//! move with the machine's load, so they can be committed (`bench/results/callgrind.tsv`) and
//! re-checked (`scripts/bench-check`, 10% tolerance). A figure is the `summary:` (total `Ir`) of a
//! whole process run; a per-operation figure is the difference between a run that does K
//! operations and one that does none, divided by K, so start-up and shutdown cancel out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The `valgrind --tool=callgrind` command for `program` on the server CPU, writing its profile to
/// `out`.
pub fn command(program: &Path, out: &Path) -> Command {
    let mut c = crate::run::pinned(crate::run::SERVER_CPU, Path::new("valgrind"));
    c.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        // Children (`taskset`, shells) are not followed; the program is started directly.
        .arg("--trace-children=no")
        .arg(program);
    c
}

/// The total instruction count (`summary:` or `totals:` line) of a callgrind profile.
pub fn total(profile: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(profile)
        .with_context(|| format!("reading the callgrind profile {}", profile.display()))?;
    for prefix in ["summary:", "totals:"] {
        if let Some(v) = text
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next())
        {
            return v.parse().context("callgrind total is not a number");
        }
    }
    bail!("no summary line in {}", profile.display())
}

/// One committed figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// Stable id, e.g. `injector.admission`.
    pub name: String,
    /// Instructions.
    pub instructions: u64,
    /// What was counted.
    pub what: String,
}

/// Reads `callgrind.tsv` (`name<TAB>instructions<TAB>what`, `#` comments).
pub fn read_tsv(path: &Path) -> Result<Vec<Figure>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.splitn(3, '\t');
        let (Some(name), Some(n), what) = (f.next(), f.next(), f.next()) else {
            bail!(
                "{}:{}: expected name<TAB>instructions<TAB>what",
                path.display(),
                i + 1
            );
        };
        out.push(Figure {
            name: name.to_string(),
            instructions: n
                .parse()
                .with_context(|| format!("{}:{}: instructions", path.display(), i + 1))?,
            what: what.unwrap_or_default().to_string(),
        });
    }
    Ok(out)
}

/// The TSV text of `figures`.
pub fn tsv(figures: &[Figure]) -> String {
    let mut s = String::from(
        "# Callgrind instruction counts (valgrind --tool=callgrind, Ir), written by scripts/bench-callgrind.\n\
         # scripts/bench-check recomputes them and fails if one is more than 10% above this file.\n\
         # name\tinstructions\twhat\n",
    );
    for f in figures {
        s.push_str(&format!("{}\t{}\t{}\n", f.name, f.instructions, f.what));
    }
    s
}

/// One line of a check: the fresh figure against the committed one.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The figure's name.
    pub name: String,
    /// Measured now.
    pub now: u64,
    /// Committed.
    pub committed: Option<u64>,
}

impl Checked {
    /// now / committed.
    pub fn ratio(&self) -> Option<f64> {
        self.committed
            .filter(|c| *c > 0)
            .map(|c| self.now as f64 / c as f64)
    }
    /// More than `tolerance` (0.10 = 10%) above the committed figure, or no committed figure.
    pub fn fails(&self, tolerance: f64) -> bool {
        self.ratio().is_none_or(|r| r > 1.0 + tolerance)
    }
}

/// Compares fresh figures with committed ones, by name.
pub fn check(now: &[Figure], committed: &[Figure]) -> Vec<Checked> {
    let by: BTreeMap<&str, u64> = committed
        .iter()
        .map(|f| (f.name.as_str(), f.instructions))
        .collect();
    now.iter()
        .map(|f| Checked {
            name: f.name.clone(),
            now: f.instructions,
            committed: by.get(f.name.as_str()).copied(),
        })
        .collect()
}

/// The default location of the committed figures, relative to the repository root.
pub fn default_tsv(root: &Path) -> PathBuf {
    root.join("bench/results/callgrind.tsv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_round_trip_and_check() {
        let figs = vec![
            Figure {
                name: "a".into(),
                instructions: 100,
                what: "x y".into(),
            },
            Figure {
                name: "b".into(),
                instructions: 200,
                what: String::new(),
            },
        ];
        let dir = std::env::temp_dir().join(format!("hush-bench-tsv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.tsv");
        std::fs::write(&p, tsv(&figs)).unwrap();
        assert_eq!(read_tsv(&p).unwrap(), figs);
        let now = vec![
            Figure {
                name: "a".into(),
                instructions: 111,
                what: String::new(),
            },
            Figure {
                name: "b".into(),
                instructions: 210,
                what: String::new(),
            },
            Figure {
                name: "c".into(),
                instructions: 1,
                what: String::new(),
            },
        ];
        let c = check(&now, &figs);
        assert!(c[0].fails(0.10));
        assert!(!c[1].fails(0.10));
        assert!(c[2].fails(0.10));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_the_summary_line() {
        let dir = std::env::temp_dir().join(format!("hush-bench-cg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("callgrind.out");
        std::fs::write(&p, "version: 1\nevents: Ir\nsummary: 12345\nfl=x\n").unwrap();
        assert_eq!(total(&p).unwrap(), 12345);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
