//! How a [`Report`] is printed: a table for people (one row per finding with its fix on the line
//! below, then the notes, then a one-line summary) or, with `-o json`, one JSON document for
//! scripts and CI. Both carry the same fields; neither carries a secret value, because no finding
//! holds one (doctor never reads Secret data).

use std::fmt::Write as _;

use serde::Serialize;

use super::checks::Report;

/// `-o json`: the report plus the scope it covered.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    /// The namespace checked, or `null` for all.
    namespace: Option<&'a str>,
    webhook: &'a str,
    #[serde(flatten)]
    report: &'a Report,
}

pub(crate) fn json(report: &Report, namespace: Option<&str>, webhook: &str) -> String {
    let doc = JsonReport {
        namespace,
        webhook,
        report,
    };
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

pub(crate) fn table(report: &Report, namespace: Option<&str>, webhook: &str) -> String {
    let mut out = String::new();
    let scope = namespace.map_or_else(
        || "all namespaces".to_string(),
        |n| format!("namespace {n}"),
    );
    if report.findings.is_empty() {
        let _ = writeln!(
            out,
            "No findings: webhook {webhook}, {} pod(s) in {scope}.",
            report.pods_checked
        );
    } else {
        let rows: Vec<[String; 4]> = report
            .findings
            .iter()
            .map(|f| {
                [
                    format!("{:?}", f.severity).to_ascii_uppercase(),
                    f.check.as_str().to_string(),
                    match &f.owner {
                        Some(o) => format!("{} ({o})", f.object),
                        None => f.object.clone(),
                    },
                    f.problem.clone(),
                ]
            })
            .collect();
        let header = ["SEVERITY", "CHECK", "OBJECT", "PROBLEM"].map(str::to_string);
        let mut widths = [0usize; 3];
        for row in std::iter::once(&header).chain(rows.iter()) {
            for (w, cell) in widths.iter_mut().zip(row.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |out: &mut String, row: &[String; 4]| {
            let _ = writeln!(
                out,
                "{:w0$}  {:w1$}  {:w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
        };
        line(&mut out, &header);
        for (row, f) in rows.iter().zip(&report.findings) {
            line(&mut out, row);
            let _ = writeln!(out, "{:w$}  fix: {}", "", f.fix, w = widths[0]);
        }
    }
    if !report.notes.is_empty() {
        out.push('\n');
        for n in &report.notes {
            let _ = writeln!(out, "note: {}: {}", n.object, n.message);
        }
    }
    if !report.findings.is_empty() {
        let _ = writeln!(
            out,
            "\n{} finding(s): webhook {webhook}, {} pod(s) in {scope}.",
            report.findings.len(),
            report.pods_checked
        );
    }
    out
}
