//! End-to-end tests on the real node: Hush installed by its Helm chart from the images that
//! `scripts/images` built (`scripts/install-hush`), real kubelet, containerd and runc, real pods.
//! These are the behaviours a user relies on at run time and that only a kubelet can prove: the
//! native sidecar's ordering and startup probe, projected tokens, the memory-backed volume with
//! `fsGroup`, the read-only mount, SIGTERM on pod deletion, Jobs that complete while their sidecar
//! still runs, and admission through the chart's Service during a rollout.
//!
//! What stays on `hush-pod-runner` (tests/src/pod_runner.rs) and why: faults a kubelet cannot be
//! asked for. Killing the sidecar at a chosen instant of a write, an outage of Vault in the middle
//! of a rotation (a proxy between the sidecar and OpenBao), a full tmpfs at a chosen size, signals
//! sent at chosen moments, reading the sidecar's memory, and timing-sensitive lease tests that need
//! the sidecar's metrics port on loopback. The pod runner runs the stored pod spec itself (same
//! user, no capabilities, same mounts), so those tests stay faithful to what the real node shows
//! here.
//!
//! The app pods use `hostNetwork: true`: the test servers listen on 127.0.0.1 only, and pods on
//! the node's bridge network have no route off their subnet (docs/real-node.md). Host-network pods
//! share ports, so the sidecars' metrics port (9102) is shared too: these tests take one lock and
//! run one pod at a time.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use hush_tests::cluster;
use hush_tests::cmd::{bao, bao_command, kubectl, run, text};
use hush_tests::env::{TestEnv, unique_name};
use hush_tests::harness::{eventually, notification_listener, workspace_bin};

/// One real pod at a time (host network: shared ports).
static NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The chart's release and namespace (scripts/install-hush).
const RELEASE_NS: &str = "hush-system";
const RELEASE: &str = "hush";
const APP_IMAGE: &str = "localhost/hush-testapp:1";
const MOUNT: &str = "/var/run/secrets/hush";
const SIDECAR: &str = "hush-sidecar";

fn apply(env: &TestEnv, ns: &str, yaml: &str) {
    let out = kubectl(env, &["apply", "-n", ns, "-f", "-"], Some(yaml));
    assert!(
        out.status.success(),
        "kubectl apply: {}\n{yaml}",
        text(&out)
    );
}

/// A namespace the chart's webhooks select, allowed to run host-network pods, with the
/// ServiceAccount `app`, a Vault policy over `secret/<prefix>/*` (plus `extra_policy`) and a
/// kubernetes-auth role for `app` in this namespace.
struct Tenant {
    env: TestEnv,
    client: Client,
    ns: String,
    role: String,
    prefix: String,
}

impl Tenant {
    async fn new(extra_policy: &str) -> Tenant {
        let env = TestEnv::load();
        let client = cluster::client(&env).await;
        installed(&env, &client).await;
        let ns = cluster::namespace(&client, "node", false).await;
        let patch = serde_json::json!({"metadata": {"labels": {
            "hush.dev/enabled": "true",
            "pod-security.kubernetes.io/enforce": "privileged",
        }}});
        Api::<Namespace>::all(client.clone())
            .patch(
                &ns,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .unwrap();
        cluster::service_account(&client, &ns, "app").await;
        let role = unique_name("node");
        let prefix = unique_name("kv");
        let policy = format!(
            "path \"secret/data/{prefix}/*\" {{ capabilities = [\"read\"] }}\n\
             path \"secret/metadata/{prefix}/*\" {{ capabilities = [\"read\"] }}\n\
             path \"secret/detailed-metadata/{prefix}/*\" {{ capabilities = [\"list\"] }}\n{extra_policy}"
        );
        bao(&env, &["policy", "write", &role, "-"], Some(&policy));
        bao(
            &env,
            &[
                "write",
                &format!("auth/kubernetes/role/{role}"),
                "bound_service_account_names=app",
                &format!("bound_service_account_namespaces={ns}"),
                &format!("policies={role}"),
                "audience=vault",
                "token_ttl=1h",
            ],
            None,
        );
        Tenant {
            env,
            client,
            ns,
            role,
            prefix,
        }
    }

    fn kv(&self, name: &str) -> String {
        format!("secret/{}/{name}", self.prefix)
    }

    fn put(&self, name: &str, kv: &[(&str, &str)]) {
        let mut args = vec!["kv".to_string(), "put".into(), self.kv(name)];
        args.extend(kv.iter().map(|(k, v)| format!("{k}={v}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bao(&self.env, &args, None);
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The one pod whose `app` label is `app`, once it exists.
    async fn pod_of(&self, app: &str) -> Pod {
        let pods = self.pods();
        let lp = ListParams::default().labels(&format!("app={app}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = pods.list(&lp).await.unwrap();
            if let Some(p) = list
                .items
                .into_iter()
                .find(|p| p.metadata.deletion_timestamp.is_none())
            {
                return p;
            }
            assert!(Instant::now() < deadline, "no pod with app={app}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_ready(&self, name: &str, secs: u64) -> Pod {
        let pods = self.pods();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let p = pods.get(name).await.unwrap();
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                return p;
            }
            if Instant::now() > deadline {
                panic!(
                    "pod {name} not Ready after {secs} s: {:?}\nsidecar log:\n{}",
                    p.status,
                    self.logs(name, SIDECAR)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn logs(&self, pod: &str, container: &str) -> String {
        text(&kubectl(
            &self.env,
            &["logs", "-n", &self.ns, pod, "-c", container],
            None,
        ))
    }

    fn exec(&self, pod: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", "-n", &self.ns, pod, "-c", "app", "--"];
        args.extend_from_slice(cmd);
        kubectl(&self.env, &args, None)
    }

    fn cat(&self, pod: &str, file: &str) -> Option<String> {
        let out = self.exec(pod, &["cat", &format!("{MOUNT}/{file}")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Tenant {
    /// The namespace goes, with its pods: the next test's host-network pod needs their ports.
    fn drop(&mut self) {
        let _ = kubectl(
            &self.env,
            &["delete", "namespace", &self.ns, "--wait=false"],
            None,
        );
    }
}

/// Fails with the fix when the chart is not installed.
async fn installed(env: &TestEnv, client: &Client) {
    let deploy = Api::<Deployment>::namespaced(client.clone(), RELEASE_NS)
        .get_opt(RELEASE)
        .await
        .unwrap();
    let available = deploy
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    assert!(
        available > 0,
        "the Hush chart is not installed on the node ({RELEASE_NS}/{RELEASE}): run \
         scripts/test-env up (it runs scripts/install-hush); kubeconfig {}",
        env.kubeconfig.display()
    );
}

/// The pod security context every app pod here uses: the app runs as 1000 with fsGroup 2000, the
/// sidecar as the chart's 65532.
const POD_SECURITY: &str = "securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000, runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}";
const APP_SECURITY: &str =
    "securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}";

fn annotations_yaml(annotations: &[(&str, String)], indent: usize) -> String {
    let pad = " ".repeat(indent);
    annotations
        .iter()
        .map(|(k, v)| format!("{pad}{k}: {}\n", serde_json::to_string(v).unwrap()))
        .collect()
}

/// A shell script for the app container: it checks the secrets at start (so a start before the
/// sidecar wrote them shows as a restart with "MISSING" in the log), then sleeps.
fn app_script(files: &[&str]) -> String {
    let mut s = String::from("d=/var/run/secrets/hush; ");
    for f in files {
        s.push_str(&format!(
            "test -s $d/{f} || {{ echo MISSING {f} at start; exit 1; }}; "
        ));
    }
    s.push_str("echo secrets present at start; exec sleep 3600");
    s
}

/// The pod every workload here runs (`metadata` and `spec`, at indent 0): one host-network app
/// container running `script` as the app's user. `job` adds `restartPolicy: Never`.
fn pod_template(name: &str, annotations: &[(&str, String)], script: &str, job: bool) -> String {
    format!(
        r#"metadata:
  name: {name}
  labels: {{app: {name}}}
  annotations:
{ann}spec:
{restart}  hostNetwork: true
  serviceAccountName: app
  terminationGracePeriodSeconds: 10
  {POD_SECURITY}
  containers:
  - name: app
    image: {APP_IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", {script}]
    {APP_SECURITY}
"#,
        ann = annotations_yaml(annotations, 4),
        restart = if job { "  restartPolicy: Never\n" } else { "" },
        script = serde_json::to_string(script).unwrap(),
    )
}

/// `text` with every line indented by `n` spaces.
fn indented(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

fn deployment_yaml(name: &str, annotations: &[(&str, String)], script: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  \
         selector:\n    matchLabels: {{app: {name}}}\n  template:\n{}",
        indented(&pod_template(name, annotations, script, false), 4)
    )
}

fn pod_yaml(name: &str, annotations: &[(&str, String)], script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\n{}",
        pod_template(name, annotations, script, false)
    )
}

fn job_yaml(name: &str, annotations: &[(&str, String)], script: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  backoffLimit: 0\n  \
         template:\n{}",
        indented(&pod_template(name, annotations, script, true), 4)
    )
}

fn run_hush(args: &[&str], stdin: Option<&str>) -> String {
    let out = run(Command::new(workspace_bin("hush")).args(args), stdin);
    assert!(out.status.success(), "hush {args:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// `hush keygen` for the namespace, applied; then `hush seal` of a Secret `name` with `password`.
fn sealed_configmap(t: &Tenant, name: &str, password: &str) {
    let identity = run_hush(&["keygen", "--namespace", &t.ns], None);
    let recipient = identity
        .split_whitespace()
        .find(|w| w.trim_matches('"').starts_with("age1"))
        .expect("keygen prints the public key")
        .trim_matches('"')
        .to_string();
    apply(&t.env, &t.ns, &identity);
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {}\ntype: Opaque\nstringData:\n  password: {password}\n",
        t.ns
    );
    let sealed = run_hush(&["seal", "-r", &recipient], Some(&secret));
    apply(&t.env, &t.ns, &sealed);
}

async fn aws_secret(env: &TestEnv, name: &str, json: &str) {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(env.aws_region.clone()))
        .endpoint_url(&env.aws_endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&conf)
        .create_secret()
        .name(name)
        .secret_string(json)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_with_vault_aws_and_sealed_secrets_becomes_ready_and_rotates() {
    let _node = NODE.lock().await;
    let t = Tenant::new("").await;
    t.put("db", &[("password", "first-pass")]);
    let aws_name = unique_name("node-aws");
    aws_secret(&t.env, &aws_name, r#"{"api_key":"aws-key-1"}"#).await;
    sealed_configmap(&t, "payment-keys", "sealed-pass");
    let (url, notified) = notification_listener().await;

    let name = "shop";
    let annotations = [
        ("hush.dev/inject", "true".to_string()),
        ("hush.dev/role", t.role.clone()),
        (
            "hush.dev/secret-db",
            format!("vault:{}#password", t.kv("db")),
        ),
        ("hush.dev/secret-api-key", format!("aws:{aws_name}#api_key")),
        (
            "hush.dev/aws-role-arn",
            "arn:aws:iam::123456789012:role/shop".to_string(),
        ),
        (
            "hush.dev/secret-stripe",
            "sealed:payment-keys/password".to_string(),
        ),
        ("hush.dev/refresh", "5s".to_string()),
        ("hush.dev/on-change", url),
    ];
    let t0 = Instant::now();
    apply(
        &t.env,
        &t.ns,
        &deployment_yaml(
            name,
            &annotations,
            &app_script(&["db", "api-key", "stripe"]),
        ),
    );
    let pod = t.pod_of(name).await;
    let pod_name = pod.metadata.name.clone().unwrap();
    let pod = t.wait_ready(&pod_name, 120).await;
    let with_hush = t0.elapsed();
    // The same pod without Hush, for the figure in the note.
    let t1 = Instant::now();
    apply(
        &t.env,
        &t.ns,
        &deployment_yaml("plain", &[], "exec sleep 3600"),
    );
    let plain = t.pod_of("plain").await.metadata.name.unwrap();
    t.wait_ready(&plain, 120).await;
    eprintln!(
        "create to Ready: {with_hush:?} with Hush, {:?} for the same Deployment without it",
        t1.elapsed()
    );

    // The sidecar is a native sidecar that started first; the app never restarted, and its own
    // check at start found every file.
    let status = pod.status.as_ref().unwrap();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == SIDECAR)
        .expect("the sidecar's status");
    assert_eq!(sidecar.started, Some(true));
    let app = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "app")
        .unwrap();
    assert_eq!(app.restart_count, 0, "the app started once");
    let log = t.logs(&pod_name, "app");
    assert!(
        log.contains("secrets present at start") && !log.contains("MISSING"),
        "{log}"
    );

    // The files as the app sees them.
    assert_eq!(t.cat(&pod_name, "db").as_deref(), Some("first-pass"));
    assert_eq!(t.cat(&pod_name, "api-key").as_deref(), Some("aws-key-1"));
    assert_eq!(t.cat(&pod_name, "stripe").as_deref(), Some("sealed-pass"));
    // Mode 0440, group = the pod's fsGroup: the app's user reads them through the group.
    let out = t.exec(
        &pod_name,
        &[
            "stat",
            "-L",
            "-c",
            "%a %g",
            &format!("{MOUNT}/db"),
            &format!("{MOUNT}/api-key"),
            &format!("{MOUNT}/stripe"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "440 2000\n440 2000\n440 2000\n",
        "{}",
        text(&out)
    );
    let out = t.exec(&pod_name, &["id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");
    // ... and cannot write or add anything: the mount is read-only.
    for cmd in [
        format!("echo x > {MOUNT}/db"),
        format!("touch {MOUNT}/new"),
        format!("rm {MOUNT}/db"),
    ] {
        let out = t.exec(&pod_name, &["sh", "-c", &cmd]);
        assert!(!out.status.success(), "`{cmd}` succeeded in the app");
        assert!(
            text(&out).contains("Read-only file system"),
            "`{cmd}`: {}",
            text(&out)
        );
    }
    assert_eq!(t.cat(&pod_name, "db").as_deref(), Some("first-pass"));

    // Rotate in OpenBao: the file changes in the running pod, and the app is told once.
    let before = notified.load(Ordering::SeqCst);
    t.put("db", &[("password", "second-pass")]);
    eventually("the rotated value in the pod", 60, || {
        (t.cat(&pod_name, "db").as_deref() == Some("second-pass")).then_some(())
    })
    .await;
    eventually("the notification", 30, || {
        (notified.load(Ordering::SeqCst) > before).then_some(())
    })
    .await;
    // Two more refresh periods with nothing new: still exactly one notification.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        notified.load(Ordering::SeqCst),
        before + 1,
        "one notification per update"
    );
    assert_eq!(t.cat(&pod_name, "api-key").as_deref(), Some("aws-key-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_with_init_only_and_with_the_native_sidecar() {
    let _node = NODE.lock().await;
    let t = Tenant::new("").await;
    t.put("token", &[("value", "job-secret")]);
    let base = [
        ("hush.dev/inject", "true".to_string()),
        ("hush.dev/role", t.role.clone()),
        (
            "hush.dev/secret-token",
            format!("vault:{}#value", t.kv("token")),
        ),
    ];
    let script = "test \"$(cat /var/run/secrets/hush/token)\" = job-secret && echo job done";
    let mut init_only = base.to_vec();
    init_only.push(("hush.dev/mode", "init-only".to_string()));
    apply(&t.env, &t.ns, &job_yaml("init-only", &init_only, script));
    apply(&t.env, &t.ns, &job_yaml("native", &base, script));

    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    for name in ["init-only", "native"] {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let job = jobs.get(name).await.unwrap();
            let conds = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            if conds
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
            {
                break;
            }
            let failed = conds
                .iter()
                .any(|c| c.type_ == "Failed" && c.status == "True");
            if failed || Instant::now() > deadline {
                let pod = t.pod_of(name).await;
                let p = pod.metadata.name.unwrap();
                panic!(
                    "job {name} did not complete: {conds:?}\napp: {}\nsidecar: {}",
                    t.logs(&p, "app"),
                    t.logs(&p, SIDECAR)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let pod = t.pod_of(name).await;
        let p = pod.metadata.name.clone().unwrap();
        assert!(t.logs(&p, "app").contains("job done"));
        let inits = pod.spec.unwrap().init_containers.unwrap();
        let policy = inits[0].restart_policy.clone();
        if name == "init-only" {
            assert_eq!(policy, None, "init-only is a plain init container");
        } else {
            assert_eq!(policy.as_deref(), Some("Always"), "a native sidecar");
        }
    }
}

/// Vault token accessors whose kubernetes-auth metadata names this namespace.
fn tokens_of(env: &TestEnv, ns: &str) -> usize {
    let list = bao(env, &["list", "-format=json", "auth/token/accessors"], None);
    let accessors: Vec<String> = serde_json::from_str(&list).unwrap_or_default();
    accessors
        .iter()
        .filter(|a| {
            let out = run(
                bao_command(env).args([
                    "write",
                    "-format=json",
                    "auth/token/lookup-accessor",
                    &format!("accessor={a}"),
                ]),
                None,
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            v["data"]["meta"]["service_account_namespace"] == ns
        })
        .count()
}

fn pg_roles_named(env: &TestEnv, user: &str) -> String {
    let rest = env.pg_dsn.strip_prefix("postgres://").unwrap();
    let (cred, _) = rest.split_once('@').unwrap();
    let (_, pass) = cred.split_once(':').unwrap();
    let (host, port) = env.pg_hostport.split_once(':').unwrap();
    let out = Command::new("psql")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            &format!("select count(*) from pg_roles where rolname = '{user}'"),
        ])
        .env("PGPASSWORD", pass)
        .output()
        .unwrap();
    assert!(out.status.success(), "psql: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_pod_revokes_the_vault_token_and_the_database_lease() {
    let _node = NODE.lock().await;
    let db_role = unique_name("nodedb");
    let t = Tenant::new(&format!(
        "path \"database/creds/{db_role}\" {{ capabilities = [\"read\"] }}"
    ))
    .await;
    let env = &t.env;
    let rest = env.pg_dsn.strip_prefix("postgres://").unwrap();
    let (cred, _) = rest.split_once('@').unwrap();
    let (_, pg_pass) = cred.split_once(':').unwrap();
    let conn = unique_name("pg");
    bao(
        env,
        &[
            "write",
            &format!("database/config/{conn}"),
            "plugin_name=postgresql-database-plugin",
            &format!(
                "connection_url=postgresql://{{{{username}}}}:{{{{password}}}}@{}/postgres?sslmode=disable",
                env.pg_hostport
            ),
            "username=postgres",
            &format!("password={pg_pass}"),
            &format!("allowed_roles={db_role}"),
        ],
        None,
    );
    bao(
        env,
        &[
            "write",
            &format!("database/roles/{db_role}"),
            &format!("db_name={conn}"),
            "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
            "default_ttl=10m",
            "max_ttl=1h",
        ],
        None,
    );
    let src = format!("vault:database/creds/{db_role}");
    let annotations = [
        ("hush.dev/inject", "true".to_string()),
        ("hush.dev/role", t.role.clone()),
        ("hush.dev/secret-db-user", format!("{src}#username")),
        ("hush.dev/secret-db-password", format!("{src}#password")),
    ];
    apply(
        env,
        &t.ns,
        &pod_yaml("db", &annotations, &app_script(&["db-user", "db-password"])),
    );
    t.wait_ready("db", 120).await;
    let user = t.cat("db", "db-user").unwrap();
    assert_eq!(pg_roles_named(env, &user), "1", "the database user exists");
    assert!(
        tokens_of(env, &t.ns) >= 1,
        "the sidecar holds a Vault token"
    );

    let out = kubectl(
        env,
        &[
            "delete",
            "pod",
            "db",
            "-n",
            &t.ns,
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    );
    assert!(out.status.success(), "kubectl delete: {}", text(&out));
    assert_eq!(
        pg_roles_named(env, &user),
        "0",
        "the lease was revoked: PostgreSQL dropped the user"
    );
    assert_eq!(tokens_of(env, &t.ns), 0, "the Vault token was revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_secret_cannot_be_fetched_waits_in_init_and_the_log_says_why() {
    let _node = NODE.lock().await;
    let t = Tenant::new("").await;
    let missing = t.kv("does-not-exist");
    let annotations = [
        ("hush.dev/inject", "true".to_string()),
        ("hush.dev/role", t.role.clone()),
        ("hush.dev/secret-db", format!("vault:{missing}#password")),
    ];
    apply(
        &t.env,
        &t.ns,
        &pod_yaml("stuck", &annotations, &app_script(&["db"])),
    );
    // The sidecar names the file and the cause (the log never carries secret paths), exits on a
    // permanent error, and the kubelet restarts it with backoff: the pod stays in Init.
    let log = eventually(
        "the sidecar's log naming the file and the cause",
        90,
        || {
            let log = t.logs("stuck", SIDECAR);
            (log.contains("files=db") && log.contains("permanent")).then_some(log)
        },
    )
    .await;
    let lower = log.to_lowercase();
    assert!(
        lower.contains("404") || lower.contains("not found"),
        "the log says what is wrong: {log}"
    );
    let pod = t.pods().get("stuck").await.unwrap();
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"), "{status:?}");
    let app = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "app")
        .unwrap();
    assert!(
        app.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .is_some(),
        "the app has not started: {app:?}"
    );
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == SIDECAR)
        .unwrap();
    assert_eq!(sidecar.started, Some(false), "{sidecar:?}");
    let _ = kubectl(
        &t.env,
        &["delete", "pod", "stuck", "-n", &t.ns, "--wait=false"],
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_with_an_annotation_typo_is_refused_at_apply() {
    let t = Tenant::new("").await;
    let annotations = [
        ("hush.dev/inject", "true".to_string()),
        ("hush.dev/role", t.role.clone()),
        (
            "hush.dev/secret-db",
            format!("vault:{}#password", t.kv("db")),
        ),
        ("hush.dev/refesh", "5m".to_string()),
    ];
    let out = kubectl(
        &t.env,
        &["apply", "-n", &t.ns, "-f", "-"],
        Some(&deployment_yaml("typo", &annotations, "true")),
    );
    assert!(!out.status.success(), "the typo was accepted");
    let msg = text(&out);
    assert!(
        msg.contains(
            r#"annotation "hush.dev/refesh": unknown annotation; did you mean "hush.dev/refresh"?"#
        ),
        "{msg}"
    );
    let deployments: Api<Deployment> = Api::namespaced(t.client.clone(), &t.ns);
    assert!(deployments.get_opt("typo").await.unwrap().is_none());
}

/// A pod that never runs (a scheduling gate): only its admission matters.
fn gated_pod(name: &str, role: &str, kv: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": {
            "hush.dev/inject": "true",
            "hush.dev/role": role,
            "hush.dev/secret-db": format!("vault:{kv}#password"),
        }},
        "spec": {
            "schedulingGates": [{"name": "hush.dev/admission-only"}],
            "serviceAccountName": "app",
            "containers": [{"name": "app", "image": APP_IMAGE, "imagePullPolicy": "Never"}],
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_of_the_injector_admits_no_pod_without_its_sidecar() {
    let _node = NODE.lock().await;
    let t = Tenant::new("").await;
    let pods = t.pods();
    let kv = t.kv("db");

    let started = Instant::now();
    let out = kubectl(
        &t.env,
        &[
            "rollout",
            "restart",
            "deployment",
            RELEASE,
            "-n",
            RELEASE_NS,
        ],
        None,
    );
    assert!(out.status.success(), "rollout restart: {}", text(&out));
    let env = t.env.clone();
    let status = tokio::task::spawn_blocking(move || {
        let out = kubectl(
            &env,
            &[
                "rollout",
                "status",
                "deployment",
                RELEASE,
                "-n",
                RELEASE_NS,
                "--timeout=300s",
            ],
            None,
        );
        (out, Instant::now())
    });

    let mut admitted = 0usize;
    let mut refused: Vec<(Duration, String)> = Vec::new();
    let mut i = 0usize;
    let mut finished_at = None;
    // Keep creating pods through the rollout and for 5 s after it.
    loop {
        if finished_at.is_none() && status.is_finished() {
            finished_at = Some(Instant::now());
        }
        if finished_at.is_some_and(|f| f.elapsed() > Duration::from_secs(5)) {
            break;
        }
        i += 1;
        let name = format!("stream-{i}");
        match pods
            .create(&PostParams::default(), &gated_pod(&name, &t.role, &kv))
            .await
        {
            Ok(p) => {
                let inits = p.spec.unwrap().init_containers.unwrap_or_default();
                assert_eq!(
                    inits.first().map(|c| c.name.as_str()),
                    Some(SIDECAR),
                    "pod {name} was admitted without its sidecar"
                );
                admitted += 1;
            }
            Err(e) => refused.push((started.elapsed(), e.to_string())),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (out, rollout_done) = status.await.unwrap();
    assert!(out.status.success(), "rollout status: {}", text(&out));
    let rollout = rollout_done.duration_since(started);
    eprintln!(
        "rollout took {rollout:?}; {admitted} pods admitted with their sidecar, {} refused",
        refused.len()
    );
    // Every refusal (failurePolicy Fail) falls inside the rollout, never after it.
    for (at, e) in &refused {
        assert!(
            *at <= rollout,
            "a pod was refused {at:?} after the rollout started, past its end ({rollout:?}): {e}"
        );
    }
    assert!(admitted > 0, "no pod was admitted: {refused:?}");
    // The last pods, created after the rollout, were all admitted.
    let after: Vec<_> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("stream-"))
        })
        .collect();
    assert_eq!(after.len(), admitted);
}

/// A Deployment written for the Vault Agent Injector, translated by `hush migrate` and applied
/// with Hush's annotations only: it becomes Ready on the node, and its files hold what Vault Agent
/// would have rendered, at the paths the app already reads (`/vault/secrets/...`).
#[tokio::test(flavor = "multi_thread")]
async fn a_vault_k8s_deployment_migrated_by_hush_migrate_runs_with_the_same_files() {
    let _node = NODE.lock().await;
    let t = Tenant::new("").await;
    t.put("db", &[("username", "app"), ("password", "pw-1")]);
    let kv2 = |name: &str| format!("secret/data/{}/{name}", t.prefix);
    let name = "migrated";
    let vault_k8s = [
        ("vault.hashicorp.com/agent-inject", "true".to_string()),
        ("vault.hashicorp.com/role", t.role.clone()),
        ("vault.hashicorp.com/agent-inject-secret-db", kv2("db")),
        (
            "vault.hashicorp.com/agent-inject-template-db",
            format!(
                "{{{{- with secret \"{}\" -}}}}\npostgres://{{{{ .Data.data.username }}}}:{{{{ .Data.data.password }}}}@db:5432/shop\n{{{{- end }}}}\n",
                kv2("db")
            ),
        ),
        ("vault.hashicorp.com/agent-inject-secret-config", kv2("db")),
        ("vault.hashicorp.com/agent-limits-cpu", "250m".to_string()),
    ];
    let script = "d=/vault/secrets; test -s $d/db && test -s $d/config || { echo MISSING; exit 1; }; \
                  echo secrets present at start; exec sleep 3600";
    let original = deployment_yaml(name, &vault_k8s, script);

    let out = run(
        Command::new(workspace_bin("hush")).args(["migrate", "-"]),
        Some(&original),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "hush migrate: {}", text(&out));
    assert!(
        stderr.contains("agent-limits-cpu") && stderr.contains("sidecar.resources"),
        "the dropped operator-owned annotation is named: {stderr}"
    );
    let migrated = String::from_utf8(out.stdout).unwrap();
    assert!(
        migrated
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| !l.contains("vault.hashicorp.com/")),
        "{migrated}"
    );

    // The same Deployment with the printed annotations in place of vault-k8s's.
    let template = pod_template(name, &[], script, false).replacen(
        "  annotations:\n",
        &format!("  annotations:\n{}", indented(&migrated, 4)),
        1,
    );
    let hush_yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  \
         selector:\n    matchLabels: {{app: {name}}}\n  template:\n{}",
        indented(&template, 4)
    );
    apply(&t.env, &t.ns, &hush_yaml);
    let pod = t.pod_of(name).await.metadata.name.unwrap();
    t.wait_ready(&pod, 120).await;
    let log = t.logs(&pod, "app");
    assert!(log.contains("secrets present at start"), "{log}");

    let cat = |file: &str| {
        let out = t.exec(&pod, &["cat", &format!("/vault/secrets/{file}")]);
        assert!(out.status.success(), "cat {file}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    // What Vault Agent rendered from that template, byte for byte.
    assert_eq!(cat("db"), "postgres://app:pw-1@db:5432/shop\n");
    // Without a template: the secret's fields as JSON.
    let config: serde_json::Value = serde_json::from_str(&cat("config")).unwrap();
    assert_eq!(
        config,
        serde_json::json!({"username": "app", "password": "pw-1"})
    );
}

/// `hush.dev/env`: the app reads a secret from its environment, through the launcher the sidecar
/// put into the tmpfs; the stored pod spec holds no value; the launcher is gone once the app runs
/// (the container's PID 1 is the app's own command); and a chosen container with no `command` is
/// refused at apply with its name and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_reads_a_vault_secret_from_its_environment_and_the_pod_spec_holds_no_value() {
    let _node = NODE.lock().await;
    let t = Tenant::new("").await;
    let password = unique_name("env-pw");
    t.put("db", &[("password", &password), ("username", "orders")]);
    let annotations = [
        ("hush.dev/inject", "true".to_string()),
        ("hush.dev/role", t.role.clone()),
        (
            "hush.dev/secret-db-password",
            format!("vault:{}#password", t.kv("db")),
        ),
        ("hush.dev/env", "DB_PASSWORD=db-password".to_string()),
    ];
    let script = "echo \"app sees DB_PASSWORD=$DB_PASSWORD\"; exec sleep 3600";
    apply(&t.env, &t.ns, &pod_yaml("envapp", &annotations, script));
    t.wait_ready("envapp", 120).await;
    let expected = format!("app sees DB_PASSWORD={password}");
    let log = eventually("the app's log line", 30, || {
        let log = t.logs("envapp", "app");
        log.contains(&expected).then_some(log)
    })
    .await;
    assert!(log.contains(&expected), "{log}");

    // The value is in no field of the stored pod: the spec carries the launcher and names only.
    let stored = serde_json::to_string(&t.pods().get("envapp").await.unwrap()).unwrap();
    assert!(
        !stored.contains(&password),
        "the stored pod holds the value"
    );
    let pod = t.pods().get("envapp").await.unwrap();
    let app = &pod.spec.as_ref().unwrap().containers[0];
    let command = app.command.clone().unwrap();
    assert_eq!(
        command[..4],
        [
            format!("{MOUNT}/.hush-launch"),
            MOUNT.to_string(),
            "--".to_string(),
            "sh".to_string()
        ]
    );

    // No process of ours stays in between: PID 1 of the app container is its own `sh`, now
    // `sleep` (exec), with the value in its environment.
    let out = t.exec("envapp", &["cat", "/proc/1/cmdline"]);
    assert!(out.status.success(), "{}", text(&out));
    let cmdline = String::from_utf8_lossy(&out.stdout).replace('\0', " ");
    assert!(cmdline.starts_with("sleep 3600"), "{cmdline}");
    let out = t.exec("envapp", &["cat", "/proc/1/environ"]);
    let environ = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        environ
            .split('\0')
            .any(|e| e == format!("DB_PASSWORD={password}")),
        "PID 1 has the variable"
    );
    // The launcher and its spec are read-only for the app.
    let out = t.exec(
        "envapp",
        &["sh", "-c", &format!("echo x > {MOUNT}/.hush-env")],
    );
    assert!(!out.status.success(), "the app could write the launch spec");

    // A container with no command: the injector never looks up an image's entrypoint.
    let yaml = pod_yaml("envnocmd", &annotations, "true").replace(
        &format!(
            "    command: [\"sh\", \"-c\", {}]\n",
            serde_json::to_string("true").unwrap()
        ),
        "",
    );
    assert!(!yaml.contains("command"), "{yaml}");
    let out = kubectl(&t.env, &["apply", "-n", &t.ns, "-f", "-"], Some(&yaml));
    assert!(!out.status.success(), "a pod with no command was admitted");
    let msg = text(&out);
    assert!(
        msg.contains(r#"spec.containers[0] ("app") has no command"#)
            && msg.contains("set the container's command"),
        "{msg}"
    );
    assert!(t.pods().get_opt("envnocmd").await.unwrap().is_none());
}
