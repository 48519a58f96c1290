//! The injector's audit records (docs/audit.md), captured from the pure `review` with the same
//! audit layer the binary installs: one record per decision, with the requesting user and the
//! denial's reason, never what a tenant wrote into an annotation; none when the operator's `audit`
//! is off.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};

use hush_injector::{Endpoint, InjectorConfig, Metrics, RawConfig, ReviewOut, review};
use serde_json::{Value, json};

const CANARY: &str = "CANARY-annotation-value-7f3a";

fn cfg(audit: bool) -> InjectorConfig {
    RawConfig::from_yaml(
        &format!(
            "sidecar: {{image: 'hush-sidecar:test'}}\noperator: {{vault: {{addr: 'https://vault:8200'}}, audit: {audit}}}\n"
        ),
        "inline",
    )
    .and_then(RawConfig::build)
    .unwrap()
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

/// Reviews `body` at `endpoint`; returns the answer, the raw audit output and its records.
fn reviewed(
    endpoint: Endpoint,
    body: &Value,
    cfg: &InjectorConfig,
) -> (ReviewOut, String, Vec<Value>) {
    let buf = Buf::default();
    let answer =
        tracing::subscriber::with_default(hush_config::audit::subscriber(buf.clone()), || {
            review(endpoint, body.to_string().as_bytes(), cfg, &Metrics::new())
        });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let records = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (serde_json::from_slice(&answer.body).unwrap(), out, records)
}

fn pod_review(annotations: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "groups": ["system:serviceaccounts"]},
            "object": {
                "metadata": {"name": "web-1", "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}
            }
        }
    })
}

#[test]
fn a_denial_is_recorded_with_the_user_and_reason_but_not_the_annotation() {
    let body = pod_review(json!({
        "hush.dev/inject": "true",
        "hush.dev/secret-db": "vault:secret/data/db#pw",
        "hush.dev/mode": CANARY,
    }));
    let (answer, out, records) = reviewed(Endpoint::Mutate, &body, &cfg(true));
    assert!(!answer.response.allowed);
    assert!(
        answer.response.status.unwrap().message.contains(CANARY),
        "the user's message quotes the annotation (so the record must not be vacuous)"
    );
    assert_eq!(records.len(), 1, "{out}");
    let r = &records[0];
    assert!(out.starts_with("{\"schema\":\"hush.audit/v1\""), "{out}");
    assert_eq!(r["program"], "hush-injector");
    assert_eq!(r["event"], "admission");
    assert_eq!(r["endpoint"], "mutate");
    assert_eq!(r["decision"], "denied");
    assert_eq!(r["reason"], "annotations");
    assert_eq!(
        r["user"],
        "system:serviceaccount:kube-system:replicaset-controller"
    );
    assert_eq!(r["uid"], "u-1");
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(r["kind"], "Pod");
    assert_eq!(r["namespace"], "team-a");
    assert_eq!(r["dryRun"], false);
    assert!(r["time"].as_str().unwrap().ends_with('Z'));
    assert!(!out.contains(CANARY), "{out}");
}

#[test]
fn a_patch_a_workload_check_and_a_bad_request_are_recorded() {
    let good = json!({"hush.dev/inject": "true", "hush.dev/role": "app", "hush.dev/secret-db": "vault:secret/data/db#pw"});
    let (answer, _, records) = reviewed(Endpoint::Mutate, &pod_review(good.clone()), &cfg(true));
    assert!(
        answer.response.patch.is_some(),
        "{:?}",
        answer.response.status
    );
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["decision"], "patched");
    assert!(records[0].get("reason").is_none());

    let deployment = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-2",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "namespace": "team-a",
            "operation": "UPDATE",
            "dryRun": true,
            "userInfo": {"username": "alice@example.com"},
            "object": {"metadata": {"name": "web"}, "spec": {"template": {
                "metadata": {"annotations": good},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}
            }}}
        }
    });
    let (_, _, records) = reviewed(Endpoint::Validate, &deployment, &cfg(true));
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (
            &r["endpoint"],
            &r["decision"],
            &r["kind"],
            &r["user"],
            &r["dryRun"]
        ),
        (
            &json!("validate"),
            &json!("allowed"),
            &json!("apps/Deployment"),
            &json!("alice@example.com"),
            &json!(true)
        )
    );

    let mut no_object = pod_review(json!({}));
    no_object["request"]["object"] = Value::Null;
    let (_, _, records) = reviewed(Endpoint::Mutate, &no_object, &cfg(true));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["decision"], "invalid");
    assert_eq!(records[0]["reason"], "bad_request");
}

#[test]
fn nothing_is_recorded_when_the_operator_turns_it_off() {
    let body = pod_review(json!({"hush.dev/inject": "true", "hush.dev/refesh": "5m"}));
    let (answer, out, _) = reviewed(Endpoint::Mutate, &body, &cfg(false));
    assert!(!answer.response.allowed);
    assert!(out.is_empty(), "{out}");
}
