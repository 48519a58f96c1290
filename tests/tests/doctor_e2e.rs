//! End to end, `hush doctor` on the real kube-apiserver and the real node, run as a ServiceAccount
//! bound to nothing but the README's ClusterRole (`deploy/manifests/hush-doctor-clusterrole.yaml`),
//! so the test also proves that get/list is enough.
//!
//! The Helm-installed Hush in `hush-system` (scripts/install-hush) is shared and never modified;
//! the test makes its own objects, all uniquely named:
//! - a namespace the chart's webhook does not select (no `hush.dev/enabled=true`) with an annotated
//!   Deployment: its pod is created without a sidecar, as while the webhook is down. Doctor must
//!   name the pod, its Deployment and the fix, and the missing sealed ConfigMap and identity;
//! - its own MutatingWebhookConfiguration and a Service copy whose endpoints are the real injector
//!   pods, with a caBundle from an unrelated CA: the TLS dial must report that it does not verify.
//!   The configuration selects no namespace, so it never affects another test;
//! - a namespace the real webhook selects, with a pod it injected: doctor must exit 0 there;
//! - a pod whose (hand-written) sidecar has another image than the injector's, and a sealed
//!   ConfigMap whose recipients differ from the rule of a `--repo` `.hush.yaml`.
//!
//! Pods carry a scheduling gate: what doctor reads is the stored spec, and nothing needs to run.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hush_tests::cluster;
use hush_tests::cmd::{kubectl, run, text};
use hush_tests::env::{TestEnv, unique_name};
use hush_tests::harness::{eventually, workspace_bin};
use k8s_openapi::ByteString;

/// The chart's release and namespace (scripts/install-hush).
const RELEASE_NS: &str = "hush-system";
const RELEASE: &str = "hush";
const GATE: &str = "schedulingGates: [{name: hush.dev/admission-only}]";

fn apply(env: &TestEnv, yaml: &str) {
    let out = kubectl(env, &["apply", "-f", "-"], Some(yaml));
    assert!(
        out.status.success(),
        "kubectl apply: {}\n{yaml}",
        text(&out)
    );
}

fn kubectl_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = kubectl(env, args, None);
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes what the test created, also when it fails.
struct Cleanup {
    env: TestEnv,
    objects: Vec<Vec<String>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in self.objects.iter().rev() {
            let mut a: Vec<&str> = vec!["delete", "--ignore-not-found", "--wait=false"];
            a.extend(args.iter().map(String::as_str));
            let _ = kubectl(&self.env, &a, None);
        }
    }
}

/// A kubeconfig for ServiceAccount `ns/sa` with a fresh token.
async fn kubeconfig_for(env: &TestEnv, client: &kube::Client, ns: &str, sa: &str) -> PathBuf {
    let token = cluster::token(
        client,
        ns,
        sa,
        "https://kubernetes.default.svc.cluster.local",
        3600,
    )
    .await;
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique_name("doctor")));
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n    \
         certificate-authority: {}\nusers:\n- name: doctor\n  user:\n    token: {token}\n\
         contexts:\n- name: t\n  context: {{cluster: t, user: doctor, namespace: default}}\n\
         current-context: t\n",
        env.kube_server,
        env.kube_ca.display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

fn doctor(kubeconfig: &Path, args: &[&str]) -> Output {
    run(
        Command::new(workspace_bin("hush"))
            .arg("doctor")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args),
        None,
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("doctor -o json printed no JSON ({e}): {}", text(o)))
}

/// The findings of a JSON report for one check.
fn findings<'a>(doc: &'a serde_json::Value, check: &str) -> Vec<&'a serde_json::Value> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .collect()
}

/// The recipient printed by `hush keygen` (`# public key: age1...`).
fn public_key(out: &Output) -> String {
    assert!(out.status.success(), "hush keygen: {}", text(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("hush keygen prints the public key")
        .to_string()
}

#[tokio::test]
async fn doctor_finds_missed_injection_and_a_broken_ca_bundle_and_passes_a_clean_namespace() {
    let env = TestEnv::load();
    let client = cluster::client(&env).await;
    let mut cleanup = Cleanup {
        env: env.clone(),
        objects: Vec::new(),
    };
    let installed = kubectl(
        &env,
        &["get", "mutatingwebhookconfiguration", RELEASE],
        None,
    );
    assert!(
        installed.status.success(),
        "Hush is not installed on the test node: run scripts/test-env up ({})",
        text(&installed)
    );

    // Doctor runs as a ServiceAccount bound to the README's ClusterRole only.
    let missed_ns = cluster::namespace(&client, "doctor-missed", false).await;
    cleanup
        .objects
        .push(vec!["namespace".into(), missed_ns.clone()]);
    cluster::service_account(&client, &missed_ns, "doctor").await;
    let role = unique_name("hush-doctor");
    let role_yaml = std::fs::read_to_string(
        env.root
            .join("deploy/manifests/hush-doctor-clusterrole.yaml"),
    )
    .unwrap()
    .replace("  name: hush-doctor\n", &format!("  name: {role}\n"));
    assert!(
        role_yaml.contains(&role),
        "the ClusterRole file names hush-doctor"
    );
    cleanup
        .objects
        .push(vec!["clusterrole".into(), role.clone()]);
    cleanup
        .objects
        .push(vec!["clusterrolebinding".into(), role.clone()]);
    apply(&env, &role_yaml);
    apply(
        &env,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: \
             {role}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: \
             {role}}}\nsubjects: [{{kind: ServiceAccount, name: doctor, namespace: {missed_ns}}}]\n"
        ),
    );
    let kubeconfig = kubeconfig_for(&env, &client, &missed_ns, "doctor").await;

    // 1. Missed injection: an annotated Deployment in a namespace the webhook does not select.
    apply(
        &env,
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: shop, namespace: {missed_ns}}}\n\
             spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: shop}}}}\n  template:\n    \
             metadata:\n      labels: {{app: shop}}\n      annotations:\n        hush.dev/inject: \
             \"true\"\n        hush.dev/secret-stripe: \"sealed:payment-keys/stripe\"\n    spec:\n      \
             {GATE}\n      containers: [{{name: app, image: localhost/hush-testapp:1}}]\n"
        ),
    );
    let pod = eventually("the Deployment's pod", 60, || {
        let names = kubectl_ok(
            &env,
            &[
                "get", "pods", "-n", &missed_ns, "-l", "app=shop", "-o", "name",
            ],
        );
        names
            .lines()
            .next()
            .map(|l| l.trim_start_matches("pod/").to_string())
    })
    .await;

    let out = doctor(
        &kubeconfig,
        &["--webhook", RELEASE, "-n", &missed_ns, "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["namespace"], missed_ns.as_str());
    let missed = findings(&doc, "missed-injection");
    assert_eq!(missed.len(), 1, "{doc:#}");
    assert_eq!(missed[0]["object"], format!("pod {missed_ns}/{pod}"));
    assert_eq!(missed[0]["owner"], "deployment/shop");
    assert_eq!(missed[0]["severity"], "error");
    assert_eq!(
        missed[0]["fix"],
        format!(
            "kubectl label namespace {missed_ns} hush.dev/enabled=true; then kubectl -n {missed_ns} \
             rollout restart deployment/shop"
        ),
        "{doc:#}"
    );
    let sealed: Vec<&str> = findings(&doc, "sealed")
        .iter()
        .map(|f| f["object"].as_str().unwrap())
        .collect();
    assert_eq!(
        sealed,
        vec![
            format!("ConfigMap {missed_ns}/payment-keys"),
            format!("namespace {missed_ns}")
        ],
        "{doc:#}"
    );
    // The real install is healthy, and the dial reached it.
    assert_eq!(
        findings(&doc, "webhook"),
        Vec::<&serde_json::Value>::new(),
        "{doc:#}"
    );
    let notes = doc["notes"].to_string();
    assert!(
        notes.contains("the caBundle verifies the serving certificate at 10.244."),
        "{notes}"
    );
    assert!(
        !notes.contains("forbidden"),
        "the ClusterRole grants every read: {notes}"
    );

    let out = doctor(&kubeconfig, &["--webhook", RELEASE, "-n", &missed_ns]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("SEVERITY  CHECK"), "{table}");
    assert!(
        table.contains(&format!(
            "missed-injection  pod {missed_ns}/{pod} (deployment/shop)"
        )),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "fix: kubectl label namespace {missed_ns} hush.dev/enabled=true"
        )),
        "{table}"
    );
    assert!(table.contains("3 finding(s)"), "{table}");

    // 2. A broken caBundle: a copy of the webhook whose Service has the real injector pods as its
    //    endpoints, and a caBundle from another CA. It selects no namespace.
    let broken_ns = cluster::namespace(&client, "doctor-ca", false).await;
    cleanup
        .objects
        .push(vec!["namespace".into(), broken_ns.clone()]);
    // A pod injected long ago: its sidecar has another image than the injector's. Admission would
    // refuse a hand-written sidecar in a namespace the webhook selects, so the namespace is
    // labelled for the real webhook only after the pod exists (doctor compares only pods that
    // webhook selects).
    apply(
        &env,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: old\n  namespace: {broken_ns}\n  \
             annotations: {{hush.dev/inject: \"true\", hush.dev/status: injected}}\nspec:\n  {GATE}\n  \
             initContainers: [{{name: hush-sidecar, image: localhost/hush-sidecar:old, \
             restartPolicy: Always, env: [{{name: HUSH_CONFIG, value: '{{\"version\":1}}'}}]}}]\n  \
             containers: [{{name: app, image: localhost/hush-testapp:1}}]\n"
        ),
    );
    kubectl_ok(
        &env,
        &["label", "namespace", &broken_ns, "hush.dev/enabled=true"],
    );
    let slices: serde_json::Value = serde_json::from_str(&kubectl_ok(
        &env,
        &[
            "get",
            "endpointslices",
            "-n",
            RELEASE_NS,
            "-l",
            &format!("kubernetes.io/service-name={RELEASE}"),
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let mut addresses = Vec::new();
    let mut port = None;
    for s in slices["items"].as_array().unwrap() {
        for p in s["ports"].as_array().into_iter().flatten() {
            if p["name"] == "https" {
                port = p["port"].as_i64();
            }
        }
        for e in s["endpoints"].as_array().into_iter().flatten() {
            if e["conditions"]["ready"] != false {
                addresses.extend(e["addresses"].as_array().unwrap().iter().cloned());
            }
        }
    }
    let port = port.expect("the real Service's EndpointSlice has the https port");
    assert!(
        !addresses.is_empty(),
        "the real injector has ready endpoints: {slices:#}"
    );
    let webhook = unique_name("hush-doctor-broken");
    cleanup
        .objects
        .push(vec!["mutatingwebhookconfiguration".into(), webhook.clone()]);
    let other_ca = rcgen::generate_simple_self_signed(vec!["other-ca.test".to_string()]).unwrap();
    let bundle = serde_json::to_string(&ByteString(other_ca.cert.pem().into_bytes())).unwrap();
    apply(
        &env,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: injector, namespace: {broken_ns}}}\n\
             spec:\n  ports: [{{name: https, port: 443, targetPort: {port}}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: injector-1\n  \
             namespace: {broken_ns}\n  labels: {{kubernetes.io/service-name: injector, \
             endpointslice.kubernetes.io/managed-by: doctor-e2e}}\naddressType: IPv4\n\
             ports: [{{name: https, port: {port}, protocol: TCP}}]\n\
             endpoints: [{{addresses: {}, conditions: {{ready: true}}}}]\n---\n\
             apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n\
             metadata: {{name: {webhook}}}\nwebhooks:\n- name: pods.hush.dev\n  \
             admissionReviewVersions: [v1]\n  clientConfig:\n    service: {{name: injector, \
             namespace: {broken_ns}, path: /mutate, port: 443}}\n    caBundle: {bundle}\n  \
             rules: [{{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: \
             [pods]}}]\n  namespaceSelector: {{matchLabels: {{{webhook}: \"true\"}}}}\n  \
             matchConditions: [{{name: has-hush-annotation, expression: \"has(object.metadata.annotations) \
             && object.metadata.annotations.exists(k, k.startsWith('hush.dev/'))\"}}]\n  \
             sideEffects: None\n  failurePolicy: Fail\n  timeoutSeconds: 5\n",
            serde_json::Value::Array(addresses)
        ),
    );

    // 3. A clean namespace: the real webhook selects it and injected its pod.
    let clean_ns = cluster::namespace(&client, "doctor-clean", false).await;
    cleanup
        .objects
        .push(vec!["namespace".into(), clean_ns.clone()]);
    kubectl_ok(
        &env,
        &["label", "namespace", &clean_ns, "hush.dev/enabled=true"],
    );
    apply(
        &env,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: {clean_ns}\n  \
             annotations: {{hush.dev/inject: \"true\", hush.dev/role: doctor, \
             hush.dev/secret-db: \"vault:secret/doctor/db\"}}\nspec:\n  {GATE}\n  \
             containers: [{{name: app, image: localhost/hush-testapp:1}}]\n"
        ),
    );
    let injected = kubectl_ok(
        &env,
        &[
            "get",
            "pod",
            "app",
            "-n",
            &clean_ns,
            "-o",
            "jsonpath={.spec.initContainers[0].name}",
        ],
    );
    assert_eq!(
        injected, "hush-sidecar",
        "the real webhook injected the clean pod"
    );

    let out = doctor(
        &kubeconfig,
        &["--webhook", &webhook, "-n", &clean_ns, "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = json(&out);
    let webhook_findings = findings(&doc, "webhook");
    assert_eq!(webhook_findings.len(), 1, "{doc:#}");
    assert_eq!(webhook_findings[0]["severity"], "error");
    assert_eq!(
        webhook_findings[0]["object"],
        format!("MutatingWebhookConfiguration {webhook} (webhook pods.hush.dev)")
    );
    let problem = webhook_findings[0]["problem"].as_str().unwrap();
    assert!(
        problem.starts_with("the caBundle does not verify the serving certificate at 10.244."),
        "{problem}"
    );
    let out = doctor(&kubeconfig, &["--webhook", &webhook, "-n", &clean_ns]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("the caBundle does not verify the serving certificate"),
        "{}",
        text(&out)
    );

    let out = doctor(&kubeconfig, &["--webhook", RELEASE, "-n", &clean_ns]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with(&format!(
            "No findings: webhook {RELEASE}, 1 pod(s) in namespace {clean_ns}."
        )),
        "{table}"
    );
    let out = doctor(
        &kubeconfig,
        &["--webhook", RELEASE, "-n", &clean_ns, "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["findings"], serde_json::json!([]));

    // 4. --repo: a sealed ConfigMap in the cluster sealed for one key, while the repository's
    //    .hush.yaml now names another for its file (a rotated team key the file already has).
    let old_key = public_key(&run(
        Command::new(workspace_bin("hush")).arg("keygen"),
        None,
    ));
    let new_key = public_key(&run(
        Command::new(workspace_bin("hush")).arg("keygen"),
        None,
    ));
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {broken_ns}}}\n\
         stringData: {{password: not-a-real-secret}}\n"
    );
    let seal = |recipient: &str| {
        let out = run(
            Command::new(workspace_bin("hush")).args(["seal", "-r", recipient]),
            Some(&secret),
        );
        assert!(out.status.success(), "hush seal: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    apply(&env, &seal(&old_key));
    let repo = std::env::temp_dir().join(unique_name("doctor-repo"));
    std::fs::create_dir_all(repo.join("clusters")).unwrap();
    std::fs::write(
        repo.join(".hush.yaml"),
        format!("creation_rules:\n  - path_glob: \"clusters/**\"\n    age: {new_key}\n"),
    )
    .unwrap();
    let file = repo.join("clusters/db.sealed.yaml");
    std::fs::write(&file, seal(&new_key)).unwrap();
    let out = doctor(
        &kubeconfig,
        &[
            "--webhook",
            RELEASE,
            "-n",
            &broken_ns,
            "--repo",
            repo.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = json(&out);
    let outdated = findings(&doc, "outdated-sidecar");
    assert_eq!(outdated.len(), 1, "{doc:#}");
    assert_eq!(outdated[0]["object"], format!("pod {broken_ns}/old"));
    let problem = outdated[0]["problem"].as_str().unwrap();
    assert!(
        problem.contains(&format!(
            "(ConfigMap {RELEASE_NS}/{RELEASE}): its sidecar image is localhost/hush-sidecar:old, \
             the injector now injects"
        )),
        "{problem}"
    );
    assert_eq!(
        outdated[0]["fix"],
        format!(
            "re-create the pod from its manifest: kubectl -n {broken_ns} replace --force -f POD.yaml"
        )
    );
    let sealed = findings(&doc, "sealed");
    assert_eq!(doc["findings"].as_array().unwrap().len(), 2, "{doc:#}");
    assert_eq!(sealed[0]["object"], format!("ConfigMap {broken_ns}/db"));
    assert_eq!(
        sealed[0]["problem"],
        format!(
            "its recipients differ from .hush.yaml's rule for {}: it lacks {new_key} and also has \
             {old_key}",
            file.display()
        )
    );
    assert_eq!(
        sealed[0]["fix"],
        format!(
            "{f} is up to date: kubectl apply -f {f}",
            f = file.display()
        )
    );
    let _ = std::fs::remove_dir_all(&repo);

    let _ = std::fs::remove_file(&kubeconfig);
    drop(cleanup);
}
