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

/// A Pod CREATE written by hand, with its request fields in `order` (the kube-apiserver writes
/// `kind` and `operation` before `object`; JSON does not promise any order).
fn pod_create(order: &[&str], object: &str) -> String {
    let field = |name: &str| match name {
        "uid" => r#""uid":"p""#.to_string(),
        "kind" => r#""kind":{"group":"","version":"v1","kind":"Pod"}"#.to_string(),
        "namespace" => r#""namespace":"ns""#.to_string(),
        "operation" => r#""operation":"CREATE""#.to_string(),
        "object" => format!(r#""object":{object}"#),
        other => panic!("no field {other}"),
    };
    let request: Vec<String> = order.iter().map(|f| field(f)).collect();
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{{}}}}}"#,
        request.join(",")
    )
}

const POD: &str = r#"{"metadata":{"name":"p1","annotations":{"hush.dev/inject":"true","hush.dev/role":"app","hush.dev/secret-db":"vault:secret/data/db#pw"}},"spec":{"containers":[{"name":"app","image":"app:1"}]}}"#;

/// The injector reads a Pod CREATE's object in the same pass as the request when `kind` comes
/// first, and keeps it raw for a second pass otherwise: both must give the same answer, byte for
/// byte.
#[test]
fn a_pod_gets_the_same_patch_whatever_the_order_of_the_request_fields() {
    let orders: [&[&str]; 4] = [
        &["uid", "kind", "namespace", "operation", "object"],
        &["uid", "kind", "namespace", "object", "operation"],
        &["object", "uid", "kind", "namespace", "operation"],
        &["operation", "object", "namespace", "kind", "uid"],
    ];
    let answers: Vec<Vec<u8>> = orders
        .iter()
        .map(|order| {
            let a = review(
                Endpoint::Mutate,
                pod_create(order, POD).as_bytes(),
                &cfg(),
                &Metrics::new(),
            );
            assert_eq!(a.http_status, 200, "{}", String::from_utf8_lossy(&a.body));
            a.body
        })
        .collect();
    let first: ReviewOut = serde_json::from_slice(&answers[0]).expect("review JSON");
    assert!(first.response.allowed, "{first:?}");
    assert!(first.response.patch.is_some(), "{first:?}");
    for (order, a) in orders.iter().zip(&answers) {
        assert_eq!(a, &answers[0], "request fields in the order {order:?}");
    }
}

/// A Pod the view refuses (here `apiVersion: v2`) makes the one-pass read fail; the review is read
/// again with the object raw, so the user sees what was wrong with the Pod and where, not
/// "malformed AdmissionReview".
#[test]
fn a_pod_that_does_not_decode_is_named_with_its_position() {
    let bad_pod = POD.replacen('{', r#"{"apiVersion":"v2","#, 1);
    let body = pod_create(
        &["uid", "kind", "namespace", "operation", "object"],
        &bad_pod,
    );
    let a = review(Endpoint::Mutate, body.as_bytes(), &cfg(), &Metrics::new());
    assert_eq!(a.http_status, 400);
    let out: ReviewOut = serde_json::from_slice(&a.body).expect("review JSON");
    assert_eq!(out.response.uid, "p");
    let status = out.response.status.expect("a status");
    assert!(
        status.message.starts_with(
            "hush-injector: cannot decode the Pod: not an AdmissionReview (line 1, column "
        ),
        "{}",
        status.message
    );
}
