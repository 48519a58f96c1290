//! The deploy/ tree against the real tools: `helm lint`, `helm template` and `helm install` of the
//! chart (the real helm, built from its Go module), the committed manifests checked against the
//! chart (drift), the values schema refusing bad values, and `kubectl apply --dry-run=server` of the
//! manifests and of every example on the real kube-apiserver. The webhook configurations are also
//! registered for real (scoped to a throwaway namespace) to prove their `matchConditions` send
//! exactly the objects with `hush.dev/` annotations to the injector. The chart's ConfigMap is parsed
//! by the injector's own config code, so the chart and the binary cannot disagree on a field; the
//! examples go through the injector's mutation with that config and still pass "restricted"; and
//! the example Vault role and policy are loaded into the real OpenBao and logged in with.
//!
//! Namespaces never finish deleting here (no controller-manager), so each test works in its own,
//! uniquely named one. The manifests and examples name fixed namespaces (`hush-system`, `shop`), so
//! a test renders or rewrites them for its unique namespace, creates that namespace for real, and
//! then dry-runs the rest; the drift test ties that render back to the committed file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hush_tests::cmd::{kubectl, run};
use hush_tests::env::{TestEnv, unique_name};
use serde_json::{Value, json};

const CHART: &str = "deploy/helm/hush";
const MANIFESTS: &str = "deploy/manifests/hush.yaml";
const MANIFEST_NAMESPACE: &str = "hush-system";
const EXAMPLE_NAMESPACE: &str = "shop";
const FIX_DRIFT: &str = "run `scripts/render-manifests` and commit deploy/manifests/hush.yaml";

// ---- running the tools ------------------------------------------------------------------------

/// The `default` ServiceAccount, applied: the controller-manager of the real node may have made it
/// already.
const DEFAULT_SA: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n";

fn helm(env: &TestEnv) -> PathBuf {
    match &env.helm {
        Some(p) if p.is_file() => p.clone(),
        Some(p) => panic!(
            "HUSH_HELM={} does not exist: run `scripts/test-env up` (it builds helm)",
            p.display()
        ),
        None => panic!(
            "HUSH_HELM is not set: run `scripts/test-env up` (it builds helm into .cache/bin)"
        ),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn must(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `scripts/render-manifests --stdout -- ARGS`: the same render as the committed file, with extra
/// helm flags (they win over the script's own).
fn render(env: &TestEnv, extra: &[&str]) -> Output {
    run(
        Command::new(env.root.join("scripts/render-manifests"))
            .current_dir(&env.root)
            .env("HUSH_HELM", helm(env))
            .arg("--stdout")
            .arg("--")
            .args(extra),
        None,
    )
}

/// A values file for one test, written under the target dir (not /tmp, to keep runs apart).
fn values_file(env: &TestEnv, name: &str, yaml: &str) -> PathBuf {
    let dir = env.root.join("target/deploy-tests");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let path = dir.join(format!("{name}.values.yaml"));
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Parses YAML manifests into JSON objects with kubectl's own decoder (client-side, nothing is
/// sent to the server as an object).
fn objects(env: &TestEnv, yaml: &str) -> Vec<Value> {
    let out = must(
        kubectl(
            env,
            &["create", "--dry-run=client", "-o", "json", "-f", "-"],
            Some(yaml),
        ),
        "kubectl create --dry-run=client -o json",
    );
    // One JSON document per object, one after the other (a List when kubectl groups them).
    let mut all = Vec::new();
    for v in serde_json::Deserializer::from_str(&out).into_iter::<Value>() {
        let v = v.expect("kubectl prints JSON");
        match v.get("items") {
            Some(Value::Array(items)) if v["kind"] == "List" => all.extend(items.iter().cloned()),
            _ => all.push(v),
        }
    }
    all
}

fn create_namespace(env: &TestEnv, name: &str) {
    must(
        kubectl(env, &["create", "namespace", name], None),
        "kubectl create namespace",
    );
}

fn server_dry_run(env: &TestEnv, namespace: Option<&str>, yaml: &str, what: &str) -> Output {
    let mut args = vec!["apply", "--dry-run=server", "-f", "-"];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    let out = kubectl(env, &args, Some(yaml));
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl apply --dry-run=server of {what} failed:\n{stderr}\n{}",
        text(&out.stdout)
    );
    assert!(
        !stderr.contains("violate PodSecurity"),
        "{what} would violate Pod Security \"restricted\":\n{stderr}"
    );
    out
}

/// Rewrites the examples' namespace `shop` to a test's own.
fn in_namespace(yaml: &str, ns: &str) -> String {
    yaml.lines()
        .map(|l| {
            let trimmed = l.trim_start();
            let indent = &l[..l.len() - trimmed.len()];
            if trimmed == format!("namespace: {EXAMPLE_NAMESPACE}") {
                format!("{indent}namespace: {ns}")
            } else if l == format!("  name: {EXAMPLE_NAMESPACE}") {
                format!("  name: {ns}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn example_files(root: &Path) -> Vec<PathBuf> {
    let dir = root.join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the examples under examples/, found {files:?}"
    );
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Removes cluster-scoped webhook configurations on drop, so a failing test leaves none behind.
struct WebhookCleanup<'a> {
    env: &'a TestEnv,
    name: String,
}

impl Drop for WebhookCleanup<'_> {
    fn drop(&mut self) {
        let _ = kubectl(
            self.env,
            &[
                "delete",
                "--ignore-not-found",
                "mutatingwebhookconfiguration,validatingwebhookconfiguration",
                &self.name,
            ],
            None,
        );
    }
}

// ---- the chart --------------------------------------------------------------------------------

#[test]
fn helm_lint_passes_in_every_tls_mode() {
    let env = TestEnv::load();
    let modes: [&[&str]; 3] = [
        &[],
        &[
            "--set",
            "tls.mode=certManager",
            "--set",
            "tls.certManager.issuerRef.name=hush-ca",
        ],
        &["--set", "tls.mode=selfManaged"],
    ];
    for extra in modes {
        let out = run(
            Command::new(helm(&env))
                .current_dir(&env.root)
                .args(["lint", "--strict", CHART])
                .args(extra),
            None,
        );
        let stdout = must(out, &format!("helm lint --strict {CHART} {extra:?}"));
        assert!(
            stdout.contains("0 chart(s) failed"),
            "helm lint {extra:?}:\n{stdout}"
        );
    }
}

#[test]
fn committed_manifests_match_the_chart() {
    let env = TestEnv::load();
    let rendered = must(render(&env, &[]), "scripts/render-manifests --stdout");
    let committed = read(&env.root.join(MANIFESTS));
    if rendered != committed {
        let diff = rendered
            .lines()
            .zip(committed.lines())
            .enumerate()
            .find(|(_, (r, c))| r != c)
            .map(|(i, (r, c))| {
                format!(
                    "first difference at line {}:\n  chart:     {r}\n  committed: {c}",
                    i + 1
                )
            })
            .unwrap_or_else(|| {
                format!(
                    "one is a prefix of the other ({} vs {} lines)",
                    rendered.lines().count(),
                    committed.lines().count()
                )
            });
        panic!("{MANIFESTS} drifted from {CHART}: {FIX_DRIFT}\n{diff}");
    }
    // The check mode of the script agrees (CI runs it).
    let out = run(
        Command::new(env.root.join("scripts/render-manifests"))
            .current_dir(&env.root)
            .env("HUSH_HELM", helm(&env))
            .arg("--check"),
        None,
    );
    must(out, "scripts/render-manifests --check");
}

#[test]
fn committed_files_hold_no_private_key() {
    let env = TestEnv::load();
    let mut files = vec![
        env.root.join(MANIFESTS),
        env.root.join(CHART).join("values.yaml"),
    ];
    files.extend(example_files(&env.root));
    let templates = env.root.join(CHART).join("templates");
    for e in std::fs::read_dir(&templates).expect("chart templates") {
        files.push(e.expect("entry").path());
    }
    for f in files {
        let t = read(&f);
        for marker in [
            "PRIVATE KEY",
            "AGE-SECRET-KEY-",
            "genCA",
            "genSelfSignedCert",
            "genPrivateKey",
        ] {
            assert!(!t.contains(marker), "{} contains {marker}", f.display());
        }
    }
}

#[test]
fn schema_rejects_bad_values_at_template_time() {
    let env = TestEnv::load();
    let cases = [
        ("replicas=two", "/replicas"),
        ("webhook.failurePolicy=Sometimes", "/webhook/failurePolicy"),
        ("webhook.timeoutSeconds=31", "/webhook/timeoutSeconds"),
        ("image.digest=sha256:1234", "/image/digest"),
        ("sidecar.runAsUser=0", "/sidecar/runAsUser"),
        ("vault.addr=http://vault:8200", "/vault/addr"),
        (
            "vault.tokenExpirationSeconds=60",
            "/vault/tokenExpirationSeconds",
        ),
        ("tls.mode=automatic", "/tls/mode"),
        (
            "networkPolicy.apiserverCIDRs={10.0.0.0}",
            "/networkPolicy/apiserverCIDRs/0",
        ),
        ("webhook.failurepolicy=Fail", "failurepolicy"),
    ];
    for (set, field) in cases {
        let out = render(&env, &["--set", set]);
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "--set {set} rendered, but the schema should refuse it"
        );
        assert!(
            stderr.contains("don't meet the specifications of the schema")
                && stderr.contains(field),
            "--set {set}: expected a schema error naming {field}, got:\n{stderr}"
        );
    }
    // Values the schema cannot judge alone are refused by the chart, with the fix in the message.
    let out = render(&env, &["--set", "replicas=1"]);
    assert!(
        !out.status.success(),
        "replicas=1 with a PDB of minAvailable 1 must not render"
    );
    assert!(
        text(&out.stderr).contains("podDisruptionBudget.minAvailable"),
        "{}",
        text(&out.stderr)
    );
    let out = render(&env, &["--set", "tls.mode=certManager"]);
    assert!(
        !out.status.success(),
        "certManager without an issuer must not render"
    );
    assert!(
        text(&out.stderr).contains("issuerRef"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn manifests_pass_server_dry_run_and_restricted_pod_security() {
    let env = TestEnv::load();
    let ns = unique_name("deploy-manifests");
    let rendered = must(
        render(&env, &["--namespace", &ns]),
        "render for a unique namespace",
    );
    // This render is the committed file with only the namespace changed, so dry-running it
    // validates the committed manifests (committed_manifests_match_the_chart pins the rest).
    let committed = read(&env.root.join(MANIFESTS));
    assert!(
        rendered == committed.replace(MANIFEST_NAMESPACE, &ns),
        "{MANIFESTS} differs from the chart by more than the namespace: {FIX_DRIFT}"
    );

    // The Namespace for real (namespaced objects can't be dry-run in a namespace that doesn't
    // exist), with the chart's Pod Security labels; then the ServiceAccount the pods run as.
    let parsed = objects(&env, &rendered);
    let kinds: Vec<&str> = parsed.iter().filter_map(|o| o["kind"].as_str()).collect();
    for want in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(
            kinds.contains(&want),
            "the manifests have no {want}: {kinds:?}"
        );
    }
    assert!(
        !kinds.iter().any(|k| k.contains("Role")),
        "the default mode needs no RBAC: {kinds:?}"
    );
    let namespace = parsed
        .iter()
        .find(|o| o["kind"] == "Namespace")
        .expect("Namespace");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    must(
        kubectl(&env, &["create", "-f", "-"], Some(&namespace.to_string())),
        "create the manifests' Namespace",
    );
    let sa = parsed
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .expect("ServiceAccount");
    assert_eq!(sa["automountServiceAccountToken"], false);
    must(
        kubectl(&env, &["create", "-f", "-"], Some(&sa.to_string())),
        "create the ServiceAccount",
    );

    let out = server_dry_run(&env, None, &rendered, MANIFESTS);
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.matches("(server dry run)").count(),
        parsed.len(),
        "every object is accepted:\n{stdout}"
    );

    // The injector's own pod, as the Deployment would create it, passes "restricted" enforcement.
    let deployment = parsed
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("Deployment");
    let template = &deployment["spec"]["template"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(template["spec"]["automountServiceAccountToken"], false);
    let c = &template["spec"]["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        template["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(template["spec"]["affinity"]["podAntiAffinity"].is_object());
    assert!(template["spec"]["topologySpreadConstraints"].is_array());
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "injector", "namespace": ns, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    });
    let out = kubectl(
        &env,
        &["create", "--dry-run=server", "-f", "-"],
        Some(&pod.to_string()),
    );
    assert!(
        out.status.success(),
        "the injector pod is refused in a restricted namespace:\n{}",
        text(&out.stderr)
    );

    // Both webhook configurations keep the release namespace and kube-system out, and admission
    // stays pure.
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let cfg = parsed
            .iter()
            .find(|o| o["kind"] == kind)
            .expect("webhook configuration");
        for hook in cfg["webhooks"].as_array().expect("webhooks") {
            assert_eq!(hook["sideEffects"], "None");
            let excluded = &hook["namespaceSelector"]["matchExpressions"][0];
            assert_eq!(excluded["operator"], "NotIn");
            assert_eq!(excluded["values"], json!(["kube-system", ns]));
            assert!(
                hook["clientConfig"].get("caBundle").is_none(),
                "no caBundle by default"
            );
        }
    }
}

#[test]
fn self_managed_mode_gets_only_patch_on_its_own_webhook_configurations() {
    let env = TestEnv::load();
    let ns = unique_name("deploy-selfmanaged");
    let name = unique_name("hush-sm");
    let out = render(
        &env,
        &[
            "--namespace",
            &ns,
            "--set",
            "tls.mode=selfManaged",
            "--set",
            &format!("fullnameOverride={name}"),
        ],
    );
    let rendered = must(out, "render selfManaged");
    let parsed = objects(&env, &rendered);
    let roles: Vec<&Value> = parsed
        .iter()
        .filter(|o| o["kind"].as_str().is_some_and(|k| k.ends_with("Role")))
        .collect();
    assert_eq!(roles.len(), 1, "exactly one (Cluster)Role: {roles:?}");
    assert_eq!(roles[0]["kind"], "ClusterRole");
    assert_eq!(
        roles[0]["rules"],
        json!([{
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
            "resourceNames": [name],
            "verbs": ["patch"],
        }])
    );
    let deployment = parsed
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
    // No TLS Secret is mounted: the injector makes its own certificate.
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(!volumes.contains("secretName"), "{volumes}");

    // The injector accepts the chart's flags and config file together, as the pod runs them.
    use clap::Parser as _;
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("injector args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    let cli = hush_injector::Args::try_parse_from(
        std::iter::once("hush-injector".to_string()).chain(args.iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("the injector refuses the chart's flags {args:?}: {e}"));
    let config_map = parsed
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("ConfigMap");
    let file = config_map["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml");
    let cfg = hush_injector::RawConfig::from_yaml(file, "chart config")
        .and_then(|raw| cli.apply(raw))
        .and_then(hush_injector::RawConfig::build)
        .unwrap_or_else(|e| panic!("the injector refuses the selfManaged chart: {e}\n{file}"));
    let sm = cfg.server.self_managed_tls.expect("self-managed TLS is on");
    assert_eq!(sm.service, format!("{name}.{ns}.svc"));
    assert_eq!(sm.webhook_configuration, name);
    assert_eq!(sm.validity, std::time::Duration::from_secs(365 * 86_400));
    assert!(
        cfg.server.tls_cert_file.is_none() && cfg.server.tls_key_file.is_none(),
        "no key material on disk"
    );

    create_namespace(&env, &ns);
    server_dry_run(&env, None, &rendered, "the selfManaged render");
}

#[test]
fn cert_manager_mode_requests_a_certificate_and_ca_injection() {
    let env = TestEnv::load();
    let out = render(
        &env,
        &[
            "--set",
            "tls.mode=certManager",
            "--set",
            "tls.certManager.issuerRef.name=hush-ca",
            "--set",
            "tls.certManager.issuerRef.kind=ClusterIssuer",
        ],
    );
    let rendered = must(out, "render certManager");
    // No cert-manager CRDs on the test apiserver, so this one is checked as text.
    assert!(rendered.contains("kind: Certificate\n"), "{rendered}");
    assert!(rendered.contains("secretName: hush-tls\n"));
    assert!(rendered.contains("    - hush.hush-system.svc\n"));
    assert!(rendered.contains("    name: hush-ca\n    kind: ClusterIssuer\n"));
    assert_eq!(
        rendered
            .matches("cert-manager.io/inject-ca-from: hush-system/hush\n")
            .count(),
        2,
        "both webhook configurations get the CA injected"
    );
    assert!(!rendered.contains("caBundle"));
}

// ---- the webhooks on the real apiserver -------------------------------------------------------

#[test]
fn webhooks_send_exactly_the_objects_with_hush_annotations() {
    let env = TestEnv::load();
    let release_ns = unique_name("deploy-wh-release");
    let target_ns = unique_name("deploy-wh-target");
    let name = unique_name("hush-wh");
    create_namespace(&env, &release_ns);
    create_namespace(&env, &target_ns);
    must(
        kubectl(
            &env,
            &["apply", "-n", &target_ns, "-f", "-"],
            Some(DEFAULT_SA),
        ),
        "create SA",
    );

    // The chart's webhooks, scoped to the target namespace only (other tests share this
    // apiserver), with Fail everywhere so a call that reaches the (absent) injector shows up as an
    // error naming the webhook.
    let values = values_file(
        &env,
        &name,
        &format!(
            "fullnameOverride: {name}\nwebhook:\n  failurePolicy: Fail\n  validating: {{failurePolicy: Fail, timeoutSeconds: 5}}\n  namespaceSelectorExpressions:\n    - {{key: kubernetes.io/metadata.name, operator: In, values: [{target_ns}]}}\n"
        ),
    );
    let values = values.to_string_lossy().into_owned();
    let hooks = must(
        render(
            &env,
            &[
                "--namespace",
                &release_ns,
                "-f",
                &values,
                "--show-only",
                "templates/webhooks.yaml",
            ],
        ),
        "render the webhooks",
    );
    let _cleanup = WebhookCleanup {
        env: &env,
        name: name.clone(),
    };
    must(
        kubectl(&env, &["create", "-f", "-"], Some(&hooks)),
        "register the webhooks",
    );

    let container = json!([{"name": "c", "image": "registry.example.invalid/app:1"}]);
    let pod = |ann: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "annotations": ann}, "spec": {"containers": container}})
    };
    let deployment = |template_ann: Value, top_ann: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "annotations": top_ann},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}, "annotations": template_ann},
            "spec": {"containers": container}}}})
    };
    let job = |ann: Value| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"template": {"metadata": {"annotations": ann},
            "spec": {"restartPolicy": "Never", "containers": container}}}})
    };
    let cronjob = |ann: Value| {
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"metadata": {"annotations": ann},
            "spec": {"restartPolicy": "Never", "containers": container}}}}}})
    };
    let none = json!({});
    let inject = json!({"hush.dev/inject": "true"});
    // (object, the webhook that must be called, or None when the object must not be sent)
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("plain pod", pod(none.clone()), None),
        (
            "pod with other annotations",
            pod(json!({"example.com/x": "y"})),
            None,
        ),
        ("annotated pod", pod(inject.clone()), Some("pods.hush.dev")),
        (
            "pod with a misspelt opt-in",
            pod(json!({"hush.dev/injet": "true"})),
            Some("pods.hush.dev"),
        ),
        (
            "pod switched off",
            pod(json!({"hush.dev/inject": "false"})),
            Some("pods.hush.dev"),
        ),
        (
            "plain deployment",
            deployment(none.clone(), none.clone()),
            None,
        ),
        (
            "deployment annotated on the object only",
            deployment(none.clone(), inject.clone()),
            None,
        ),
        (
            "deployment with annotated template",
            deployment(inject.clone(), none.clone()),
            Some("workloads.hush.dev"),
        ),
        ("plain job", job(none.clone()), None),
        (
            "job with annotated template",
            job(inject.clone()),
            Some("workloads.hush.dev"),
        ),
        ("plain cronjob", cronjob(none.clone()), None),
        (
            "cronjob with annotated template",
            cronjob(inject.clone()),
            Some("cronjobs.hush.dev"),
        ),
    ];
    for (what, obj, webhook) in cases {
        let out = kubectl(
            &env,
            &["create", "--dry-run=server", "-n", &target_ns, "-f", "-"],
            Some(&obj.to_string()),
        );
        let stderr = text(&out.stderr);
        match webhook {
            None => assert!(
                out.status.success(),
                "{what} must not reach the injector, got:\n{stderr}"
            ),
            Some(hook) => {
                assert!(
                    !out.status.success(),
                    "{what} must be sent to {hook}, but it was admitted"
                );
                assert!(
                    stderr.contains(&format!("failed calling webhook \"{hook}\"")),
                    "{what}: expected a call to {hook}, got:\n{stderr}"
                );
            }
        }
    }

    // The release namespace is never sent, whatever it holds (the injector must not depend on
    // itself): the rendered selector excludes it before the test's own scoping applies.
    let cfg = objects(&env, &hooks);
    for c in &cfg {
        for hook in c["webhooks"].as_array().expect("webhooks") {
            let values = &hook["namespaceSelector"]["matchExpressions"][0]["values"];
            assert_eq!(values, &json!(["kube-system", release_ns]));
        }
    }
}

// ---- the injector's view of the chart ---------------------------------------------------------

/// The `config.yaml` of the chart's ConfigMap, for the given helm flags.
fn rendered_injector_config(env: &TestEnv, extra: &[&str]) -> String {
    let mut args = vec!["--show-only", "templates/configmap.yaml"];
    args.extend_from_slice(extra);
    let cm = must(render(env, &args), "render the ConfigMap");
    let parsed = objects(env, &cm);
    parsed[0]["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml in the ConfigMap")
        .to_string()
}

#[test]
fn chart_config_is_accepted_by_the_injector() {
    use hush_injector::RawConfig;
    let env = TestEnv::load();

    let defaults = rendered_injector_config(&env, &[]);
    let cfg = RawConfig::from_yaml(&defaults, "chart defaults")
        .and_then(RawConfig::build)
        .unwrap_or_else(|e| {
            panic!("the injector refuses the chart's default config: {e}\n{defaults}")
        });
    assert_eq!(
        cfg.sidecar.image,
        "registry.example.invalid/hush/hush-sidecar:0.1.0"
    );
    assert_eq!(cfg.server.listen.port(), 8443);
    assert_eq!(cfg.server.health_listen.port(), 8080);
    assert!(cfg.server.tls_cert_file.is_some() && cfg.server.tls_key_file.is_some());
    assert!(cfg.operator.vault.is_none() && cfg.operator.aws.is_none());
    assert_eq!(cfg.allowed_roles_for("shop"), None);
    assert!(!cfg.pod_security.allow_fs_group && !cfg.pod_security.allow_share_process_namespace);

    let ca = env.kube_ca_pem();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let values = values_file(
        &env,
        &unique_name("full-config"),
        &serde_json::to_string(&json!({
            "sidecar": {"image": {"digest": digest}, "resources": {"requests": {"cpu": 0.5}}},
            "vault": {"addr": "https://vault.vault.svc:8200", "caPem": ca, "audience": "openbao"},
            "aws": {"region": "eu-west-1"},
            "allowedRoles": {"shop": ["shop-orders"], "*": ["default"]},
            "podSecurity": {"allowFsGroup": true},
        }))
        .expect("json"),
    );
    let full = rendered_injector_config(&env, &["-f", &values.to_string_lossy()]);
    let cfg = RawConfig::from_yaml(&full, "chart with every section")
        .and_then(RawConfig::build)
        .unwrap_or_else(|e| panic!("the injector refuses the chart's config: {e}\n{full}"));
    assert_eq!(
        cfg.sidecar.image,
        format!("registry.example.invalid/hush/hush-sidecar@{digest}")
    );
    assert_eq!(
        cfg.sidecar
            .resources
            .requests
            .get("cpu")
            .map(String::as_str),
        Some("0.5")
    );
    let vault = cfg.operator.vault.as_ref().expect("vault section");
    assert_eq!(vault.addr, "https://vault.vault.svc:8200");
    assert_eq!(vault.audience, "openbao");
    assert_eq!(vault.ca_pem.as_deref(), Some(ca.as_str()));
    assert_eq!(
        cfg.operator.aws.as_ref().map(|a| a.region.as_str()),
        Some("eu-west-1")
    );
    assert_eq!(
        cfg.allowed_roles_for("shop"),
        Some(vec!["shop-orders".to_string()])
    );
    assert_eq!(
        cfg.allowed_roles_for("other"),
        Some(vec!["default".to_string()])
    );
    assert!(cfg.pod_security.allow_fs_group);
}

// ---- the examples -----------------------------------------------------------------------------

#[test]
fn examples_pass_server_dry_run_in_a_restricted_namespace() {
    let env = TestEnv::load();
    let ns = unique_name("deploy-examples");
    let files = example_files(&env.root);

    // examples/namespace.yaml for real (renamed), so the rest can be dry-run inside it with
    // "restricted" enforced; then the ServiceAccounts, which Pod admission needs to exist.
    let ns_file = env.root.join("examples/namespace.yaml");
    let ns_yaml = in_namespace(&read(&ns_file), &ns);
    must(
        kubectl(&env, &["create", "-f", "-"], Some(&ns_yaml)),
        "create examples/namespace.yaml",
    );
    let ns_obj = kubectl(&env, &["get", "namespace", &ns, "-o", "json"], None);
    let ns_obj: Value = serde_json::from_str(&must(ns_obj, "get namespace")).expect("json");
    assert_eq!(
        ns_obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    let mut kinds = BTreeMap::new();
    for f in &files {
        let yaml = in_namespace(&read(f), &ns);
        assert!(
            !yaml.contains(&format!("namespace: {EXAMPLE_NAMESPACE}\n")),
            "{}: every object names namespace {EXAMPLE_NAMESPACE} on its own line",
            f.display()
        );
        for o in objects(&env, &yaml) {
            let kind = o["kind"].as_str().unwrap_or_default().to_string();
            if kind == "ServiceAccount" {
                must(
                    kubectl(&env, &["create", "-f", "-"], Some(&o.to_string())),
                    "create SA",
                );
            }
            *kinds.entry(kind).or_insert(0) += 1;
        }
    }
    for want in ["Deployment", "Job", "Pod", "ConfigMap"] {
        assert!(
            kinds.contains_key(want),
            "no example of a {want}: {kinds:?}"
        );
    }

    for f in &files {
        let yaml = in_namespace(&read(f), &ns);
        server_dry_run(&env, Some(&ns), &yaml, &f.display().to_string());
    }
}

#[test]
fn sealed_configmap_example_is_a_genuine_sealed_file() {
    let env = TestEnv::load();
    let path = env.root.join("examples/sealed-configmap.yaml");
    let text = read(&path);
    let sealed = hush_sealer::SealedConfigMap::parse(&text, "examples/sealed-configmap.yaml")
        .unwrap_or_else(|e| panic!("{} is not a sealed ConfigMap: {e}", path.display()));
    assert!(
        sealed
            .object()
            .ends_with(&format!(" {EXAMPLE_NAMESPACE}/orders-api")),
        "bound to {EXAMPLE_NAMESPACE}/orders-api: {}",
        sealed.object()
    );
    // The Deployment reading it refers to keys it really has.
    let app = read(&env.root.join("examples/sealed-app.yaml"));
    for key in ["api-key", "webhook-token"] {
        assert!(
            app.contains(&format!("sealed:orders-api/{key}")),
            "sealed-app.yaml reads {key}"
        );
        assert!(text.contains(&format!(
            "  {key}: |\n    -----BEGIN AGE ENCRYPTED FILE-----"
        )));
    }
}

/// The pods of an example file: bare Pods as they are, workloads' pod templates as Pods.
fn example_pods(objects: &[Value]) -> Vec<(String, Value)> {
    let mut pods = Vec::new();
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let template = match kind {
            "Pod" => {
                pods.push((format!("Pod/{name}"), o.clone()));
                continue;
            }
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                &o["spec"]["template"]
            }
            "CronJob" => &o["spec"]["jobTemplate"]["spec"]["template"],
            _ => continue,
        };
        let mut metadata = template["metadata"].clone();
        metadata["name"] = json!(format!("{name}-pod"));
        metadata["namespace"] = o["metadata"]["namespace"].clone();
        pods.push((
            format!("{kind}/{name}"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}),
        ));
    }
    pods
}

#[test]
fn examples_injected_with_the_chart_config_stay_restricted() {
    use hush_injector::RawConfig;
    let env = TestEnv::load();
    let ns = unique_name("deploy-injected");

    // The injector configured exactly as the chart configures it, with Vault, AWS and the
    // namespace's role allowlist from deploy/vault/.
    let values = values_file(
        &env,
        &ns,
        &serde_json::to_string(&json!({
            "vault": {"addr": "https://vault.vault.svc:8200", "caPem": env.kube_ca_pem()},
            "aws": {"region": "eu-west-1"},
            "allowedRoles": {ns.clone(): ["shop-orders"]},
        }))
        .expect("json"),
    );
    let config = rendered_injector_config(&env, &["-f", &values.to_string_lossy()]);
    let cfg = RawConfig::from_yaml(&config, "chart config")
        .and_then(RawConfig::build)
        .unwrap_or_else(|e| panic!("the injector refuses the chart's config: {e}\n{config}"));

    let ns_yaml = in_namespace(&read(&env.root.join("examples/namespace.yaml")), &ns);
    must(
        kubectl(&env, &["create", "-f", "-"], Some(&ns_yaml)),
        "create the namespace",
    );
    must(
        kubectl(&env, &["apply", "-n", &ns, "-f", "-"], Some(DEFAULT_SA)),
        "create SA",
    );

    let mut injected = 0;
    for f in example_files(&env.root) {
        let objs = objects(&env, &in_namespace(&read(&f), &ns));
        for o in objs.iter().filter(|o| o["kind"] == "ServiceAccount") {
            must(
                kubectl(&env, &["create", "-f", "-"], Some(&o.to_string())),
                "create SA",
            );
        }
        for (what, pod_json) in example_pods(&objs) {
            let what = format!("{} {what}", f.display());
            let pod: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(pod_json.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
            let patch = hush_injector::mutate(&pod, &cfg, &ns)
                .unwrap_or_else(|d| panic!("the injector denies {what}: {}", d.message));
            assert!(
                !patch.0.is_empty(),
                "{what}: the injector left an annotated pod unchanged"
            );
            let patch = serde_json::to_string(&patch).expect("patch serialises");
            let patched = must(
                kubectl(
                    &env,
                    &[
                        "patch",
                        "--local",
                        "--type=json",
                        "-p",
                        &patch,
                        "-f",
                        "-",
                        "-o",
                        "json",
                    ],
                    Some(&pod_json.to_string()),
                ),
                &format!("apply the injector's patch to {what}"),
            );
            let out = kubectl(
                &env,
                &["create", "--dry-run=server", "-f", "-"],
                Some(&patched),
            );
            assert!(
                out.status.success(),
                "{what} with the injected sidecar is refused in a restricted namespace:\n{}",
                text(&out.stderr)
            );
            let stored: Value = serde_json::from_str(&patched).expect("json");
            let first = &stored["spec"]["initContainers"][0];
            assert_eq!(first["name"], hush_injector::SIDECAR_NAME, "{what}");
            injected += 1;
        }
    }
    assert!(
        injected >= 4,
        "expected at least four annotated pods in examples/, found {injected}"
    );
}

// ---- the Vault example ------------------------------------------------------------------------

fn bao(env: &TestEnv, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
    run(
        Command::new(&env.bao_bin)
            .env("VAULT_ADDR", &env.vault_addr)
            .env("VAULT_CACERT", &env.vault_cacert)
            .env("VAULT_TOKEN", token)
            .args(args),
        stdin,
    )
}

fn sa_token(env: &TestEnv, ns: &str, sa: &str, audience: &str) -> String {
    let out = kubectl(
        env,
        &[
            "create",
            "token",
            sa,
            "-n",
            ns,
            "--audience",
            audience,
            "--duration",
            "10m",
        ],
        None,
    );
    must(out, "kubectl create token").trim().to_string()
}

fn login(env: &TestEnv, role: &str, jwt: &str) -> Output {
    let role = format!("role={role}");
    bao(
        env,
        "",
        &[
            "write",
            "-format=json",
            "auth/kubernetes/login",
            &role,
            "jwt=-",
        ],
        Some(jwt),
    )
}

#[test]
fn vault_example_role_and_policy_bind_one_service_account_in_one_namespace() {
    let env = TestEnv::load();
    let ns = unique_name("deploy-vault");
    let other_ns = unique_name("deploy-vault-other");
    for n in [&ns, &other_ns] {
        create_namespace(&env, n);
        must(
            kubectl(&env, &["create", "serviceaccount", "orders", "-n", n], None),
            "create SA",
        );
    }
    must(
        kubectl(
            &env,
            &["create", "serviceaccount", "intruder", "-n", &ns],
            None,
        ),
        "create SA",
    );

    // deploy/vault/ as documented, under this test's names (the role binds this namespace).
    let name = ns.clone();
    let policy = read(&env.root.join("deploy/vault/shop-orders.policy.hcl"));
    must(
        bao(
            &env,
            &env.vault_token,
            &["policy", "write", &name, "-"],
            Some(&policy),
        ),
        "bao policy write",
    );
    let mut role: Value =
        serde_json::from_str(&read(&env.root.join("deploy/vault/shop-orders.role.json")))
            .expect("shop-orders.role.json is JSON");
    assert_eq!(
        role["bound_service_account_namespaces"],
        json!([EXAMPLE_NAMESPACE])
    );
    assert_eq!(role["token_policies"], json!(["shop-orders"]));
    role["bound_service_account_namespaces"] = json!([ns]);
    role["token_policies"] = json!([name]);
    let role_path = format!("auth/kubernetes/role/{name}");
    must(
        bao(
            &env,
            &env.vault_token,
            &["write", &role_path, "-"],
            Some(&role.to_string()),
        ),
        "bao write the role",
    );

    // A secret the policy covers, and one it does not.
    let mine = format!("secret/shop/orders/{name}");
    let theirs = format!("secret/shop/payments/{name}");
    for path in [&mine, &theirs] {
        must(
            bao(
                &env,
                &env.vault_token,
                &["kv", "put", path, "api-key=example-only"],
                None,
            ),
            "bao kv put",
        );
    }

    // The right service account, in the right namespace, with the chart's audience: logs in and
    // reads its own secret only.
    let jwt = sa_token(&env, &ns, "orders", "vault");
    let out = login(&env, &name, &jwt);
    let auth: Value = serde_json::from_str(&must(out, "login as orders")).expect("json");
    let token = auth["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_string();
    assert!(
        auth["auth"]["policies"]
            .as_array()
            .is_some_and(|p| p.contains(&json!(name))),
        "the login carries the example policy: {}",
        auth["auth"]["policies"]
    );
    assert_eq!(auth["auth"]["lease_duration"], 900, "token_ttl 15m");
    let out = bao(&env, &token, &["kv", "get", "-field=api-key", &mine], None);
    assert_eq!(must(out, "read its own secret").trim(), "example-only");
    let out = bao(&env, &token, &["kv", "get", &theirs], None);
    assert!(
        !out.status.success(),
        "the policy must not reach another app's secret"
    );
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}",
        text(&out.stderr)
    );

    // Everything else is refused at login: another namespace, another service account, and a
    // token for another audience.
    let refused = [
        (
            "orders in another namespace",
            sa_token(&env, &other_ns, "orders", "vault"),
        ),
        (
            "another service account",
            sa_token(&env, &ns, "intruder", "vault"),
        ),
        (
            "a token for another audience",
            sa_token(&env, &ns, "orders", "sts.amazonaws.com"),
        ),
    ];
    for (what, jwt) in refused {
        let out = login(&env, &name, &jwt);
        assert!(!out.status.success(), "{what} must not log in as the role");
    }
}

// ---- helm install -----------------------------------------------------------------------------

#[test]
fn helm_install_and_uninstall_on_the_real_apiserver() {
    let env = TestEnv::load();
    let ns = unique_name("deploy-helm");
    let release = unique_name("hush-helm");
    create_namespace(&env, &ns);
    must(
        kubectl(
            &env,
            &[
                "label",
                "namespace",
                &ns,
                "pod-security.kubernetes.io/enforce=restricted",
            ],
            None,
        ),
        "label the namespace",
    );
    // The webhooks are real here: scope them to a namespace nobody uses, so that other tests on
    // this apiserver never meet them.
    let values = values_file(
        &env,
        &release,
        &format!(
            "fullnameOverride: {release}\nwebhook:\n  namespaceSelectorExpressions:\n    - {{key: kubernetes.io/metadata.name, operator: In, values: [{release}-unused]}}\n"
        ),
    );
    let _cleanup = WebhookCleanup {
        env: &env,
        name: release.clone(),
    };
    let helm_cmd = |args: &[&str]| {
        run(
            Command::new(helm(&env))
                .current_dir(&env.root)
                .arg("--kubeconfig")
                .arg(&env.kubeconfig)
                .args(args),
            None,
        )
    };
    let values = values.to_string_lossy().into_owned();
    // The schema also holds on install (nothing reaches the cluster).
    let out = helm_cmd(&[
        "install",
        &release,
        CHART,
        "-n",
        &ns,
        "-f",
        &values,
        "--set",
        "replicas=two",
    ]);
    assert!(!out.status.success(), "replicas=two must fail helm install");
    let out = kubectl(
        &env,
        &["get", "mutatingwebhookconfiguration", &release],
        None,
    );
    assert!(
        !out.status.success(),
        "a refused install created a webhook configuration"
    );

    let stdout = must(
        helm_cmd(&[
            "install",
            &release,
            CHART,
            "-n",
            &ns,
            "-f",
            &values,
            "--wait=false",
        ]),
        "helm install",
    );
    assert!(stdout.contains("STATUS: deployed"), "{stdout}");
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        must(
            kubectl(&env, &["get", kind, &release], None),
            &format!("get {kind}"),
        );
    }
    let out = kubectl(
        &env,
        &["get", "deployment", &release, "-n", &ns, "-o", "json"],
        None,
    );
    let deployment: Value = serde_json::from_str(&must(out, "get deployment")).expect("json");
    assert_eq!(deployment["spec"]["replicas"], 2);

    must(
        helm_cmd(&["uninstall", &release, "-n", &ns]),
        "helm uninstall",
    );
    let out = kubectl(
        &env,
        &["get", "mutatingwebhookconfiguration", &release],
        None,
    );
    assert!(
        !out.status.success(),
        "helm uninstall leaves no webhook configuration behind"
    );
}
