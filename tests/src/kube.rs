//! The injector wired into the real kube-apiserver, for end-to-end tests and the demo: a CA and a
//! serving certificate for 127.0.0.1 (rcgen), the injector started in process on a free loopback
//! port, and a MutatingWebhookConfiguration plus a ValidatingWebhookConfiguration pointing at it
//! with `clientConfig.url` and `caBundle`. Webhook configurations are global to the apiserver, so
//! each fixture uses unique configuration names and a `namespaceSelector` on a label that only its
//! own namespaces carry; parallel tests never see each other's webhooks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hush_injector::RawConfig;
use hush_injector::RunningServer;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::env::{TestEnv, unique_name};

/// The label a fixture's namespaces carry so that only its webhooks apply to them.
pub const WEBHOOK_LABEL: &str = "hush.dev/webhook-test";

/// A CA and a serving certificate for 127.0.0.1, in PEM.
#[derive(Clone)]
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestPki { .. }")
    }
}

impl TestPki {
    /// A fresh CA and a leaf for `127.0.0.1` and `localhost`.
    pub fn new() -> TestPki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "hush test webhook CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");
        let key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params")
            .signed_by(&key, &ca)
            .expect("sign leaf");
        TestPki {
            ca_pem: ca.pem(),
            cert_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// A running injector registered with the apiserver.
pub struct InjectorFixture {
    pub server: Option<RunningServer>,
    pub pki: TestPki,
    /// Value of [`WEBHOOK_LABEL`] that selects this fixture's webhooks.
    pub selector: String,
    pub mutating_name: String,
    pub validating_name: String,
    pub dir: PathBuf,
    client: Client,
}

impl std::fmt::Debug for InjectorFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InjectorFixture")
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

fn rule(group: &str, resources: &[&str], ops: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![group.to_string()]),
        api_versions: Some(vec!["v1".to_string()]),
        operations: Some(ops.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        scope: Some("Namespaced".to_string()),
    }
}

/// CEL: the given annotations map has any `hush.dev/` key (so a misspelt opt-in still reaches
/// the parser, which names the closest valid key).
fn has_hush_annotation(meta: &str) -> String {
    format!("has({meta}.annotations) && {meta}.annotations.exists(k, k.startsWith('hush.dev/'))")
}

/// The webhook configurations the chart renders, both named `name`: Pods go to `mutate`;
/// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs to `validate` (two
/// webhooks). `matchConditions` send only objects with a `hush.dev/` annotation, and a
/// `namespaceSelector` on [`WEBHOOK_LABEL`]`=selector` keeps parallel tests apart. Created in the
/// apiserver with `client`.
pub async fn create_webhook_configurations(
    client: &Client,
    name: &str,
    selector: &str,
    mutate: WebhookClientConfig,
    validate: WebhookClientConfig,
) {
    let ns_selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            WEBHOOK_LABEL.to_string(),
            selector.to_string(),
        )])),
        match_expressions: None,
    };
    let mutating = MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: "pods.inject.hush.dev".into(),
            admission_review_versions: vec!["v1".into()],
            client_config: mutate,
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            match_conditions: Some(vec![MatchCondition {
                name: "hush-annotations".into(),
                expression: has_hush_annotation("object.metadata"),
            }]),
            namespace_selector: Some(ns_selector.clone()),
            reinvocation_policy: Some("IfNeeded".into()),
            rules: Some(vec![rule("", &["pods"], &["CREATE"])]),
            side_effects: "None".into(),
            timeout_seconds: Some(10),
            ..MutatingWebhook::default()
        }]),
    };
    let template_meta = "object.spec.template.metadata";
    let cron_meta = "object.spec.jobTemplate.spec.template.metadata";
    let validating = ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![
            ValidatingWebhook {
                name: "workloads.validate.hush.dev".into(),
                admission_review_versions: vec!["v1".into()],
                client_config: validate.clone(),
                failure_policy: Some("Fail".into()),
                match_conditions: Some(vec![MatchCondition {
                    name: "hush-annotations".into(),
                    expression: format!(
                        "has(object.spec.template.metadata) && {}",
                        has_hush_annotation(template_meta)
                    ),
                }]),
                namespace_selector: Some(ns_selector.clone()),
                rules: Some(vec![
                    rule(
                        "apps",
                        &["deployments", "statefulsets", "daemonsets", "replicasets"],
                        &["CREATE", "UPDATE"],
                    ),
                    rule("batch", &["jobs"], &["CREATE", "UPDATE"]),
                ]),
                side_effects: "None".into(),
                timeout_seconds: Some(10),
                ..ValidatingWebhook::default()
            },
            ValidatingWebhook {
                name: "cronjobs.validate.hush.dev".into(),
                admission_review_versions: vec!["v1".into()],
                client_config: validate.clone(),
                failure_policy: Some("Fail".into()),
                match_conditions: Some(vec![MatchCondition {
                    name: "hush-annotations".into(),
                    expression: format!(
                        "has(object.spec.jobTemplate.spec.template.metadata) && {}",
                        has_hush_annotation(cron_meta)
                    ),
                }]),
                namespace_selector: Some(ns_selector),
                rules: Some(vec![rule("batch", &["cronjobs"], &["CREATE", "UPDATE"])]),
                side_effects: "None".into(),
                timeout_seconds: Some(10),
                ..ValidatingWebhook::default()
            },
        ]),
    };
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &mutating)
        .await
        .unwrap_or_else(|e| panic!("create MutatingWebhookConfiguration: {e}"));
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &validating)
        .await
        .unwrap_or_else(|e| panic!("create ValidatingWebhookConfiguration: {e}"));
}

impl InjectorFixture {
    /// Starts the injector with `config_yaml` (`sidecar`, `operator`, ... sections, usually from
    /// [`crate::operator::injector_yaml`]; the server section is filled in here) and registers both
    /// webhooks, selected by a unique namespace label.
    pub async fn start(env: &TestEnv, client: &Client, config_yaml: &str) -> InjectorFixture {
        let pki = TestPki::new();
        let dir = std::env::temp_dir().join(unique_name("hush-injector"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("tls.crt"), &pki.cert_pem).expect("write cert");
        std::fs::write(dir.join("tls.key"), &pki.key_pem).expect("write key");
        let yaml = format!(
            "server:\n  listen: 127.0.0.1:0\n  healthListen: 127.0.0.1:0\n  tlsCertFile: {}\n  tlsKeyFile: {}\n{config_yaml}",
            dir.join("tls.crt").display(),
            dir.join("tls.key").display()
        );
        let cfg = RawConfig::from_yaml(&yaml, "fixture")
            .and_then(RawConfig::build)
            .unwrap_or_else(|e| panic!("injector config: {e}"));
        let server = RunningServer::start(cfg).await.expect("injector starts");
        let port = server.https_addr.port();
        let selector = unique_name("wh");
        let ca_bundle = ByteString(pki.ca_pem.clone().into_bytes());
        let client_config = |path: &str| WebhookClientConfig {
            ca_bundle: Some(ca_bundle.clone()),
            url: Some(format!("https://127.0.0.1:{port}{path}")),
            service: None,
        };
        let mutating_name = format!("hush-{selector}");
        let validating_name = mutating_name.clone();
        create_webhook_configurations(
            client,
            &mutating_name,
            &selector,
            client_config("/mutate"),
            client_config("/validate"),
        )
        .await;
        let _ = env;
        InjectorFixture {
            server: Some(server),
            pki,
            selector,
            mutating_name,
            validating_name,
            dir,
            client: client.clone(),
        }
    }

    /// Labels a namespace so this fixture's webhooks apply to it.
    pub async fn select_namespace(&self, ns: &str) {
        let patch = serde_json::json!({"metadata": {"labels": {WEBHOOK_LABEL: self.selector}}});
        Api::<Namespace>::all(self.client.clone())
            .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("label namespace {ns}: {e}"));
    }

    /// Waits until the apiserver calls our mutating webhook for `ns` (configuration changes reach
    /// the apiserver's admission chain asynchronously): a server-side dry-run of a pod with a
    /// misspelt annotation must come back denied with our message.
    pub async fn wait_active(&self, ns: &str, service_account: &str) {
        use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("hush-webhook-probe".into()),
                annotations: Some(BTreeMap::from([(
                    "hush.dev/injcet".to_string(),
                    "true".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                service_account_name: Some(service_account.into()),
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("busybox".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        };
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns);
        let pp = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        for _ in 0..300 {
            if let Err(kube::Error::Api(e)) = pods.create(&pp, &pod).await
                && e.message.contains("hush.dev/inject")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the apiserver never called the hush webhook for namespace {ns}");
    }

    /// Deletes both webhook configurations and stops the injector.
    pub async fn cleanup(mut self) {
        let dp = DeleteParams::default();
        let _ = Api::<MutatingWebhookConfiguration>::all(self.client.clone())
            .delete(&self.mutating_name, &dp)
            .await;
        let _ = Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
            .delete(&self.validating_name, &dp)
            .await;
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pod YAML that passes Pod Security "restricted" on its own (non-root, no privilege escalation,
/// no capabilities, RuntimeDefault seccomp), with ServiceAccount `app`, one app container that
/// reads `/var/run/secrets/hush/db`, and `annotations` (values quoted as JSON strings). A
/// scheduling gate keeps it off the real node: only its admission and stored spec matter (the pod
/// runner runs its sidecar where a test needs that).
pub fn restricted_pod_yaml(name: &str, annotations: &[(&str, &str)]) -> String {
    let mut ann = String::new();
    for (k, v) in annotations {
        ann.push_str(&format!(
            "    {k}: {}\n",
            serde_json::to_string(v).expect("a string is JSON")
        ));
    }
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations:
{ann}spec:
  schedulingGates:
  - name: hush.dev/admission-only
  serviceAccountName: app
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile:
      type: RuntimeDefault
  containers:
  - name: app
    image: registry.example/app:1
    command: ["/bin/sh", "-c", "cat /var/run/secrets/hush/db"]
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
"#
    )
}
