//! End to end, sealed secrets on the real kube-apiserver: `hush keygen --namespace` makes the
//! namespace's identity Secret, `hush seal` turns a Secret (text and binary values) into a sealed
//! ConfigMap, `kubectl apply` stores both, the injector (registered as a webhook) mounts them into
//! the sidecar of an annotated pod, and the real `hush-sidecar`, run from the stored spec by the pod
//! runner (non-root, no capabilities), decrypts the values into its tmpfs byte for byte.
//!
//! There is no kubelet, so when the test re-applies the ConfigMap it updates the mounted volume
//! itself, the way the kubelet does (a new `..<timestamp>` directory, an atomic `..data` swap and
//! `<key> -> ..data/<key>` links), then sends SIGHUP for an immediate refresh.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hush_tests::cluster;
use hush_tests::env::TestEnv;
use hush_tests::harness::{free_port, workspace_bin};
use hush_tests::kube::InjectorFixture;
use hush_tests::operator::{self, Stores};
use hush_tests::pod_runner::{RunSpec, RunningContainer, run_container};
use hush_tests::sidecar_pod::http_get;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams};

const CM: &str = "db-creds";
const PASSWORD_1: &str = "canary-sealed-pw-1";
const PASSWORD_2: &str = "canary-sealed-pw-2";
/// Every byte value, so nothing in the path may treat the value as text.
fn binary_value() -> Vec<u8> {
    (0..=255u8).rev().chain(*b"canary-bin").collect()
}

fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn kubectl_apply(env: &TestEnv, ns: &str, manifest: &str) {
    let kc = env.kubeconfig.display().to_string();
    let out = run(
        &env.kubectl,
        &["--kubeconfig", &kc, "apply", "-n", ns, "-f", "-"],
        Some(manifest),
    );
    assert!(out.status.success(), "kubectl apply: {}", text(&out));
}

/// `hush seal` of a Secret `name` in `ns` with a text `password` and a binary `cert`.
fn seal(ns: &str, name: &str, recipient: &str, password: &str) -> String {
    let cert = serde_json::to_string(&ByteString(binary_value())).expect("base64");
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\ntype: Opaque\n\
         stringData:\n  password: {password}\ndata:\n  cert: {cert}\n"
    );
    let out = run(
        &workspace_bin("hush"),
        &["seal", "-r", recipient],
        Some(&secret),
    );
    assert!(out.status.success(), "hush seal: {}", text(&out));
    let sealed = String::from_utf8(out.stdout).expect("UTF-8 manifest");
    assert!(
        !sealed.contains(password) && !sealed.contains("canary"),
        "the sealed manifest holds no plaintext"
    );
    sealed
}

/// Replaces the files of a mounted ConfigMap volume the way the kubelet's AtomicWriter does.
fn kubelet_update(dir: &Path, data: &BTreeMap<String, String>) {
    static N: AtomicU32 = AtomicU32::new(0);
    let ts = format!(
        "..2030_01_01_00_00_{:02}.{}",
        N.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    );
    std::fs::create_dir(dir.join(&ts)).expect("mkdir timestamp dir");
    for (k, v) in data {
        std::fs::write(dir.join(&ts).join(k), v).expect("write key");
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&ts, &tmp).expect("symlink ..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for entry in std::fs::read_dir(dir).expect("read volume") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "..data" || name == ts {
            continue;
        }
        let path = entry.path();
        if name.starts_with("..") {
            std::fs::remove_dir_all(&path).expect("remove old timestamp dir");
        } else {
            std::fs::remove_file(&path).expect("remove old key");
        }
    }
    for k in data.keys() {
        std::os::unix::fs::symlink(format!("..data/{k}"), dir.join(k)).expect("key link");
    }
}

async fn wait_for(what: &str, sc: &mut RunningContainer, mut done: impl FnMut(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = sc.logs();
        if done(&logs) {
            return;
        }
        if let Some(st) = sc.wait_timeout(Duration::ZERO) {
            panic!("sidecar exited ({st}) while waiting for {what}: {logs}");
        }
        assert!(Instant::now() < deadline, "no {what} after 60 s: {logs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(sc: &RunningContainer, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(sc.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, sig).expect("signal the sidecar");
}

fn pod_yaml(name: &str, files: &[(&str, &str)]) -> String {
    let keys: Vec<(String, &str)> = files
        .iter()
        .map(|(file, source)| (format!("hush.dev/secret-{file}"), *source))
        .collect();
    let mut annotations = vec![("hush.dev/inject", "true"), ("hush.dev/refresh", "1h")];
    annotations.extend(keys.iter().map(|(k, v)| (k.as_str(), *v)));
    hush_tests::kube::restricted_pod_yaml(name, &annotations)
}

/// The sidecar container of the stored spec, with metrics on a free loopback port.
fn sidecar_spec(args: Option<&str>) -> (RunSpec, String) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let spec = RunSpec {
        container: "hush-sidecar".into(),
        binaries: [("hush-sidecar".to_string(), workspace_bin("hush-sidecar"))].into(),
        extra_env: [("HUSH_METRICS_ADDR".to_string(), metrics.clone())].into(),
        args_override: args.map(|a| vec![a.to_string()]),
        ..RunSpec::default()
    };
    (spec, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_secret_is_decrypted_in_the_injected_sidecar_and_tampering_is_refused() {
    let env = TestEnv::load();
    let client = cluster::client(&env).await;
    let fixture =
        InjectorFixture::start(&env, &client, &operator::injector_yaml(&env, Stores::NONE)).await;
    let ns = cluster::namespace(&client, "sealed", true).await;
    fixture.select_namespace(&ns).await;
    cluster::service_account(&client, &ns, "app").await;
    fixture.wait_active(&ns, "app").await;

    // The namespace's identity, as a user makes it.
    let out = run(
        &workspace_bin("hush"),
        &["keygen", "--namespace", &ns],
        None,
    );
    assert!(out.status.success(), "hush keygen: {}", text(&out));
    let identity_manifest = String::from_utf8(out.stdout).expect("UTF-8");
    let recipient = identity_manifest
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .expect("keygen prints the public key")
        .trim_matches('"')
        .to_string();
    kubectl_apply(&env, &ns, &identity_manifest);

    // Seal and apply, as GitOps would.
    kubectl_apply(&env, &ns, &seal(&ns, CM, &recipient, PASSWORD_1));
    let pod_name = "app";
    kubectl_apply(
        &env,
        &ns,
        &pod_yaml(
            pod_name,
            &[
                ("db", &format!("sealed:{CM}/password")),
                ("cert", &format!("sealed:{CM}/cert")),
            ],
        ),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods.get(pod_name).await.expect("pod stored");

    // The ConfigMap and the identity are mounted into the sidecar only.
    let spec = pod.spec.as_ref().expect("spec");
    let mounts_of = |c: &k8s_openapi::api::core::v1::Container| -> Vec<String> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| format!("{}={}", m.name, m.mount_path))
            .collect()
    };
    let sidecar = &spec.init_containers.as_ref().expect("init containers")[0];
    let sidecar_mounts = mounts_of(sidecar);
    assert!(
        sidecar_mounts.contains(&format!("hush-sealed-0=/hush/sealed/{CM}"))
            && sidecar_mounts.contains(&"hush-identity=/hush/identity".to_string()),
        "{sidecar_mounts:?}"
    );
    let app_mounts = mounts_of(&spec.containers[0]);
    assert!(
        !app_mounts
            .iter()
            .any(|m| m.starts_with("hush-sealed") || m.starts_with("hush-identity")),
        "the app must not mount the ciphertexts or the identity: {app_mounts:?}"
    );

    // The sidecar decrypts both values byte for byte.
    let (spec, metrics) = sidecar_spec(None);
    let mut sc = run_container(&client, &pod, spec).await;
    let db = sc.volume_path("hush-secrets").join("db");
    let cert = sc.volume_path("hush-secrets").join("cert");
    let marker = sc.volume_path("hush-state").join("started");
    wait_for("the first secrets", &mut sc, |_| {
        marker.exists() && db.exists()
    })
    .await;
    assert_eq!(std::fs::read(&db).expect("read db"), PASSWORD_1.as_bytes());
    assert_eq!(std::fs::read(&cert).expect("read cert"), binary_value());

    // Re-applied with a new value: picked up on the next refresh.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let volume = sc.volume_path("hush-sealed-0").to_path_buf();
    kubectl_apply(&env, &ns, &seal(&ns, CM, &recipient, PASSWORD_2));
    let data = cms.get(CM).await.expect("cm").data.expect("data");
    kubelet_update(&volume, &data);
    signal(&sc, rustix::process::Signal::HUP);
    wait_for("the re-sealed value", &mut sc, |_| {
        std::fs::read(&db).is_ok_and(|b| b == PASSWORD_2.as_bytes())
    })
    .await;
    assert_eq!(std::fs::read(&cert).expect("read cert"), binary_value());
    // Zeroization, proven on the running process: after one more (unchanged) refresh, no copy of
    // the old plaintext is left anywhere in the sidecar's memory.
    signal(&sc, rustix::process::Signal::HUP);
    tokio::time::sleep(Duration::from_secs(1)).await;
    hush_tests::memscan::assert_no_copies(sc.child.id(), &[PASSWORD_1]);

    // Tamper: swap the two ciphertexts in the applied ConfigMap. The MAC over the set fails; the
    // error names the object and key, never a value, and the last good files stay.
    let mut cm = cms.get(CM).await.expect("cm");
    let data = cm.data.as_mut().expect("data");
    let password = data.remove("password").expect("password");
    let cert_ct = data.insert("cert".into(), password).expect("cert");
    data.insert("password".into(), cert_ct);
    cms.replace(CM, &PostParams::default(), &cm)
        .await
        .expect("replace ConfigMap");
    let tampered = cms.get(CM).await.expect("cm").data.expect("data");
    kubelet_update(&volume, &tampered);
    signal(&sc, rustix::process::Signal::HUP);
    let object = format!("sealed ConfigMap {ns}/{CM}");
    wait_for("the integrity error", &mut sc, |logs| {
        logs.contains("failed its integrity check") && logs.contains("refresh failed")
    })
    .await;
    let logs = sc.logs();
    assert!(logs.contains(&object), "names the object: {logs}");
    assert!(
        logs.contains(&format!("{CM}/password")) && logs.contains(&format!("{CM}/cert")),
        "names the keys: {logs}"
    );
    assert!(logs.contains("permanent"), "{logs}");
    assert!(!logs.contains("canary"), "no value in the logs: {logs}");
    // The audit trail (docs/audit.md) of the stored pod: identity from the downward API the
    // injector wired, a decrypt at start, one after the re-seal, and the failed one.
    let records: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.starts_with("{\"schema\":\"hush.audit/v1\""))
        .map(|l| serde_json::from_str(l).expect("a record is one JSON line"))
        .collect();
    let reference = format!("sealed:{CM}/password");
    let decrypts: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["event"] == "decrypt" && r["reference"] == reference.as_str())
        .collect();
    assert!(decrypts.len() >= 3, "{records:?}");
    for r in &decrypts {
        assert_eq!(
            (
                &r["pod"],
                &r["namespace"],
                &r["serviceAccount"],
                &r["source"]
            ),
            (
                &serde_json::json!(pod_name),
                &serde_json::json!(ns),
                &serde_json::json!("app"),
                &serde_json::json!("sealed")
            ),
            "{r}"
        );
    }
    assert_eq!(decrypts[0]["outcome"], "ok");
    assert!(decrypts[0].get("changed").is_none(), "{}", decrypts[0]);
    assert!(
        decrypts
            .iter()
            .any(|r| r["outcome"] == "ok" && r["changed"] == true),
        "{decrypts:?}"
    );
    let failed = decrypts.last().expect("records");
    assert_eq!(
        (&failed["outcome"], &failed["errorClass"]),
        (&serde_json::json!("error"), &serde_json::json!("permanent")),
        "{failed}"
    );
    assert_eq!(std::fs::read(&db).expect("read db"), PASSWORD_2.as_bytes());
    assert_eq!(std::fs::read(&cert).expect("read cert"), binary_value());
    let m = http_get(metrics.parse().expect("a loopback address"), "/metrics");
    assert!(
        m.contains(r#"hush_sidecar_errors_total{source="sealed",file="db",class="permanent"} 1"#),
        "the failure shows in metrics: {m}"
    );
    assert!(!m.contains("canary") && !m.contains(CM), "{m}");
    let status = sc.stop();
    assert!(status.success(), "SIGTERM exits 0: {status} {}", sc.logs());
    drop(sc);

    // A ConfigMap sealed for another name, applied under a new name: the init-only run refuses it
    // with a binding error, writes nothing, and exits non-zero.
    let moved = seal(&ns, CM, &recipient, PASSWORD_1)
        .replace(&format!("name: {CM}\n"), "name: moved-creds\n");
    assert!(moved.contains("name: moved-creds\n"), "{moved}");
    kubectl_apply(&env, &ns, &moved);
    kubectl_apply(
        &env,
        &ns,
        &pod_yaml("moved", &[("db", "sealed:moved-creds/password")]),
    );
    let pod = pods.get("moved").await.expect("pod stored");
    let mut once = run_container(&client, &pod, sidecar_spec(Some("once")).0).await;
    let status = once
        .wait_timeout(Duration::from_secs(60))
        .expect("once exits");
    let logs = once.logs();
    assert!(!status.success(), "a moved ConfigMap must fail: {logs}");
    assert!(
        logs.contains("moved-creds/password")
            && logs.contains(&format!("sealed ConfigMap {ns}/moved-creds"))
            && logs.contains(&format!("sealed for {ns}/{CM}")),
        "names the object, the key and the binding: {logs}"
    );
    assert!(!logs.contains("canary"), "no value in the logs: {logs}");
    assert!(
        !once.volume_path("hush-secrets").join("db").exists(),
        "nothing is written"
    );
    drop(once);
    fixture.cleanup().await;
}
