//! Golden tests of the pure mutation: every `testdata/<case>.pod.yaml` is admitted with
//! `testdata/config.yaml` (or `<case>.config.yaml`), and the result must equal
//! `<case>.patch.json` (compared as parsed JSON) or `<case>.denial.txt`. `HUSH_BLESS=1` rewrites the
//! expectations; review the diff before committing. Each patched pod is also re-admitted, which
//! must give an empty patch, and checked against the Pod Security "restricted" rules that concern
//! the injected container.

use std::path::{Path, PathBuf};

use hush_injector::InjectorConfig;
use hush_injector::RawConfig;
use hush_injector::{SIDECAR_NAME, mutate};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn config_for(case: &str) -> InjectorConfig {
    let dir = testdata();
    let specific = dir.join(format!("{case}.config.yaml"));
    let path = if specific.exists() {
        specific
    } else {
        dir.join("config.yaml")
    };
    RawConfig::from_file(&path)
        .and_then(RawConfig::build)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cases() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(testdata())
        .expect("testdata exists")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".pod.yaml").map(str::to_string)
        })
        .collect();
    out.sort();
    out
}

fn bless() -> bool {
    std::env::var("HUSH_BLESS").is_ok_and(|v| v == "1")
}

/// The checks of Pod Security "restricted" that the injected container must pass on its own.
fn assert_restricted(case: &str, sidecar: &Value) {
    let sc = &sidecar["securityContext"];
    assert_eq!(
        sc["runAsNonRoot"],
        Value::Bool(true),
        "{case}: runAsNonRoot"
    );
    assert_eq!(
        sc["allowPrivilegeEscalation"],
        Value::Bool(false),
        "{case}: allowPrivilegeEscalation"
    );
    assert_eq!(
        sc["readOnlyRootFilesystem"],
        Value::Bool(true),
        "{case}: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{case}: capabilities"
    );
    assert!(
        sc["capabilities"].get("add").is_none(),
        "{case}: no added capabilities"
    );
    assert_eq!(
        sc["seccompProfile"]["type"], "RuntimeDefault",
        "{case}: seccomp"
    );
    let uid = sc["runAsUser"].as_i64().expect("runAsUser set");
    assert!(uid > 0, "{case}: non-root uid");
}

#[test]
fn golden_cases() {
    let cases = cases();
    assert!(
        cases.len() >= 25,
        "at least 25 golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let dir = testdata();
        let text = std::fs::read_to_string(dir.join(format!("{case}.pod.yaml"))).expect("read pod");
        let pod: Pod = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{case}: {e}"));
        let ns = pod
            .metadata
            .namespace
            .clone()
            .expect("cases set a namespace");
        let cfg = config_for(case);
        let patch_file = dir.join(format!("{case}.patch.json"));
        let denial_file = dir.join(format!("{case}.denial.txt"));
        let result = mutate(&pod, &cfg, &ns);
        if bless() {
            let _ = std::fs::remove_file(&patch_file);
            let _ = std::fs::remove_file(&denial_file);
            match &result {
                Ok(p) => {
                    let mut s = serde_json::to_string_pretty(p).expect("encode");
                    s.push('\n');
                    std::fs::write(&patch_file, s).expect("write");
                }
                Err(d) => std::fs::write(&denial_file, format!("{d}\n")).expect("write"),
            }
            continue;
        }
        match &result {
            Ok(patch) => {
                let Ok(expected) = std::fs::read_to_string(&patch_file) else {
                    failures.push(format!(
                        "{case}: patched, but there is no {case}.patch.json (denial expected?)"
                    ));
                    continue;
                };
                let expected: Value = serde_json::from_str(&expected).expect("golden JSON");
                let got = serde_json::to_value(patch).expect("encode");
                if got != expected {
                    failures.push(format!(
                        "{case}: patch differs from golden (HUSH_BLESS=1 to rewrite)\n got: {}",
                        serde_json::to_string_pretty(&got).unwrap_or_default()
                    ));
                    continue;
                }
                // Apply, then admit again: nothing more to do.
                let mut doc = serde_json::to_value(&pod).expect("pod json");
                json_patch::patch(&mut doc, &patch.0)
                    .unwrap_or_else(|e| panic!("{case}: patch does not apply: {e}"));
                let patched: Pod =
                    serde_json::from_value(doc.clone()).expect("patched pod decodes");
                let again = mutate(&patched, &cfg, &ns)
                    .unwrap_or_else(|d| panic!("{case}: second admission denied: {d}"));
                assert!(
                    again.0.is_empty(),
                    "{case}: second admission must be empty, got {again:?}"
                );
                if !patch.0.is_empty() {
                    let sidecar = &doc["spec"]["initContainers"][0];
                    assert_eq!(sidecar["name"], SIDECAR_NAME, "{case}: sidecar first");
                    assert_restricted(case, sidecar);
                    assert_eq!(
                        doc["metadata"]["annotations"]["hush.dev/status"],
                        "injected"
                    );
                }
            }
            Err(denial) => {
                let Ok(expected) = std::fs::read_to_string(&denial_file) else {
                    failures.push(format!(
                        "{case}: denied ({denial}), but there is no {case}.denial.txt"
                    ));
                    continue;
                };
                if expected.trim_end() != denial.to_string() {
                    failures.push(format!(
                        "{case}: denial differs\n want: {}\n  got: {denial}",
                        expected.trim_end()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_denial_names_an_annotation_or_field() {
    for case in cases() {
        let file = testdata().join(format!("{case}.denial.txt"));
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        assert!(
            text.contains("hush.dev/") || text.contains("spec."),
            "{case}: the denial must name the annotation or the field: {text}"
        );
    }
}
