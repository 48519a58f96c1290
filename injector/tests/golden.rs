//! Golden tests of the pure mutation: every `testdata/<case>.pod.yaml` is admitted with
//! `testdata/config.yaml` (or `<case>.config.yaml`), and the result must equal
//! `<case>.patch.json` (compared as parsed JSON) or `<case>.denial.txt`. `HUSH_BLESS=1` rewrites the
//! expectations; review the diff before committing. Each patched pod is also re-admitted, which
//! must give an empty patch, and checked against the Pod Security "restricted" rules that concern
//! the injected container. Every case, and every pod a patch produced, also goes through the
//! AdmissionReview path the server uses (`review`), whose answer must be, byte for byte, the one
//! made from `mutate`'s patch.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use hush_injector::InjectorConfig;
use hush_injector::RawConfig;
use hush_injector::{Endpoint, Metrics, ReviewOut, review};
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

fn load_case(case: &str) -> (Pod, String) {
    let text = std::fs::read_to_string(testdata().join(format!("{case}.pod.yaml"))).expect("read");
    let pod: Pod = serde_saphyr::from_str(&text).expect("pod");
    let ns = pod.metadata.namespace.clone().expect("namespace");
    (pod, ns)
}

fn apply(pod: &Pod, patch: &json_patch::Patch) -> Value {
    let mut doc = serde_json::to_value(pod).expect("pod json");
    json_patch::patch(&mut doc, &patch.0).expect("the patch applies");
    doc
}

/// Compares `got` with the golden file `name` under testdata/ (rewritten with HUSH_BLESS=1).
fn golden(name: &str, got: &str) {
    let file = testdata().join(name);
    if bless() {
        std::fs::write(&file, got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&file)
        .unwrap_or_else(|_| panic!("no {name} (HUSH_BLESS=1 to write it)"));
    assert_eq!(
        got, want,
        "{name} differs from golden (HUSH_BLESS=1 to rewrite)"
    );
}

/// Reinvocation (`reinvocationPolicy: IfNeeded`): Hush injected `plain`, then another webhook
/// added an app container (`late`) and an init container (`late-init`), and the apiserver calls
/// Hush again. The patch mounts the secrets read-only into both and changes nothing else
/// (golden `reinvocation.patch.json`); the admission after that is empty.
#[test]
fn reinvocation_mounts_containers_added_by_a_later_webhook() {
    let (pod, ns) = load_case("plain");
    let cfg = config_for("plain");
    let first = mutate(&pod, &cfg, &ns).expect("injected");
    let mut doc = apply(&pod, &first);
    doc["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(serde_json::json!({"name": "late", "image": "registry.example/mesh:1"}));
    doc["spec"]["initContainers"]
        .as_array_mut()
        .expect("initContainers")
        .push(serde_json::json!({"name": "late-init", "image": "registry.example/init:1"}));
    let injected: Pod = serde_json::from_value(doc).expect("pod");
    let again = mutate(&injected, &cfg, &ns).expect("reinvocation is allowed");
    let mut text = serde_json::to_string_pretty(&again).expect("encode");
    text.push('\n');
    golden("reinvocation.patch.json", &text);
    let doc = apply(&injected, &again);
    for (list, name) in [("containers", "late"), ("initContainers", "late-init")] {
        let c = doc["spec"][list]
            .as_array()
            .expect("list")
            .iter()
            .find(|c| c["name"] == name)
            .expect("the late container");
        assert_eq!(
            c["volumeMounts"],
            serde_json::json!([{"name": "hush-secrets", "mountPath": "/var/run/secrets/hush", "readOnly": true}]),
            "{name} gets the read-only secrets mount"
        );
    }
    let done: Pod = serde_json::from_value(doc).expect("pod");
    let third = mutate(&done, &cfg, &ns).expect("allowed");
    assert!(third.0.is_empty(), "nothing left to add: {third:?}");
}

/// Changes the role in the injected sidecar's `HUSH_CONFIG` from `app` to `admin`, as a tenant
/// copying an injected pod could.
fn forge_role(doc: &mut Value) {
    let env = doc["spec"]["initContainers"][0]["env"]
        .as_array_mut()
        .expect("env");
    let config = env
        .iter_mut()
        .find(|e| e["name"] == "HUSH_CONFIG")
        .expect("HUSH_CONFIG");
    let forged = config["value"]
        .as_str()
        .expect("a value")
        .replace("\"role\":\"app\"", "\"role\":\"admin\"");
    assert!(
        forged.contains("\"role\":\"admin\""),
        "the role was replaced"
    );
    config["value"] = Value::String(forged);
}

/// A manifest that brings its own `hush-sidecar` (say, a copy of an injected pod with the role in
/// `HUSH_CONFIG` changed to one the namespace may not use) is denied, not passed through as
/// "already injected" (golden `reinvocation-forged.denial.txt`).
#[test]
fn a_pod_with_its_own_sidecar_config_is_denied() {
    let (pod, ns) = load_case("plain");
    let cfg = config_for("plain");
    let first = mutate(&pod, &cfg, &ns).expect("injected");
    let mut doc = apply(&pod, &first);
    forge_role(&mut doc);
    let forged: Pod = serde_json::from_value(doc).expect("pod");
    let denial = mutate(&forged, &cfg, &ns).expect_err("a forged sidecar is denied");
    golden("reinvocation-forged.denial.txt", &format!("{denial}\n"));
    assert_eq!(denial.reason.as_str(), "sidecar_mismatch");
}

/// Admitted means startable: a config whose `HUSH_CONFIG=` string is over Linux's 128 KiB for one
/// environment string is denied with a message that says so; the largest under the limit passes.
#[test]
fn a_config_too_large_for_the_environment_is_denied() {
    let (mut pod, ns) = load_case("plain");
    let cfg = config_for("plain");
    let base = mutate(&pod, &cfg, &ns).expect("injected");
    let base_len = config_len(&apply(&pod, &base));
    let annotations = pod.metadata.annotations.as_mut().expect("annotations");
    // Templates of up to 32 KiB each, on as many files as it takes to pass 128 KiB.
    for i in 0..5 {
        annotations.insert(
            format!("hush.dev/secret-t{i}"),
            "vault:secret/data/team-a/db".into(),
        );
        annotations.insert(format!("hush.dev/template-t{i}"), "x".repeat(30 << 10));
    }
    let denial = mutate(&pod, &cfg, &ns).expect_err("over 128 KiB is denied");
    assert_eq!(denial.reason.as_str(), "config_too_large");
    let text = denial.to_string();
    assert!(
        text.contains("HUSH_CONFIG")
            && text.contains("131072")
            && text.contains("hush.dev/template-"),
        "{text}"
    );
    // Shrink the last template until the whole string fits exactly.
    let over = mutate_size(&pod, &cfg, &ns);
    let fits = 30 * 1024 - (over - hush_injector::MAX_ENV_STRING_BYTES);
    let annotations = pod.metadata.annotations.as_mut().expect("annotations");
    annotations.insert("hush.dev/template-t4".into(), "x".repeat(fits));
    let patch = mutate(&pod, &cfg, &ns).expect("exactly at the limit is allowed");
    let len = config_len(&apply(&pod, &patch));
    assert_eq!(
        "HUSH_CONFIG=".len() + len + 1,
        hush_injector::MAX_ENV_STRING_BYTES
    );
    assert!(len > base_len);
}

/// The `HUSH_CONFIG=...\0` size the pod would get, read from the denial message.
fn mutate_size(pod: &Pod, cfg: &hush_injector::InjectorConfig, ns: &str) -> usize {
    let text = mutate(pod, cfg, ns).expect_err("too large").to_string();
    let (_, rest) = text.split_once("would be ").expect("size in the message");
    rest.split(' ')
        .next()
        .expect("a number")
        .parse()
        .expect("a number")
}

fn config_len(doc: &Value) -> usize {
    doc["spec"]["initContainers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "HUSH_CONFIG")
        .and_then(|e| e["value"].as_str())
        .expect("HUSH_CONFIG")
        .len()
}

/// `/mutate`'s answer for `pod` (any JSON object) in namespace `ns`.
fn wire(pod: &Value, ns: &str, cfg: &InjectorConfig) -> (u16, Vec<u8>) {
    let body = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "golden-uid",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
        }
    });
    let a = review(
        Endpoint::Mutate,
        body.to_string().as_bytes(),
        cfg,
        &Metrics::new(),
    );
    (a.http_status, a.body)
}

/// The answer the server gave before it parsed reviews into views and wrote patches in one pass:
/// `mutate`'s result, its patch through `serde_json::to_vec` and base64, the answer through serde.
fn expected_answer(result: &Result<json_patch::Patch, hush_injector::Denial>) -> Vec<u8> {
    let response = match result {
        Ok(p) if p.0.is_empty() => serde_json::json!({"uid": "golden-uid", "allowed": true}),
        Ok(p) => serde_json::json!({
            "uid": "golden-uid", "allowed": true, "patchType": "JSONPatch",
            "patch": base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(p).expect("encode")),
        }),
        Err(d) => serde_json::json!({
            "uid": "golden-uid", "allowed": false,
            "status": {"code": 403, "message": d.to_string(), "reason": "Forbidden"},
        }),
    };
    let out: ReviewOut = serde_json::from_value(serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response,
    }))
    .expect("a ReviewOut");
    serde_json::to_vec(&out).expect("encode")
}

#[test]
fn the_wire_path_answers_what_mutate_decides_byte_for_byte() {
    let mut checked = 0;
    for case in cases() {
        let (pod, ns) = load_case(&case);
        let cfg = config_for(&case);
        let result = mutate(&pod, &cfg, &ns);
        let json = serde_json::to_value(&pod).expect("pod json");
        let (status, body) = wire(&json, &ns, &cfg);
        assert_eq!(status, 200, "{case}");
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&expected_answer(&result)),
            "{case}"
        );
        checked += 1;
        // The patched pod, admitted again through the wire: allowed, nothing to add.
        if let Ok(patch) = &result {
            let doc = apply(&pod, patch);
            let (_, again) = wire(&doc, &ns, &cfg);
            assert_eq!(
                String::from_utf8_lossy(&again),
                String::from_utf8_lossy(&expected_answer(&Ok(json_patch::Patch(Vec::new())))),
                "{case}: second admission"
            );
        }
    }
    assert!(checked >= 25, "{checked} cases");
}

/// The reinvocation and forged-sidecar pods of the tests above, through the wire.
#[test]
fn reinvocation_through_the_wire_answers_what_mutate_decides() {
    let (pod, ns) = load_case("plain");
    let cfg = config_for("plain");
    let first = mutate(&pod, &cfg, &ns).expect("injected");
    let mut doc = apply(&pod, &first);
    doc["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(serde_json::json!({"name": "late", "image": "registry.example/mesh:1"}));
    let late: Pod = serde_json::from_value(doc.clone()).expect("pod");
    let (_, body) = wire(&doc, &ns, &cfg);
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&expected_answer(&mutate(&late, &cfg, &ns)))
    );
    forge_role(&mut doc);
    let forged: Pod = serde_json::from_value(doc.clone()).expect("pod");
    let result = mutate(&forged, &cfg, &ns);
    assert!(result.is_err(), "forged");
    let (_, body) = wire(&doc, &ns, &cfg);
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&expected_answer(&result))
    );
}
