//! The AdmissionReview layer without a server: every workload kind's pod template goes through the
//! same parser at `/validate`, and kinds we do not know pass.

use hush_injector::RawConfig;
use hush_injector::{Endpoint, Metrics};
use hush_injector::{ReviewOut, review};
use serde_json::{Value, json};

fn cfg() -> hush_injector::InjectorConfig {
    RawConfig::from_yaml(
        "sidecar: {image: 'hush-sidecar:test'}\noperator: {vault: {addr: 'https://vault:8200'}}\n",
        "inline",
    )
    .and_then(RawConfig::build)
    .expect("config")
}

fn template(annotations: Value) -> Value {
    json!({
        "metadata": {"annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    })
}

fn workload(group: &str, kind: &str, op: &str, annotations: Value) -> Value {
    let spec = if kind == "CronJob" {
        json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template(annotations)}}})
    } else {
        json!({"template": template(annotations)})
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "w",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "namespace": "ns",
            "operation": op,
            "object": {"metadata": {"name": "w1"}, "spec": spec}
        }
    })
}

fn answer(body: &Value) -> ReviewOut {
    let a = review(
        Endpoint::Validate,
        body.to_string().as_bytes(),
        &cfg(),
        &Metrics::new(),
    );
    assert_eq!(a.http_status, 200);
    serde_json::from_slice(&a.body).expect("review JSON")
}

#[test]
fn every_workload_kind_is_validated_with_the_same_parser() {
    let bad = json!({"hush.dev/inject": "true", "hush.dev/secret-db": "vault:secret/data/db", "hush.dev/mode": "daemon"});
    let good = json!({"hush.dev/inject": "true", "hush.dev/role": "app", "hush.dev/secret-db": "vault:secret/data/db#pw"});
    for (group, kind) in [
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
    ] {
        for op in ["CREATE", "UPDATE"] {
            let r = answer(&workload(group, kind, op, bad.clone())).response;
            assert!(!r.allowed, "{kind} {op} with a bad template must be denied");
            let msg = r.status.expect("status").message;
            assert!(
                msg.contains(&format!("{kind} w1 pod template")) && msg.contains("hush.dev/mode"),
                "{msg}"
            );
            assert!(
                answer(&workload(group, kind, op, good.clone()))
                    .response
                    .allowed,
                "{kind} {op} good"
            );
        }
        let r = answer(&workload(group, kind, "DELETE", bad.clone())).response;
        assert!(r.allowed, "{kind} DELETE passes");
    }
    let r = answer(&workload("example.com", "Widget", "CREATE", bad)).response;
    assert!(r.allowed, "unknown kinds pass");
}
