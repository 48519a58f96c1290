//! End-to-end tests of the injector on the real kube-apiserver: the webhooks are registered with
//! `clientConfig.url` + `caBundle` pointing at the injector on 127.0.0.1, pods and Deployments go
//! through `kubectl apply`, the apiserver applies our patches and enforces Pod Security
//! "restricted", and the injected sidecar runs from the stored spec through the pod runner.

use std::process::Command;
use std::time::{Duration, Instant};

use hush_config::SidecarConfig;
use hush_tests::cluster;
use hush_tests::cmd::{kubectl, text};
use hush_tests::env::{TestEnv, unique_name};
use hush_tests::harness::sidecar_bin;
use hush_tests::kube::InjectorFixture;
use hush_tests::operator::{self, Stores};
use hush_tests::pod_runner::{RunSpec, Sandbox, run_container};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

fn operator_config(env: &TestEnv) -> String {
    format!(
        "{}allowedRoles:\n  '*': [app-e2e]\n",
        operator::injector_yaml(env, Stores::VAULT)
    )
}

/// A pod that passes Pod Security "restricted" on its own.
fn pod_yaml(name: &str, annotations: &[(&str, &str)]) -> String {
    hush_tests::kube::restricted_pod_yaml(name, annotations)
}

struct Setup {
    env: TestEnv,
    client: kube::Client,
    fixture: InjectorFixture,
    ns: String,
}

async fn setup() -> Setup {
    let env = TestEnv::load();
    let client = cluster::client(&env).await;
    let fixture = InjectorFixture::start(&env, &client, &operator_config(&env)).await;
    let ns = cluster::namespace(&client, "inj", true).await;
    fixture.select_namespace(&ns).await;
    cluster::service_account(&client, &ns, "app").await;
    fixture.wait_active(&ns, "app").await;
    Setup {
        env,
        client,
        fixture,
        ns,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_pod_is_admitted_under_restricted_and_its_sidecar_validates_its_config() {
    let s = setup().await;
    let name = "web";
    let yaml = pod_yaml(
        name,
        &[
            ("hush.dev/inject", "true"),
            ("hush.dev/role", "app-e2e"),
            ("hush.dev/secret-db", "vault:secret/data/e2e/db#password"),
        ],
    );
    let out = kubectl(&s.env, &["apply", "-n", &s.ns, "-f", "-"], Some(&yaml));
    assert!(out.status.success(), "kubectl apply: {}", text(&out));

    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    let pod = pods.get(name).await.expect("pod stored");
    let spec = pod.spec.as_ref().expect("spec");
    let inits = spec.init_containers.as_ref().expect("init containers");
    let sidecar = &inits[0];
    assert_eq!(
        sidecar.name, "hush-sidecar",
        "the sidecar is first among init containers"
    );
    assert_eq!(
        sidecar.restart_policy.as_deref(),
        Some("Always"),
        "native sidecar"
    );
    let probe = sidecar.startup_probe.as_ref().and_then(|p| p.exec.as_ref());
    assert_eq!(
        probe.and_then(|e| e.command.clone()),
        Some(vec!["hush-sidecar".to_string(), "probe".to_string()])
    );
    let volumes: Vec<_> = spec.volumes.iter().flatten().collect();
    let secrets = volumes
        .iter()
        .find(|v| v.name == "hush-secrets")
        .expect("secrets volume");
    assert_eq!(
        secrets.empty_dir.as_ref().and_then(|e| e.medium.as_deref()),
        Some("Memory"),
        "tmpfs"
    );
    let token = volumes
        .iter()
        .find(|v| v.name == "hush-token")
        .expect("token volume");
    let sat = token
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s.first())
        .and_then(|s| s.service_account_token.as_ref())
        .expect("projected SA token");
    assert_eq!(sat.audience.as_deref(), Some("vault"));
    assert!(sat.expiration_seconds.unwrap_or(0) >= 600);
    assert!(volumes.iter().any(|v| v.name == "hush-state"));
    let app = &spec.containers[0];
    let app_mount = app
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "hush-secrets")
        .expect("app mounts the secrets");
    assert_eq!(app_mount.read_only, Some(true));
    assert_eq!(app_mount.mount_path, "/var/run/secrets/hush");
    assert!(
        !app.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "hush-token" || m.name == "hush-state"),
        "only the sidecar mounts its token and state"
    );
    assert_eq!(
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("hush.dev/status"))
            .map(String::as_str),
        Some("injected")
    );

    // Re-applying the same manifest is stable: nothing changes, no second sidecar.
    let out = kubectl(&s.env, &["apply", "-n", &s.ns, "-f", "-"], Some(&yaml));
    assert!(out.status.success(), "re-apply: {}", text(&out));
    let again = pods.get(name).await.expect("pod");
    assert_eq!(again.spec, pod.spec, "re-apply leaves the spec as it was");

    // HUSH_CONFIG in the stored spec is the versioned JSON the sidecar accepts.
    let config_json = sidecar
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "HUSH_CONFIG")
        .and_then(|e| e.value.clone())
        .expect("HUSH_CONFIG");
    let cfg = SidecarConfig::from_json(&config_json).expect("HUSH_CONFIG validates");
    assert_eq!(cfg.namespace, s.ns);
    assert_eq!(cfg.role.as_deref(), Some("app-e2e"));
    assert_eq!(
        cfg.operator.vault.as_ref().map(|v| v.addr.as_str()),
        Some(s.env.vault_addr.as_str())
    );

    // The real hush-sidecar, started from the stored spec as the pod runner runs it (non-root,
    // no capabilities, private mounts), validates the HUSH_CONFIG it received.
    let mut run = run_container(
        &s.client,
        &pod,
        RunSpec {
            container: "hush-sidecar".into(),
            binaries: [("hush-sidecar".to_string(), sidecar_bin())].into(),
            args_override: Some(vec!["check-config".into()]),
            ..RunSpec::default()
        },
    )
    .await;
    let status = run
        .wait_timeout(Duration::from_secs(60))
        .expect("check-config exits");
    let logs = run.logs();
    assert!(status.success(), "hush-sidecar check-config failed: {logs}");
    assert!(logs.contains("HUSH_CONFIG is valid"), "{logs}");
    assert_eq!(
        run.env.get("HUSH_POD_NAME").map(String::as_str),
        Some(name),
        "fieldRef metadata.name"
    );
    assert_eq!(
        run.env.get("HUSH_POD_NAMESPACE"),
        Some(&s.ns),
        "fieldRef metadata.namespace"
    );
    // The projected token was minted for the spec's audience and is in the sidecar's token volume.
    let jwt =
        std::fs::read_to_string(run.volume_path("hush-token").join("token")).expect("token file");
    assert_eq!(jwt.split('.').count(), 3, "a JWT");
    if run.sandbox == Sandbox::Remapped {
        eprintln!("pod runner: mount namespaces refused; ran with path remapping");
    }
    drop(run);
    s.fixture.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_annotations_fail_at_kubectl_apply_with_our_message() {
    let s = setup().await;
    let bad_pod = pod_yaml(
        "typo",
        &[
            ("hush.dev/inject", "true"),
            ("hush.dev/role", "app-e2e"),
            ("hush.dev/secret-db", "vault:secret/data/e2e/db"),
            ("hush.dev/refersh", "5m"),
        ],
    );
    let out = kubectl(&s.env, &["apply", "-n", &s.ns, "-f", "-"], Some(&bad_pod));
    assert!(!out.status.success(), "a pod with a typo must be refused");
    let msg = text(&out);
    assert!(
        msg.contains("hush.dev/refersh") && msg.contains("did you mean \"hush.dev/refresh\""),
        "{msg}"
    );

    let role_pod = pod_yaml(
        "role",
        &[
            ("hush.dev/inject", "true"),
            ("hush.dev/role", "admin"),
            ("hush.dev/secret-db", "vault:secret/data/e2e/db"),
        ],
    );
    let out = kubectl(&s.env, &["apply", "-n", &s.ns, "-f", "-"], Some(&role_pod));
    assert!(
        !out.status.success(),
        "a role off the allowlist must be refused"
    );
    assert!(
        text(&out).contains("role \"admin\" is not allowed"),
        "{}",
        text(&out)
    );

    let deployment = |name: &str, extra: &str| {
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 0
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations:
        hush.dev/inject: "true"
        hush.dev/role: app-e2e
        hush.dev/secret-db: vault:secret/data/e2e/db
{extra}    spec:
      serviceAccountName: app
      containers:
      - name: app
        image: registry.example/app:1
"#
        )
    };
    let out = kubectl(
        &s.env,
        &["apply", "-n", &s.ns, "-f", "-"],
        Some(&deployment("bad", "        hush.dev/format-db: xml\n")),
    );
    assert!(
        !out.status.success(),
        "a Deployment with a bad template annotation must be refused"
    );
    let msg = text(&out);
    assert!(
        msg.contains("Deployment bad pod template") && msg.contains("hush.dev/format-db"),
        "{msg}"
    );
    let out = kubectl(
        &s.env,
        &["apply", "-n", &s.ns, "-f", "-"],
        Some(&deployment("good", "")),
    );
    assert!(
        out.status.success(),
        "a good Deployment is accepted: {}",
        text(&out)
    );
    s.fixture.cleanup().await;
}

/// The full path: the injected sidecar, run from the stored spec as a non-root process with no
/// capabilities in a private mount namespace, logs in to the real OpenBao with the projected
/// token minted for the spec's audience and writes the secret to its tmpfs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_sidecar_fetches_a_secret_from_openbao_through_the_pod_runner() {
    let s = setup().await;
    let bao = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut c = Command::new(&s.env.bao_bin);
        c.env("VAULT_ADDR", &s.env.vault_addr)
            .env("VAULT_CACERT", &s.env.vault_cacert)
            .env("VAULT_TOKEN", &s.env.vault_token)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("bao");
        if let Some(i) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(i.as_bytes())
                .expect("write");
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().expect("bao output");
        assert!(out.status.success(), "bao {args:?}: {}", text(&out));
    };
    let prefix = unique_name("inj");
    bao(
        &[
            "kv",
            "put",
            &format!("secret/{prefix}/db"),
            "password=s3cr3t-e2e",
        ],
        None,
    );
    bao(
        &["policy", "write", "app-e2e-policy", "-"],
        Some(
            "path \"secret/data/*\" { capabilities = [\"read\"] }\npath \"secret/metadata/*\" { capabilities = [\"read\"] }\n",
        ),
    );
    bao(
        &[
            "write",
            "auth/kubernetes/role/app-e2e",
            "bound_service_account_names=app",
            "bound_service_account_namespaces=*",
            "policies=app-e2e-policy",
            "audience=vault",
            "token_ttl=1h",
        ],
        None,
    );
    let name = "fetch";
    let source = format!("vault:secret/data/{prefix}/db#password");
    let yaml = pod_yaml(
        name,
        &[
            ("hush.dev/inject", "true"),
            ("hush.dev/role", "app-e2e"),
            ("hush.dev/secret-db", &source),
        ],
    );
    let out = kubectl(&s.env, &["apply", "-n", &s.ns, "-f", "-"], Some(&yaml));
    assert!(out.status.success(), "kubectl apply: {}", text(&out));
    let pod = Api::<Pod>::namespaced(s.client.clone(), &s.ns)
        .get(name)
        .await
        .expect("pod");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut run = run_container(
        &s.client,
        &pod,
        RunSpec {
            container: "hush-sidecar".into(),
            binaries: [("hush-sidecar".to_string(), sidecar_bin())].into(),
            extra_env: [(
                "HUSH_METRICS_ADDR".to_string(),
                format!("127.0.0.1:{metrics_port}"),
            )]
            .into(),
            ..RunSpec::default()
        },
    )
    .await;
    let file = run.volume_path("hush-secrets").join("db");
    let marker = run.volume_path("hush-state").join("started");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(marker.exists() && file.exists()) {
        if let Some(st) = run.wait_timeout(Duration::ZERO) {
            panic!("sidecar exited early ({st}): {}", run.logs());
        }
        assert!(
            Instant::now() < deadline,
            "no secret file after 90 s: {}",
            run.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "s3cr3t-e2e");
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&file).expect("stat");
        assert_eq!(
            meta.mode() & 0o777,
            0o444,
            "no fsGroup: world-readable, read-only"
        );
        assert_eq!(meta.uid(), 65532, "written by the sidecar's non-root user");
    }

    // The app container, run from the same stored spec with the pod's shared volumes, reads the
    // file through its read-only mount and cannot write there. Without mount namespaces the app's
    // absolute paths cannot be remapped, so this part needs them.
    if run.sandbox == Sandbox::Namespace {
        let mut app = run_container(
            &s.client,
            &pod,
            RunSpec {
                container: "app".into(),
                command_override: Some(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "cat /var/run/secrets/hush/db; echo; touch /var/run/secrets/hush/x && echo WROTE || echo REFUSED".into(),
                ]),
                shared_volumes: run.volumes.clone(),
                ..RunSpec::default()
            },
        )
        .await;
        let st = app
            .wait_timeout(Duration::from_secs(30))
            .expect("app exits");
        let out = app.logs();
        assert!(st.success(), "{out}");
        assert!(
            out.starts_with("s3cr3t-e2e\n"),
            "app reads the secret: {out}"
        );
        assert!(
            out.contains("Read-only file system")
                && out.contains("REFUSED")
                && !out.contains("WROTE"),
            "read-only mount: {out}"
        );
        drop(app);
    } else {
        eprintln!(
            "pod runner: no mount namespaces; the app container's read-only mount was not checked"
        );
    }
    let status = run.stop();
    assert!(status.success(), "SIGTERM exits 0: {status} {}", run.logs());
    s.fixture.cleanup().await;
}

/// Everything the audit layer writes, shared with the test.
#[derive(Clone, Default)]
struct AuditBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for AuditBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("audit buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for AuditBuf {
    type Writer = AuditBuf;
    fn make_writer(&'a self) -> AuditBuf {
        self.clone()
    }
}

/// The audit trail of admission on the real kube-apiserver: `kubectl apply` of a pod with a bad
/// annotation is denied, and the in-process injector writes one record for it (captured with the
/// audit layer the binary installs), naming the user the apiserver authenticated (`kubectl auth
/// whoami`), the namespace, the pod and the denial's reason, and not the annotation value the
/// denial message quotes back to the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_at_kubectl_apply_is_audited_with_the_requesting_user() {
    let buf = AuditBuf::default();
    // The server runs on this process's worker threads: the subscriber must be global. Other
    // tests in this file leave it alone; their records (other namespaces) are filtered out below.
    tracing::subscriber::set_global_default(hush_config::audit::subscriber(buf.clone()))
        .expect("no other global subscriber in this test binary");
    let s = setup().await;
    let whoami = kubectl(
        &s.env,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert!(whoami.status.success(), "{}", text(&whoami));
    let user = String::from_utf8_lossy(&whoami.stdout).trim().to_string();
    assert!(!user.is_empty());
    let canary = format!("CANARY-{}", unique_name("m"));
    let bad_pod = pod_yaml(
        "audited",
        &[
            ("hush.dev/inject", "true"),
            ("hush.dev/role", "app-e2e"),
            ("hush.dev/secret-db", "vault:secret/data/e2e/db"),
            ("hush.dev/mode", &canary),
        ],
    );
    let out = kubectl(&s.env, &["apply", "-n", &s.ns, "-f", "-"], Some(&bad_pod));
    assert!(!out.status.success(), "the pod must be refused");
    assert!(
        text(&out).contains(&canary),
        "the message to the user quotes the value (so the check below is not vacuous): {}",
        text(&out)
    );
    s.fixture.cleanup().await;

    let output =
        String::from_utf8(buf.0.lock().expect("audit buffer").clone()).expect("records are UTF-8");
    let records: Vec<serde_json::Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|r: &serde_json::Value| r["namespace"] == s.ns.as_str())
        .collect();
    let mine: Vec<&serde_json::Value> = records.iter().filter(|r| r["name"] == "audited").collect();
    // kubectl apply: one server-side lookup, then the CREATE, which the webhook denies.
    assert_eq!(mine.len(), 1, "{output}");
    let r = mine[0];
    assert_eq!(r["schema"], "hush.audit/v1");
    assert_eq!(r["program"], "hush-injector");
    assert_eq!(r["endpoint"], "mutate");
    assert_eq!(r["decision"], "denied");
    assert_eq!(r["reason"], "annotations");
    assert_eq!(r["user"], user.as_str());
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(r["kind"], "Pod");
    assert_eq!(r["dryRun"], false);
    assert!(r["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(!output.contains(&canary), "{output}");
}
