//! The admission benchmark's input: a realistic AdmissionReview (a ReplicaSet's pod with two
//! containers, five secrets from Vault and AWS, a template, a file mode and an http notification,
//! plus the env, probes, resources and service-account volume a real Deployment's pod carries), and
//! the injector config file that admits it. The same bytes go to hush-injector and to the floor
//! webhook.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

/// The namespace of the benchmark pod (the allowlist names its role there).
pub const NAMESPACE: &str = "bench";

fn container(name: &str, image: &str, port: u16) -> Value {
    json!({
        "name": name, "image": image, "ports": [{"containerPort": port, "name": "http"}],
        "env": [{"name": "LOG_LEVEL", "value": "info"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port}},
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "kube-api-access-abcde",
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
    })
}

/// The realistic AdmissionReview (CREATE of a Pod), as JSON bytes.
pub fn realistic_review() -> Vec<u8> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "web-7d9f8c6b5-", "namespace": NAMESPACE,
            "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5"},
            "annotations": {
                "hush.dev/inject": "true", "hush.dev/role": "app", "hush.dev/refresh": "5m",
                "hush.dev/secret-db-password": "vault:secret/data/bench/db#password",
                "hush.dev/secret-api.json": "vault:secret/data/bench/api",
                "hush.dev/format-api.json": "json",
                "hush.dev/secret-dsn": "vault:database/creds/app",
                "hush.dev/template-dsn": "postgres://{{ data.username }}:{{ data.password }}@db:5432/app\n",
                "hush.dev/secret-stripe-key": "aws:prod/stripe#api_key",
                "hush.dev/secret-tls.pem": "vault:pki/data/web#pem", "hush.dev/mode-tls.pem": "0400",
                "hush.dev/on-change": "http:http://127.0.0.1:8080/-/reload",
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5",
                                 "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "controller": true}],
        },
        "spec": {
            "serviceAccountName": "web",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container("web", "registry.example/web:1.4.2", 8080),
                           container("worker", "registry.example/worker:1.4.2", 9090)],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}],
        },
    });
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": pod, "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    });
    review.to_string().into_bytes()
}

/// The injector config file for the benchmark: listeners on loopback, the benchmark's certificate,
/// a Vault and an AWS store (never contacted at admission), and the pod's role allowed.
pub fn injector_yaml(
    listen: SocketAddr,
    health: SocketAddr,
    dir: &Path,
    tls_reload_seconds: u64,
) -> String {
    format!(
        "server:\n  listen: {listen}\n  healthListen: {health}\n  tlsCertFile: {crt}\n  tlsKeyFile: {key}\n  \
         tlsReloadIntervalSeconds: {tls_reload_seconds}\n  shutdownGraceSeconds: 5\n\
         sidecar:\n  image: registry.example/hush-sidecar:0.1.0\n\
         operator:\n  vault:\n    addr: https://vault.example:8200\n    audience: vault\n  aws:\n    region: eu-west-1\n\
         allowedRoles:\n  {NAMESPACE}: [app]\n",
        crt = dir.join("tls.crt").display(),
        key = dir.join("tls.key").display(),
    )
}

/// Checks that an answer is an allowed AdmissionReview with a JSON patch; returns the base64
/// patch.
pub fn patch_of(answer: &[u8]) -> anyhow::Result<String> {
    let v: Value = serde_json::from_slice(answer)?;
    let r = &v["response"];
    anyhow::ensure!(
        r["allowed"] == json!(true) && r["patchType"] == json!("JSONPatch"),
        "the webhook did not patch the benchmark pod: {}",
        String::from_utf8_lossy(answer)
            .chars()
            .take(500)
            .collect::<String>()
    );
    r["patch"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("the answer has no patch"))
}
