//! Self-managed TLS against the real kube-apiserver, with exactly the chart's RBAC: a ClusterRole
//! whose only rule is `patch` on the two webhook configurations by `resourceNames`, bound to a
//! ServiceAccount whose token is the injectors' only credential. Two injectors (the chart's two
//! replicas) start before their webhook configurations exist, stay not-ready, and once the
//! configurations appear with an empty caBundle each adds its own CA. The apiserver then trusts
//! both: it calls one through the mutating configuration and the other through the validating one,
//! then the second through the mutating one too after its URL is switched. A second test renews a
//! 45-second certificate under a steady stream of admission requests: none fails, the replica stays
//! ready, and the bundle ends with only the new CA. A third shuts one of two replicas down
//! gracefully: its CA leaves every webhook's bundle, the other's stays and still admits pods, the
//! publication metrics are on `/metrics`, and the last replica to go leaves the bundles empty.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_injector::RawConfig;
use hush_injector::RunningServer;
use hush_tests::cluster;
use hush_tests::env::{TestEnv, unique_name};
use hush_tests::kube::{WEBHOOK_LABEL, create_webhook_configurations};
use hush_tests::operator::{self, Stores};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Config};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};

/// The audience the test apiserver accepts for its own tokens (`--api-audiences`).
const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

/// The chart's ClusterRole and binding (deploy/helm/hush/templates/rbac.yaml) for `config_name`.
async fn chart_rbac(admin: &Client, config_name: &str, ns: &str, sa: &str) -> String {
    let role_name = format!("{config_name}-self-managed-tls");
    let role = ClusterRole {
        metadata: meta(&role_name),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["admissionregistration.k8s.io".into()]),
            resources: Some(vec![
                "mutatingwebhookconfigurations".into(),
                "validatingwebhookconfigurations".into(),
            ]),
            resource_names: Some(vec![config_name.to_string()]),
            verbs: vec!["patch".into()],
            non_resource_urls: None,
        }]),
        aggregation_rule: None,
    };
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("create ClusterRole");
    let binding = ClusterRoleBinding {
        metadata: meta(&role_name),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role_name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa.to_string(),
            namespace: Some(ns.to_string()),
            api_group: None,
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("create ClusterRoleBinding");
    role_name
}

/// A client that authenticates with `token` and nothing else (no client certificate).
fn token_client(env: &TestEnv, token: String) -> Client {
    let mut config = Config::new(env.kube_server.parse().expect("apiserver URL"));
    config.root_cert_file = Some(env.kube_ca.clone());
    config.auth_info.token = Some(token.into());
    Client::try_from(config).expect("token client")
}

/// The chart's webhooks (as tests/src/kube.rs registers them for the other suites), but with no
/// caBundle at all, as the chart renders them in selfManaged mode, and each configuration pointing
/// at its own injector.
async fn register_webhooks(
    admin: &Client,
    name: &str,
    selector: &str,
    mutate_port: u16,
    validate_port: u16,
) {
    let client_config = |port: u16, path: &str| WebhookClientConfig {
        ca_bundle: None,
        url: Some(format!("https://127.0.0.1:{port}{path}")),
        service: None,
    };
    create_webhook_configurations(
        admin,
        name,
        selector,
        client_config(mutate_port, "/mutate"),
        client_config(validate_port, "/validate"),
    )
    .await;
}

/// The injector's config: self-managed TLS for `name`, with 127.0.0.1 as an extra SAN because the
/// webhooks call it by URL, and no certificate or key file.
fn injector_config(env: &TestEnv, name: &str) -> hush_injector::InjectorConfig {
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  healthListen: 127.0.0.1:0\n  selfManagedTls:\n    enabled: true\n    service: hush.hush-system.svc\n    webhookConfiguration: {name}\n    validityDays: 1\n    extraSans: ['127.0.0.1']\n{}allowedRoles:\n  '*': [app-e2e]\n",
        operator::injector_yaml(env, Stores::VAULT)
    );
    RawConfig::from_yaml(&yaml, "self-managed test")
        .and_then(RawConfig::build)
        .expect("valid self-managed config")
}

fn pod(name: &str, annotations: &[(&str, &str)]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": annotations.iter().cloned().collect::<BTreeMap<_, _>>(),
        },
        "spec": {
            "schedulingGates": [{"name": "hush.dev/admission-only"}],
            "serviceAccountName": "app",
            "containers": [{"name": "app", "image": "registry.example/app:1"}],
        },
    }))
    .expect("pod")
}

const INJECT: [(&str, &str); 3] = [
    ("hush.dev/inject", "true"),
    ("hush.dev/role", "app-e2e"),
    ("hush.dev/secret-db", "vault:secret/data/e2e/db#password"),
];

/// Every CA (DER) in each webhook's caBundle of both configurations, read with the admin client.
async fn bundles(admin: &Client, name: &str) -> Vec<Vec<Vec<u8>>> {
    let parse = |b: Option<k8s_openapi::ByteString>| -> Vec<Vec<u8>> {
        let bytes = b.map(|b| b.0).unwrap_or_default();
        CertificateDer::pem_slice_iter(&bytes)
            .map(|d| d.expect("PEM certificate").as_ref().to_vec())
            .collect()
    };
    let m = Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .get(name)
        .await
        .expect("get mutating");
    let v = Api::<ValidatingWebhookConfiguration>::all(admin.clone())
        .get(name)
        .await
        .expect("get validating");
    let mut out: Vec<_> = m
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|w| parse(w.client_config.ca_bundle))
        .collect();
    out.extend(
        v.webhooks
            .unwrap_or_default()
            .into_iter()
            .map(|w| parse(w.client_config.ca_bundle)),
    );
    out
}

/// The CA in `bundle` that the certificate `server` serves verifies against, for 127.0.0.1.
fn served_ca(server: &RunningServer, bundle: &[Vec<u8>]) -> Vec<u8> {
    use rustls::client::danger::ServerCertVerifier as _;
    let ck = server.certs.current();
    let ip = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    bundle
        .iter()
        .find(|ca| {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(ca.to_vec()))
                .expect("CA parses");
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            )
            .build()
            .expect("verifier")
            .verify_server_cert(&ck.cert[0], &[], &ip, &[], UnixTime::now())
            .is_ok()
        })
        .unwrap_or_else(|| panic!("no CA in the bundle verifies the served certificate"))
        .clone()
}

/// Retries a server-side dry-run create of `pod` until the apiserver's answer satisfies `done`
/// (webhook configuration changes reach its admission chain asynchronously).
async fn until_admission<T>(
    pods: &Api<Pod>,
    pod: &Pod,
    what: &str,
    done: impl Fn(&Result<Pod, kube::Error>) -> Option<T>,
) -> T {
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let start = Instant::now();
    loop {
        let r = pods.create(&pp, pod).await;
        if let Some(t) = done(&r) {
            return t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: last answer {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn injected(r: &Result<Pod, kube::Error>) -> Option<()> {
    let pod = r.as_ref().ok()?;
    let inits = pod.spec.as_ref()?.init_containers.as_ref()?;
    (inits.first()?.name == "hush-sidecar").then_some(())
}

/// What both tests need: unique names, and a client holding only a token bound to the chart's
/// patch-only ClusterRole for the configuration `name`.
struct Setup {
    env: TestEnv,
    admin: Client,
    name: String,
    selector: String,
    role: String,
    client: Client,
}

async fn setup() -> Setup {
    let env = TestEnv::load();
    let admin = cluster::client(&env).await;
    let name = unique_name("hush-sm");
    let selector = unique_name("sm");
    let system_ns = cluster::namespace(&admin, "sm-system", false).await;
    cluster::service_account(&admin, &system_ns, "hush").await;
    let role = chart_rbac(&admin, &name, &system_ns, "hush").await;
    let token = cluster::token(&admin, &system_ns, "hush", API_AUDIENCE, 3600).await;
    let client = token_client(&env, token);
    // The token really is that narrow: it may not even read its own configuration.
    let get = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(&name)
        .await;
    assert!(
        matches!(&get, Err(kube::Error::Api(s)) if s.code == 403),
        "get must be forbidden: {get:?}"
    );
    Setup {
        env,
        admin,
        name,
        selector,
        role,
        client,
    }
}

impl Setup {
    /// A namespace that this test's webhooks select, with the `app` ServiceAccount.
    async fn app_namespace(&self) -> Api<Pod> {
        let ns = cluster::namespace(&self.admin, "sm-app", false).await;
        let patch = serde_json::json!({"metadata": {"labels": {WEBHOOK_LABEL: self.selector}}});
        Api::<Namespace>::all(self.admin.clone())
            .patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("label namespace");
        cluster::service_account(&self.admin, &ns, "app").await;
        Api::<Pod>::namespaced(self.admin.clone(), &ns)
    }

    /// Deletes what is global to the apiserver (namespaces never finish deleting here).
    async fn cleanup(self) {
        let dp = DeleteParams::default();
        let _ = Api::<MutatingWebhookConfiguration>::all(self.admin.clone())
            .delete(&self.name, &dp)
            .await;
        let _ = Api::<ValidatingWebhookConfiguration>::all(self.admin.clone())
            .delete(&self.name, &dp)
            .await;
        let _ = Api::<ClusterRoleBinding>::all(self.admin.clone())
            .delete(&self.role, &dp)
            .await;
        let _ = Api::<ClusterRole>::all(self.admin.clone())
            .delete(&self.role, &dp)
            .await;
    }
}

async fn wait_ready(servers: &[&RunningServer]) {
    let start = Instant::now();
    while !servers.iter().all(|s| s.is_ready()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "every replica publishes its CA"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_publish_their_cas_with_patch_only_rbac() {
    let t = setup().await;
    let (env, admin, name, selector, client) = (&t.env, &t.admin, &t.name, &t.selector, &t.client);

    // Two replicas, started before their webhook configurations exist (as Helm may order it).
    let cfg = injector_config(env, name);
    assert!(
        cfg.server.tls_cert_file.is_none() && cfg.server.tls_key_file.is_none(),
        "self-managed TLS has no certificate or key file"
    );
    let a = RunningServer::start_with_client(cfg.clone(), client.clone())
        .await
        .expect("replica a starts");
    let b = RunningServer::start_with_client(cfg, client.clone())
        .await
        .expect("replica b starts");
    for s in [&a, &b] {
        // In memory only: the resolver has no files behind it.
        assert!(format!("{:?}", s.certs).contains("memory"), "{:?}", s.certs);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !a.is_ready() && !b.is_ready(),
        "not ready before the CA is published"
    );
    let readyz = get_readyz(a.health_addr).await;
    assert!(readyz.starts_with("HTTP/1.1 503"), "{readyz}");

    register_webhooks(
        admin,
        name,
        selector,
        a.https_addr.port(),
        b.https_addr.port(),
    )
    .await;
    wait_ready(&[&a, &b]).await;
    let readyz = get_readyz(a.health_addr).await;
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");

    // Both CAs are in every webhook's bundle of both configurations, and nothing else is.
    let all = bundles(admin, name).await;
    assert_eq!(all.len(), 3, "one mutating and two validating webhooks");
    let ca_a = served_ca(&a, &all[0]);
    let ca_b = served_ca(&b, &all[0]);
    assert_ne!(ca_a, ca_b, "each replica has its own CA");
    for bundle in &all {
        assert_eq!(bundle.len(), 2, "exactly the two replicas' CAs");
        assert!(bundle.contains(&ca_a) && bundle.contains(&ca_b));
    }

    // The guard the replicas rely on, exercised with their token: a write that carries a stale
    // resourceVersion is refused with 409, so no replica can overwrite a bundle it did not read.
    let stale = serde_json::json!([
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ""},
    ]);
    let stale = Patch::Json::<()>(serde_json::from_value(stale).expect("JSON patch"));
    let r = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .patch(name, &PatchParams::default(), &stale)
        .await;
    assert!(
        matches!(&r, Err(kube::Error::Api(s)) if s.code == 409),
        "a stale write must conflict: {r:?}"
    );

    // The apiserver trusts both self-made certificates.
    let pods = t.app_namespace().await;
    let app_ns = pods.namespace().unwrap_or_default().to_string();

    // Replica a, through the mutating configuration: the pod is mutated.
    until_admission(&pods, &pod("dry", &INJECT), "replica a injects", injected).await;
    let created = pods
        .create(&PostParams::default(), &pod("web", &INJECT))
        .await
        .expect("annotated pod is admitted");
    assert_eq!(
        injected(&Ok(created)),
        Some(()),
        "the stored pod has the sidecar"
    );
    // ... and a typo is rejected, with the closest valid key named.
    let typo = pods
        .create(
            &PostParams::default(),
            &pod(
                "typo",
                &[("hush.dev/inject", "true"), ("hush.dev/refesh", "5m")],
            ),
        )
        .await;
    let msg = format!("{typo:?}");
    assert!(
        typo.is_err() && msg.contains("hush.dev/refresh"),
        "typo rejected: {msg}"
    );

    // Replica b, through the validating configuration: a Deployment with a typo is rejected.
    let deploy: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "typo"},
        "spec": {
            "selector": {"matchLabels": {"app": "typo"}},
            "template": {
                "metadata": {
                    "labels": {"app": "typo"},
                    "annotations": {"hush.dev/injcet": "true"},
                },
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
        },
    }))
    .expect("deployment");
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &app_ns);
    let denied = deployments.create(&PostParams::default(), &deploy).await;
    let msg = format!("{denied:?}");
    assert!(
        denied.is_err() && msg.contains("hush.dev/inject"),
        "replica b rejects the typo: {msg}"
    );

    // Replica b through the mutating configuration too (as a Service would balance them).
    // A strategic merge patch: `webhooks` merges by name, so only this URL changes.
    let switch = serde_json::json!({"webhooks": [{
        "name": "pods.inject.hush.dev",
        "clientConfig": {"url": format!("https://127.0.0.1:{}/mutate", b.https_addr.port())},
    }]});
    Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .patch(name, &PatchParams::default(), &Patch::Strategic(switch))
        .await
        .expect("point the mutating webhook at replica b");
    assert_eq!(
        bundles(admin, name).await[0].len(),
        2,
        "the URL switch left the caBundle alone"
    );
    let before = b.metrics().encode();
    until_admission(&pods, &pod("dry-b", &INJECT), "replica b injects", |r| {
        let calls_b = b.metrics().encode();
        (injected(r).is_some() && calls_b != before).then_some(())
    })
    .await;

    a.shutdown().await;
    b.shutdown().await;
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_publishes_the_new_ca_first_and_drops_no_request() {
    let t = setup().await;
    // A 45 s lifetime (the config only takes days; the library takes any): renewal at about
    // 2/3, the new CA published 10 s before its certificate is served, all within the lifetime.
    let mut cfg = injector_config(&t.env, &t.name);
    if let Some(sm) = cfg.server.self_managed_tls.as_mut() {
        sm.validity = Duration::from_secs(45);
    }
    let a = RunningServer::start_with_client(cfg, t.client.clone())
        .await
        .expect("replica starts");
    let port = a.https_addr.port();
    register_webhooks(&t.admin, &t.name, &t.selector, port, port).await;
    wait_ready(&[&a]).await;
    let first = served_ca(&a, &bundles(&t.admin, &t.name).await[0]);
    let first_leaf = a.certs.current().cert[0].as_ref().to_vec();
    let pods = t.app_namespace().await;
    until_admission(
        &pods,
        &pod("warm", &INJECT),
        "the replica injects",
        injected,
    )
    .await;

    // Admission requests through the apiserver, back to back, for the whole rotation.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let (pods, stop) = (pods.clone(), Arc::clone(&stop));
        async move {
            let pp = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match pods.create(&pp, &pod("rot", &INJECT)).await {
                    r @ Ok(_) if injected(&r).is_some() => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed)
        }
    });

    let start = Instant::now();
    while a.certs.current().cert[0].as_ref() == first_leaf.as_slice() {
        assert!(a.is_ready(), "a replica stays ready while it renews");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the certificate is renewed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The old CA leaves the bundle once the new certificate is served; the new one is there.
    let start = Instant::now();
    loop {
        let all = bundles(&t.admin, &t.name).await;
        if all.iter().all(|b| b.len() == 1 && !b.contains(&first)) {
            let second = served_ca(&a, &all[0]);
            assert!(all.iter().all(|b| b == &vec![second.clone()]));
            break;
        }
        assert!(a.is_ready(), "a replica stays ready while it renews");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the old CA is retired: {} certificates",
            all[0].len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more requests against the final state, then stop the load.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = load.await.expect("load task");
    assert!(
        failed.is_empty(),
        "requests failed during rotation: {failed:?}"
    );
    assert!(
        ok > 20,
        "only {ok} requests went through during the rotation"
    );

    a.shutdown().await;
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_withdraws_its_ca_on_graceful_shutdown() {
    let t = setup().await;
    let cfg = injector_config(&t.env, &t.name);
    let a = RunningServer::start_with_client(cfg.clone(), t.client.clone())
        .await
        .expect("replica a starts");
    let b = RunningServer::start_with_client(cfg, t.client.clone())
        .await
        .expect("replica b starts");
    // The mutating webhook calls b, which stays; the validating ones call a, which goes.
    register_webhooks(
        &t.admin,
        &t.name,
        &t.selector,
        b.https_addr.port(),
        a.https_addr.port(),
    )
    .await;
    wait_ready(&[&a, &b]).await;
    let all = bundles(&t.admin, &t.name).await;
    let ca_a = served_ca(&a, &all[0]);
    let ca_b = served_ca(&b, &all[0]);
    for bundle in &all {
        assert_eq!(bundle.len(), 2, "both replicas' CAs");
    }
    let pods = t.app_namespace().await;
    until_admission(
        &pods,
        &pod("before", &INJECT),
        "replica b injects",
        injected,
    )
    .await;

    // The metrics of self-managed TLS: b wrote its CA into both configurations, and says when its
    // certificate expires (validityDays: 1). Labels carry the outcome only, no certificate data.
    let metrics = http_get(b.health_addr, "/metrics").await;
    let written = metric(
        &metrics,
        r#"hush_injector_ca_publications_total{outcome="written"}"#,
    );
    assert!(written >= 2.0, "b wrote both configurations:\n{metrics}");
    for line in metrics.lines() {
        if let Some(labels) = line.strip_prefix("hush_injector_ca_publications_total{") {
            let outcome = labels.split('}').next().unwrap_or_default();
            assert!(
                ["written", "unchanged", "conflict", "error"]
                    .iter()
                    .any(|o| outcome == format!(r#"outcome="{o}""#)),
                "only a bounded outcome label: {line}"
            );
        }
    }
    let expiry = metric(
        &metrics,
        "hush_injector_serving_cert_expiry_timestamp_seconds",
    );
    let in_a_day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        + 86_400.0;
    assert!(
        (expiry - in_a_day).abs() < 300.0,
        "the serving certificate expires in a day: {expiry} vs {in_a_day}"
    );

    // Graceful shutdown of a, with a request to a still in flight (its body held back): a keeps
    // its CA published until that request is answered, since the apiserver may still be calling
    // it; only after the drain does it withdraw.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (finish_tx, finish_rx) = std::sync::mpsc::channel();
    let slow = tokio::task::spawn_blocking({
        let (addr, ca) = (a.https_addr, ca_a.clone());
        move || slow_request(addr, ca, &started_tx, &finish_rx)
    });
    tokio::task::spawn_blocking(move || started_rx.recv())
        .await
        .expect("join")
        .expect("the slow request is sent");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shutdown = tokio::spawn(a.shutdown());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!shutdown.is_finished(), "a waits for its in-flight request");
    assert!(
        bundles(&t.admin, &t.name)
            .await
            .iter()
            .all(|b| b.contains(&ca_a)),
        "a's CA stays while a request to a is in flight"
    );
    finish_tx.send(()).expect("finish the slow request");
    let answer = slow.await.expect("join");
    assert!(answer.starts_with("HTTP/1.1 "), "answered: {answer:?}");
    shutdown.await.expect("a shuts down");

    // Once shutdown returns, a's CA is gone from every webhook, and b's is there.
    let all = bundles(&t.admin, &t.name).await;
    assert_eq!(all.len(), 3);
    for bundle in &all {
        assert!(!bundle.contains(&ca_a), "a withdrew its CA");
        assert_eq!(bundle, &vec![ca_b.clone()], "only b's CA is left");
    }
    // b still mutates pods: the apiserver verifies it against the smaller bundle.
    let before = b.metrics().encode();
    until_admission(
        &pods,
        &pod("after", &INJECT),
        "replica b still injects",
        |r| (injected(r).is_some() && b.metrics().encode() != before).then_some(()),
    )
    .await;
    let created = pods
        .create(&PostParams::default(), &pod("web-after", &INJECT))
        .await
        .expect("annotated pod is admitted after a left");
    assert_eq!(
        injected(&Ok(created)),
        Some(()),
        "the stored pod has the sidecar"
    );
    // a's task is stopped: nothing put its CA back meanwhile.
    assert!(
        bundles(&t.admin, &t.name)
            .await
            .iter()
            .all(|b| b == &vec![ca_b.clone()]),
        "a's CA stays withdrawn"
    );

    // The last replica withdraws too, leaving the bundles empty: its CA's key is gone, so nothing
    // could ever be verified with it, and the next replica publishes its own at start.
    b.shutdown().await;
    let all = bundles(&t.admin, &t.name).await;
    assert!(all.iter().all(Vec::is_empty), "empty bundles: {all:?}");

    t.cleanup().await;
}

/// POSTs to `/mutate` over TLS (trusting only `ca`) but holds the body back until `finish`, so the
/// request stays in flight; returns the answer's status line.
fn slow_request(
    addr: std::net::SocketAddr,
    ca: Vec<u8>,
    started: &std::sync::mpsc::Sender<()>,
    finish: &std::sync::mpsc::Receiver<()>,
) -> String {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca)).expect("CA parses");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let tcp = std::net::TcpStream::connect(addr).expect("connect replica a");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = b"{}";
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).expect("write the head");
    tls.flush().expect("flush");
    started.send(()).expect("signal");
    finish.recv().expect("wait for the signal");
    tls.write_all(body).expect("write the body");
    tls.flush().expect("flush");
    let mut out = Vec::new();
    // The server may close without close_notify: keep whatever was read.
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The value of the sample `name` (with its labels, if any) in a text exposition.
fn metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{exposition}"))
}

/// GET /readyz over plain HTTP/1.1; returns the raw response.
async fn get_readyz(addr: std::net::SocketAddr) -> String {
    http_get(addr, "/readyz").await
}

/// GET `path` over plain HTTP/1.1 from the health port; returns the raw response.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect health port");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    out
}
