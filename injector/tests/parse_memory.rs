//! What answering one review allocates, against the body's size, for bodies built to inflate when
//! parsed (the fault suite's case 4 sends the first kind at the server): many small values in a
//! field nobody reads, many tiny containers, mounts, volumes and annotations, deep nesting. The
//! server holds 10 times each body's size from its parse budget (`BODY_FACTOR` in `server.rs`): the
//! body itself, and [`BUDGET_FACTOR`] times it for answering. What answering one body adds to the
//! process's peak resident memory (`VmHWM`, reset through `/proc/self/clear_refs` once the body is
//! built) must stay under that, or the budget would not bound the process's memory. Each shape is
//! measured in a fresh process (this test binary, run again for that shape), so memory an earlier
//! shape freed but the allocator kept cannot hide a peak.

use std::process::Command;

use hush_injector::{Endpoint, Metrics, RawConfig, review};

/// What `server.rs` charges a request for answering it, in multiples of its body (its
/// `BODY_FACTOR`, 10, less the body itself).
const BUDGET_FACTOR: usize = 9;

/// Set in the child process that measures one shape.
const SHAPE_VAR: &str = "HUSH_PARSE_MEMORY_SHAPE";

const LIMIT: usize = 3 * 1024 * 1024 - 1024;

fn review_with(object_head: &str, fill: &str, object_tail: &str) -> Vec<u8> {
    review_sep(object_head, fill, ",", object_tail)
}

/// A review whose object is `object_head`, then `fill` (`{i}` numbered) repeated with `sep` up to
/// the body limit, then `object_tail`.
fn review_sep(object_head: &str, fill: &str, sep: &str, object_tail: &str) -> Vec<u8> {
    let mut b = format!(
        "{{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{{\"uid\":\"amp\",\"kind\":{{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"}},\"operation\":\"CREATE\",\"namespace\":\"team-a\",\"object\":{object_head}"
    )
    .into_bytes();
    let mut i = 0usize;
    while b.len() < LIMIT {
        if i > 0 {
            b.extend_from_slice(sep.as_bytes());
        }
        b.extend_from_slice(fill.replace("{i}", &i.to_string()).as_bytes());
        i += 1;
    }
    b.extend_from_slice(object_tail.as_bytes());
    b.extend_from_slice(b"}}");
    b
}

fn status_kib(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Peak resident memory added by answering `body`, in bytes, and the answer's HTTP status.
fn peak_of(body: &[u8]) -> (usize, u16) {
    let cfg = RawConfig::from_yaml(
        "sidecar: {image: 'hush-sidecar:test'}\noperator: {vault: {addr: 'https://vault:8200'}}\n",
        "inline",
    )
    .and_then(RawConfig::build)
    .expect("config");
    let metrics = Metrics::new();
    // Linux: "5" resets VmHWM to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let base = status_kib("VmRSS:");
    let answer = review(Endpoint::Mutate, body, &cfg, &metrics);
    let peak = status_kib("VmHWM:").saturating_sub(base) * 1024;
    (peak, answer.http_status)
}

fn shapes() -> Vec<(&'static str, Vec<u8>)> {
    let meta = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a""#;
    vec![
        // The fault suite's amplifying body: 1.5 million zeros in a field nobody reads.
        (
            "zeros in an unknown field",
            review_with(&format!("{meta}}},\"x\":["), "0", "]}"),
        ),
        (
            "tiny containers",
            review_with(
                &format!("{meta}}},\"spec\":{{\"containers\":["),
                r#"{"name":"c{i}"}"#,
                "]}}",
            ),
        ),
        (
            "tiny mounts",
            review_with(
                &format!("{meta}}},\"spec\":{{\"containers\":[{{\"name\":\"c\",\"volumeMounts\":["),
                r#"{"name":"","mountPath":""}"#,
                "]}]}}",
            ),
        ),
        (
            "tiny env",
            review_with(
                &format!("{meta}}},\"spec\":{{\"initContainers\":[{{\"name\":\"c\",\"env\":["),
                r#"{"name":""}"#,
                "]}]}}",
            ),
        ),
        (
            "tiny volumes",
            review_with(
                &format!("{meta}}},\"spec\":{{\"volumes\":["),
                r#"{"name":""}"#,
                "]}}",
            ),
        ),
        (
            "many annotations",
            review_with(&format!("{meta},\"annotations\":{{"), r#""a{i}":"""#, "}}}"),
        ),
        (
            "many hush annotations",
            review_with(
                &format!("{meta},\"annotations\":{{"),
                r#""hush.dev/x{i}":"""#,
                "}}}",
            ),
        ),
        (
            "deep nesting in an unknown field",
            review_sep(&format!("{meta}}},\"x\":"), "[", "", "]"),
        ),
    ]
}

#[test]
fn answering_any_body_stays_within_the_servers_budget() {
    if let Ok(i) = std::env::var(SHAPE_VAR) {
        // The child: measure one shape and print it for the parent.
        let i: usize = i.parse().expect("a shape index");
        let (name, body) = shapes().swap_remove(i);
        let (peak, status) = peak_of(&body);
        println!("MEASURED {i} {} {peak} {status} {name}", body.len());
        return;
    }
    let exe = std::env::current_exe().expect("this test binary");
    let mut report = Vec::new();
    let mut over = Vec::new();
    for i in 0..shapes().len() {
        let out = Command::new(&exe)
            .args([
                "--exact",
                "answering_any_body_stays_within_the_servers_budget",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SHAPE_VAR, i.to_string())
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("MEASURED ").map(|(_, m)| m))
            .unwrap_or_else(|| panic!("shape {i}: no measurement\n{stdout}"));
        let mut f = line.splitn(5, ' ');
        let mut num = || -> usize { f.next().and_then(|x| x.parse().ok()).expect("a number") };
        let (_, len, peak, status) = (num(), num(), num(), num());
        let name = f.next().unwrap_or("?").to_string();
        report.push(format!(
            "{name}: {len} bytes -> peak +{peak} bytes ({:.2}x), HTTP {status}",
            peak as f64 / len as f64
        ));
        if peak > BUDGET_FACTOR * len {
            over.push(name);
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        over.is_empty(),
        "over {BUDGET_FACTOR}x the body: {over:?}\n{}",
        report.join("\n")
    );
}
