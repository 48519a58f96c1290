//! No `hush` message ever contains an input value. Every malformed input below carries the canary
//! `CANARYzq7` where a value (or a stray line of one) could end up: a field's value, a field's
//! name, a kind, a data key's value, a broken document. Each must fail with a message on stderr
//! (so the user learns what is wrong and where) that never repeats the canary, on stdout or stderr.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;

const CANARY: &str = "CANARYzq7";

/// Secret manifests, each broken in one place that holds the canary.
fn broken_secrets() -> Vec<(&'static str, String)> {
    let c = CANARY;
    let head = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod}\n";
    vec![
        (
            "kind value",
            format!(
                "apiVersion: v1\nkind: {c}\nmetadata: {{name: db, namespace: prod}}\nstringData: {{a: b}}\n"
            ),
        ),
        (
            "apiVersion value",
            format!(
                "apiVersion: {c}\nkind: Secret\nmetadata: {{name: db, namespace: prod}}\nstringData: {{a: b}}\n"
            ),
        ),
        (
            "unknown top-level field",
            format!("{head}{c}: hunter2\nstringData: {{a: b}}\n"),
        ),
        ("bad base64 in data", format!("{head}data: {{a: {c}!!}}\n")),
        (
            "data value not a string",
            format!("{head}data: {{a: [{c}]}}\n"),
        ),
        (
            "stringData value a map",
            format!("{head}stringData: {{a: {{{c}: 1}}}}\n"),
        ),
        (
            "stringData value a list",
            format!("{head}stringData: {{a: [{c}]}}\n"),
        ),
        (
            "type not a string",
            format!("{head}type: [{c}]\nstringData: {{a: b}}\n"),
        ),
        (
            "immutable not a bool",
            format!("{head}immutable: {c}\nstringData: {{a: b}}\n"),
        ),
        ("unclosed flow map", format!("{head}stringData: {{a: {c}\n")),
        ("tab indentation", format!("{head}stringData:\n\ta: {c}\n")),
        (
            "two documents",
            format!("{head}stringData: {{a: {c}}}\n---\n{head}stringData: {{a: {c}}}\n"),
        ),
        (
            "duplicate key",
            format!("{head}stringData: {{a: {c}, a: {c}2}}\n"),
        ),
        (
            "metadata a string",
            format!("apiVersion: v1\nkind: Secret\nmetadata: {c}\nstringData: {{a: b}}\n"),
        ),
        ("top level a list", format!("- {c}\n")),
        ("top level a scalar", format!("{c}\n")),
        (
            "JSON unknown field",
            format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{{\"name\":\"db\",\"namespace\":\"prod\"}},\"{c}\":\"x\"}}"
            ),
        ),
        (
            "JSON bad value type",
            format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{{\"name\":\"db\",\"namespace\":\"prod\"}},\"stringData\":{{\"a\":{{\"{c}\":1}}}}}}"
            ),
        ),
        (
            "reserved key",
            format!("{head}stringData: {{_hush: {c}}}\n"),
        ),
        (
            "invalid key",
            format!("{head}stringData: {{\"a/b\": {c}}}\n"),
        ),
    ]
}

fn assert_clean(what: &str, out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{what}: must fail\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains("error") || stderr.contains("FAIL"),
        "{what}: says what is wrong: {stderr}"
    );
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !text.contains(CANARY) && !text.contains("Q0FOQVJZenE3"),
            "{what}: the input value reached {name}: {text}"
        );
    }
}

#[test]
fn seal_errors_never_repeat_input_values() {
    let dir = scratch("canary-seal");
    for (what, text) in broken_secrets() {
        let input = dir.join("secret.yaml");
        std::fs::write(&input, &text).unwrap();
        let out = hush()
            .arg("seal")
            .arg(&input)
            .args(["-r", &recipient("prod")])
            .output()
            .unwrap();
        assert_clean(what, &out);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unseal_and_verify_errors_never_repeat_input_values() {
    let dir = scratch("canary-unseal");
    let c = CANARY;
    let cm_head = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db\n  namespace: prod\n  labels: {hush.dev/sealed: v1}\n";
    let cases = vec![
        (
            "kind value",
            format!(
                "apiVersion: v1\nkind: {c}\nmetadata: {{name: db, namespace: prod}}\ndata: {{a: b}}\n"
            ),
        ),
        (
            "unknown top-level field",
            format!("{cm_head}{c}: x\ndata: {{a: b}}\n"),
        ),
        (
            "data value a map",
            format!("{cm_head}data: {{a: {{{c}: 1}}}}\n"),
        ),
        ("no metadata key", format!("{cm_head}data: {{a: {c}}}\n")),
        (
            "garbage metadata",
            format!("{cm_head}data: {{_hush: {c}, a: {c}}}\n"),
        ),
        ("unclosed", format!("{cm_head}data: {{a: {c}\n")),
    ];
    for (what, text) in cases {
        let input = dir.join("sealed.yaml");
        std::fs::write(&input, &text).unwrap();
        for cmd in ["unseal", "verify"] {
            let out = hush()
                .arg(cmd)
                .arg("-i")
                .arg(identity_path("prod"))
                .arg(&input)
                .output()
                .unwrap();
            assert_clean(&format!("{cmd}: {what}"), &out);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
