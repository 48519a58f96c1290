//! Unit tests of the doctor's pure checks and rendering, on hand-built snapshots and on the chart's
//! own rendered manifest (`deploy/manifests/hush.yaml`), so a chart change that weakens the webhook
//! (a dropped exclusion or matchCondition) fails here.

use std::collections::BTreeMap;

use hush_sealed_format::format::Scope;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::checks::{self, Check, Report, Severity};
use super::gather::parse_injector_config;
use super::render;
use super::snapshot::{
    ClusterSealed, InjectorSettings, Labels, Read, RepoFile, RepoState, Snapshot, TlsProbe,
    WebhookEndpoint,
};

const CHART: &str = include_str!("../../../deploy/manifests/hush.yaml");
const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;
const IMAGE: &str = "registry.example.invalid/hush/hush-sidecar:0.1.0";
const R1: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const R2: &str = "age10mfpnzh5g3v773rfm8xqd0fdv6ns60z0722m25pegnr70hwc4ajq56sf8s";

/// One document of the rendered chart, by kind.
fn chart_doc(kind: &str) -> &'static str {
    CHART
        .split("\n---\n")
        .find(|d| d.contains(&format!("\nkind: {kind}\n")))
        .unwrap_or_else(|| panic!("the rendered chart has a {kind}"))
}

/// The chart's MutatingWebhookConfiguration, with a caBundle as an install would give it.
fn chart_webhook() -> MutatingWebhookConfiguration {
    let mut m: MutatingWebhookConfiguration =
        hush_sealed_format::yaml::parse(chart_doc("MutatingWebhookConfiguration"), "chart")
            .unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
    for w in m.webhooks.iter_mut().flatten() {
        w.client_config.ca_bundle = Some(ByteString(ca.cert.pem().into_bytes()));
    }
    m
}

/// The injector config file from the chart's ConfigMap.
fn chart_config() -> InjectorSettings {
    let doc = chart_doc("ConfigMap");
    let text: String = doc
        .split("config.yaml: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    parse_injector_config(&text, "ConfigMap hush-system/hush").unwrap()
}

fn ns_labels(name: &str, extra: &[(&str, &str)]) -> Read<Labels> {
    let mut l = Labels::from([("kubernetes.io/metadata.name".to_string(), name.to_string())]);
    for (k, v) in extra {
        l.insert(k.to_string(), v.to_string());
    }
    Read::Known(l)
}

/// A healthy snapshot of the chart's install: Service with one ready endpoint, a verified
/// certificate with a year left, kube-system and hush-system unlabelled, `shop` selected.
fn healthy() -> Snapshot {
    let mwc = chart_webhook();
    let mut endpoints = BTreeMap::new();
    for w in mwc.webhooks.iter().flatten() {
        endpoints.insert(
            w.name.clone(),
            WebhookEndpoint {
                service: Some(("hush-system".into(), "hush".into())),
                service_exists: Read::Known(true),
                ready: Read::Known(vec!["10.244.0.5:8443".into()]),
                tls: TlsProbe::Verified {
                    addr: "10.244.0.5:8443".into(),
                    not_after: NOW + 365 * DAY,
                },
            },
        );
    }
    Snapshot {
        webhook_name: "hush".into(),
        mutating: Some(mwc),
        endpoints,
        namespaces: BTreeMap::from([
            ("kube-system".to_string(), ns_labels("kube-system", &[])),
            ("hush-system".to_string(), ns_labels("hush-system", &[])),
            ("shop".to_string(), ns_labels("shop", &[])),
            ("legacy".to_string(), ns_labels("legacy", &[])),
        ]),
        injector_namespace: "hush-system".into(),
        injector: Read::Known(chart_config()),
        now: NOW,
        ..Snapshot::default()
    }
}

/// A pod of Deployment `shop` (through ReplicaSet `shop-5d9f`), annotated with `annotations`.
fn pod(
    ns: &str,
    name: &str,
    annotations: serde_json::Value,
    sidecar: Option<serde_json::Value>,
) -> Pod {
    let mut p = json!({
        "metadata": {
            "name": name, "namespace": ns, "annotations": annotations,
            "labels": {"app": "shop"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "shop-5d9f",
                                 "uid": "u1", "controller": true}]
        },
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    });
    if let Some(s) = sidecar {
        p["spec"]["initContainers"] = json!([s]);
    }
    serde_json::from_value(p).unwrap()
}

/// The sidecar container the chart's injector would write, with `HUSH_CONFIG` built from the
/// chart's operator settings (plus what the injector fills in per pod).
fn sidecar(image: &str, operator_patch: serde_json::Value) -> serde_json::Value {
    let mut operator = chart_config().operator.unwrap();
    operator["allowedRoles"] = json!(["shop-orders"]);
    operator["fsGroup"] = json!(2000);
    for (k, v) in operator_patch.as_object().unwrap() {
        operator[k] = v.clone();
    }
    let config = json!({"version": 1, "operator": operator, "files": []});
    json!({"name": "hush-sidecar", "image": image, "restartPolicy": "Always",
           "env": [{"name": "HUSH_CONFIG", "value": config.to_string()}]})
}

fn with_deployment(s: &mut Snapshot, ns: &str) {
    s.controllers.insert(
        (ns.into(), "ReplicaSet".into(), "shop-5d9f".into()),
        Some(("Deployment".into(), "shop".into())),
    );
}

fn only(report: &Report, check: Check) -> Vec<&checks::Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.check == check)
        .collect()
}

#[test]
fn the_charts_webhook_with_a_verified_certificate_has_no_findings() {
    let r = checks::findings(&healthy());
    assert_eq!(r.findings, vec![], "{r:#?}");
    let notes: Vec<&str> = r.notes.iter().map(|n| n.message.as_str()).collect();
    assert!(
        notes.iter().any(|n| n.contains("expires in 365 days")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n == &"namespace kube-system is excluded"),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n == &"namespace hush-system is excluded"),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("has-hush-annotation")),
        "{notes:?}"
    );
}

#[test]
fn a_pod_that_missed_injection_names_its_deployment_and_the_restart() {
    let mut s = healthy();
    with_deployment(&mut s, "shop");
    s.pods.push(pod(
        "shop",
        "shop-5d9f-abcde",
        json!({"hush.dev/inject": "true"}),
        None,
    ));
    // Not annotated, or switched off: not a finding.
    s.pods.push(pod("shop", "other", json!({}), None));
    s.pods.push(pod(
        "shop",
        "off",
        json!({"hush.dev/inject": "false"}),
        None,
    ));
    let r = checks::findings(&s);
    let missed = only(&r, Check::MissedInjection);
    assert_eq!(missed.len(), 1, "{r:#?}");
    let f = missed[0];
    assert_eq!(f.object, "pod shop/shop-5d9f-abcde");
    assert_eq!(f.owner.as_deref(), Some("deployment/shop"));
    assert_eq!(f.severity, Severity::Error);
    // The namespace is selected (the chart's default selector): a restart is the whole fix.
    assert_eq!(f.fix, "kubectl -n shop rollout restart deployment/shop");
    assert!(
        f.problem.contains("no hush-sidecar container"),
        "{}",
        f.problem
    );
}

#[test]
fn a_pod_in_a_namespace_the_webhook_does_not_select_is_told_to_label_it_first() {
    let mut s = healthy();
    // As scripts/install-hush installs it: only namespaces labelled hush.dev/enabled=true.
    for w in s.mutating.as_mut().unwrap().webhooks.iter_mut().flatten() {
        let sel = w.namespace_selector.as_mut().unwrap();
        sel.match_expressions.get_or_insert_default().push(
            serde_json::from_value(
                json!({"key": "hush.dev/enabled", "operator": "In", "values": ["true"]}),
            )
            .unwrap(),
        );
    }
    with_deployment(&mut s, "legacy");
    s.pods.push(pod(
        "legacy",
        "shop-5d9f-x",
        json!({"hush.dev/inject": "true"}),
        None,
    ));
    let r = checks::findings(&s);
    let f = only(&r, Check::MissedInjection)[0];
    assert!(
        f.problem
            .contains("namespaceSelector does not select namespace legacy"),
        "{}",
        f.problem
    );
    assert_eq!(
        f.fix,
        "kubectl label namespace legacy hush.dev/enabled=true; then kubectl -n legacy rollout \
         restart deployment/shop"
    );
    // The injector's own namespace is excluded by name: no label helps there.
    s.pods = vec![pod(
        "hush-system",
        "p",
        json!({"hush.dev/inject": "true"}),
        None,
    )];
    let r = checks::findings(&s);
    let f = only(&r, Check::MissedInjection)[0];
    assert!(
        f.fix.contains("hush-system is excluded by name"),
        "{}",
        f.fix
    );
}

#[test]
fn owners_give_the_right_command() {
    let mut s = healthy();
    let bare: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"}})).unwrap();
    let (owner, fix) = checks::owner_and_fix(&s, &bare);
    assert_eq!(owner, None);
    assert!(fix.contains("replace --force"), "{fix}");
    let of = |kind: &str, name: &str| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "v1", "kind": kind, "name": name, "uid": "u", "controller": true}]}}))
        .unwrap()
    };
    assert_eq!(
        checks::owner_and_fix(&s, &of("StatefulSet", "db")),
        (
            Some("statefulset/db".into()),
            "kubectl -n shop rollout restart statefulset/db".into()
        )
    );
    s.controllers.insert(
        ("shop".into(), "Job".into(), "nightly-123".into()),
        Some(("CronJob".into(), "nightly".into())),
    );
    let (owner, fix) = checks::owner_and_fix(&s, &of("Job", "nightly-123"));
    assert_eq!(owner.as_deref(), Some("cronjob/nightly"));
    assert!(fix.contains("create job --from=cronjob/nightly"), "{fix}");
    // A ReplicaSet whose Deployment is unknown: delete the pod, the ReplicaSet re-creates it.
    let (owner, fix) = checks::owner_and_fix(&s, &of("ReplicaSet", "rs-1"));
    assert_eq!(owner.as_deref(), Some("replicaset/rs-1"));
    assert_eq!(
        fix,
        "kubectl -n shop delete pod p (its replicaset/rs-1 re-creates it)"
    );
}

#[test]
fn an_injected_pod_is_current_until_the_image_or_the_operator_settings_change() {
    let mut s = healthy();
    with_deployment(&mut s, "shop");
    let annotations = json!({"hush.dev/inject": "true", "hush.dev/status": "injected"});
    s.pods.push(pod(
        "shop",
        "a",
        annotations.clone(),
        Some(sidecar(IMAGE, json!({}))),
    ));
    assert_eq!(checks::findings(&s).findings, vec![]);

    s.pods.push(pod(
        "shop",
        "b",
        annotations.clone(),
        Some(sidecar("hush-sidecar:0.0.9", json!({}))),
    ));
    s.pods.push(pod(
        "shop",
        "c",
        annotations.clone(),
        Some(sidecar(IMAGE, json!({"metricsPort": 9200}))),
    ));
    let r = checks::findings(&s);
    let outdated = only(&r, Check::OutdatedSidecar);
    assert_eq!(outdated.len(), 2, "{r:#?}");
    assert_eq!(outdated[0].object, "pod shop/b");
    assert!(
        outdated[0]
            .problem
            .contains("sidecar image is hush-sidecar:0.0.9"),
        "{}",
        outdated[0].problem
    );
    assert_eq!(
        outdated[0].fix,
        "kubectl -n shop rollout restart deployment/shop"
    );
    assert!(
        outdated[1]
            .problem
            .ends_with("differ from the injector's current ones in: metricsPort"),
        "{}",
        outdated[1].problem
    );
    assert_eq!(outdated[1].severity, Severity::Warning);

    // A pod in a namespace this webhook does not select was injected by another one: a note.
    let mut other = healthy();
    other.pods = vec![pod(
        "hush-system",
        "e",
        annotations.clone(),
        Some(sidecar("another-injector:1", json!({}))),
    )];
    let r = checks::findings(&other);
    assert_eq!(r.findings, vec![]);
    assert!(
        r.notes.iter().any(|n| n.message
            == "1 (e.g. pod hush-system/e) are in namespaces or have labels webhook hush does \
                not select: not compared with its injector's configuration"),
        "{r:#?}"
    );

    // Another HUSH_CONFIG version.
    let mut old = sidecar(IMAGE, json!({}));
    old["env"][0]["value"] = json!(r#"{"version":0}"#);
    s.pods = vec![pod("shop", "d", annotations, Some(old))];
    let r = checks::findings(&s);
    assert!(
        only(&r, Check::OutdatedSidecar)[0]
            .problem
            .contains("HUSH_CONFIG is version 0"),
        "{r:#?}"
    );
}

#[test]
fn operator_drift_ignores_what_the_injector_fills_in_per_pod() {
    let now = json!({"metricsPort": 9102, "vault": {"addr": "https://v:8200"}});
    let pod = json!({"metricsPort": 9102, "allowedRoles": ["a"], "allowSignal": true, "fsGroup": 5,
                     "vault": {"addr": "https://v:8200", "caPem": "PEM"}});
    // caPem from the injector's vault.caFile is invisible to doctor: not a drift.
    assert_eq!(
        checks::operator_drift(Some(&pod), &now, true),
        Vec::<String>::new()
    );
    assert_eq!(
        checks::operator_drift(Some(&pod), &now, false),
        vec!["vault"]
    );
    let moved = json!({"metricsPort": 9102, "vault": {"addr": "https://new:8200"}});
    assert_eq!(
        checks::operator_drift(Some(&pod), &moved, true),
        vec!["vault"]
    );
}

#[test]
fn webhook_problems_are_findings_and_an_unreachable_endpoint_is_a_note() {
    let webhook_findings = |s: &Snapshot| {
        checks::findings(s)
            .findings
            .into_iter()
            .filter(|f| f.check == Check::Webhook)
            .map(|f| (f.severity, f.problem))
            .collect::<Vec<_>>()
    };
    let set_tls = |s: &mut Snapshot, tls: TlsProbe| {
        for ep in s.endpoints.values_mut() {
            ep.tls = tls.clone();
        }
    };

    let mut s = healthy();
    set_tls(
        &mut s,
        TlsProbe::Rejected {
            addr: "10.244.0.5:8443".into(),
            reason: "invalid certificate: UnknownIssuer".into(),
        },
    );
    let f = webhook_findings(&s);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].1.starts_with("the caBundle does not verify the serving certificate at 10.244.0.5:8443 (invalid certificate: UnknownIssuer)"), "{f:?}");

    set_tls(
        &mut s,
        TlsProbe::Verified {
            addr: "a:1".into(),
            not_after: NOW + 10 * DAY + 5,
        },
    );
    let f = webhook_findings(&s);
    assert_eq!(
        f,
        vec![(
            Severity::Warning,
            "the serving certificate at a:1 expires in 10 day(s)".to_string()
        )]
    );

    set_tls(
        &mut s,
        TlsProbe::Unreachable {
            addr: "a:1".into(),
            reason: "timed out".into(),
        },
    );
    assert_eq!(webhook_findings(&s), vec![]);
    assert!(
        checks::findings(&s)
            .notes
            .iter()
            .any(|n| n.message.contains("not reachable from here"))
    );

    let mut s = healthy();
    for w in s.mutating.as_mut().unwrap().webhooks.iter_mut().flatten() {
        w.failure_policy = Some("Ignore".into());
        w.match_conditions = None;
        w.namespace_selector = None;
        w.client_config.ca_bundle = None;
    }
    for ep in s.endpoints.values_mut() {
        ep.ready = Read::Known(vec![]);
    }
    let f = webhook_findings(&s);
    let has = |sev: Severity, text: &str| f.iter().any(|(s, p)| *s == sev && p.contains(text));
    assert!(has(Severity::Error, "has no ready endpoints"), "{f:?}");
    assert!(has(Severity::Error, "caBundle is empty"), "{f:?}");
    assert!(has(Severity::Warning, "failurePolicy is Ignore"), "{f:?}");
    assert!(
        has(Severity::Error, "selects namespace kube-system"),
        "{f:?}"
    );
    assert!(
        has(Severity::Error, "selects namespace hush-system"),
        "{f:?}"
    );
    assert!(has(Severity::Warning, "has no matchConditions"), "{f:?}");

    let mut s = healthy();
    s.mutating = None;
    let f = webhook_findings(&s);
    assert_eq!(f.len(), 1);
    assert!(f[0].1.starts_with("not found"), "{f:?}");
}

#[test]
fn sealed_references_need_their_configmap_key_and_identity() {
    let mut s = healthy();
    let a = json!({"hush.dev/inject": "true",
                   "hush.dev/secret-db": "sealed:db/password",
                   "hush.dev/secret-api": "sealed:api/token",
                   "hush.dev/secret-cert": "sealed:db/cert",
                   "hush.dev/secret-v": "vault:secret/app"});
    s.pods.push(pod(
        "shop",
        "p1",
        a.clone(),
        Some(sidecar(IMAGE, json!({}))),
    ));
    s.pods
        .push(pod("shop", "p2", a, Some(sidecar(IMAGE, json!({})))));
    s.configmaps.insert(
        ("shop".into(), "db".into()),
        Read::Known(Some(vec!["_hush".into(), "password".into()])),
    );
    s.configmaps
        .insert(("shop".into(), "api".into()), Read::Known(None));
    s.identities.insert("shop".into(), Read::Known(false));
    let r = checks::findings(&s);
    let sealed: Vec<(&str, &str)> = only(&r, Check::Sealed)
        .iter()
        .map(|f| (f.object.as_str(), f.problem.as_str()))
        .collect();
    assert_eq!(
        sealed,
        vec![
            (
                "ConfigMap shop/api",
                "missing, but sealed:api/token is used by pod p1 and 1 more: the sidecar cannot start"
            ),
            (
                "ConfigMap shop/db",
                "has no key cert (it has: password), but sealed:db/cert is used by pod p1 and 1 more"
            ),
            (
                "namespace shop",
                "pods use sealed: references but the Secret hush-identity is missing: their sidecars cannot decrypt"
            ),
        ]
    );
    assert!(
        only(&r, Check::Sealed)[2]
            .fix
            .starts_with("hush keygen --namespace shop | kubectl apply -f -")
    );

    s.identities
        .insert("shop".into(), Read::Unknown("forbidden".into()));
    let r = checks::findings(&s);
    assert_eq!(only(&r, Check::Sealed).len(), 2);
    assert!(
        r.notes
            .iter()
            .any(|n| n.object == "namespace shop" && n.message.contains("forbidden"))
    );
}

#[test]
fn sealed_references_are_found_with_the_parser() {
    let a: BTreeMap<String, String> = [
        ("hush.dev/secret-a", "sealed:cm/k"),
        ("hush.dev/secret-b", "sealed:bad"),
        ("hush.dev/secret-c", "aws:x"),
        ("hush.dev/template-a", "sealed:no/no"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        checks::sealed_refs(&a),
        vec![("cm".to_string(), "k".to_string())]
    );
}

#[test]
fn repo_drift_in_scope_and_recipients_is_reported_with_the_right_fix() {
    let file = |recipients: Vec<&str>, rule: Vec<&str>| RepoFile {
        path: "clusters/prod/db.sealed.yaml".into(),
        namespace: "prod".into(),
        name: "db".into(),
        scope: Scope::Strict,
        recipients: recipients.into_iter().map(String::from).collect(),
        rule_recipients: Ok(rule.into_iter().map(String::from).collect()),
    };
    let cluster = |scope, recipients: Vec<&str>| ClusterSealed {
        namespace: "prod".into(),
        name: "db".into(),
        meta: Ok((scope, recipients.into_iter().map(String::from).collect())),
    };
    let mut s = healthy();
    s.repo = Some(RepoState {
        dir: ".".into(),
        files: vec![file(vec![R1, R2], vec![R1, R2])],
        cluster: vec![cluster(Scope::Namespace, vec![R1])],
    });
    let r = checks::findings(&s);
    let f = only(&r, Check::Sealed);
    assert_eq!(f.len(), 2, "{r:#?}");
    assert_eq!(
        f[0].problem,
        "has scope namespace in the cluster but strict in clusters/prod/db.sealed.yaml"
    );
    assert_eq!(
        f[1].problem,
        format!(
            "its recipients differ from .hush.yaml's rule for clusters/prod/db.sealed.yaml: it lacks {R2}"
        )
    );
    assert_eq!(
        f[1].fix,
        "clusters/prod/db.sealed.yaml is up to date: kubectl apply -f clusters/prod/db.sealed.yaml"
    );

    // The file in Git is stale too: rotate it first.
    s.repo = Some(RepoState {
        dir: ".".into(),
        files: vec![file(vec![R1], vec![R2])],
        cluster: vec![cluster(Scope::Strict, vec![R1])],
    });
    let r = checks::findings(&s);
    let f = only(&r, Check::Sealed);
    assert_eq!(f.len(), 1);
    assert!(
        f[0].fix
            .starts_with("hush rotate clusters/prod/db.sealed.yaml"),
        "{}",
        f[0].fix
    );
    assert!(
        f[0].problem
            .ends_with(&format!("it lacks {R2} and also has {R1}")),
        "{}",
        f[0].problem
    );
}

#[test]
fn selectors_follow_the_apiserver() {
    let sel = |v: serde_json::Value| serde_json::from_value(v).unwrap();
    let labels = Labels::from([("a".to_string(), "1".to_string())]);
    assert!(checks::selector_matches(None, &labels));
    assert!(checks::selector_matches(Some(&sel(json!({}))), &labels));
    assert!(checks::selector_matches(
        Some(&sel(json!({"matchLabels": {"a": "1"}}))),
        &labels
    ));
    assert!(!checks::selector_matches(
        Some(&sel(json!({"matchLabels": {"a": "2"}}))),
        &labels
    ));
    let expr = |op: &str, values: serde_json::Value| {
        sel(json!({"matchExpressions": [{"key": "b", "operator": op, "values": values}]}))
    };
    assert!(checks::selector_matches(
        Some(&expr("NotIn", json!(["x"]))),
        &labels
    ));
    assert!(!checks::selector_matches(
        Some(&expr("In", json!(["x"]))),
        &labels
    ));
    assert!(checks::selector_matches(
        Some(&expr("DoesNotExist", json!(null))),
        &labels
    ));
    assert!(!checks::selector_matches(
        Some(&expr("Exists", json!(null))),
        &labels
    ));
    assert_eq!(checks::days_left(NOW + DAY - 1, NOW), 0);
    assert_eq!(checks::days_left(NOW - 1, NOW), -1);
}

#[test]
fn the_table_and_the_json_carry_the_same_findings() {
    let mut s = healthy();
    with_deployment(&mut s, "shop");
    s.pods.push(pod(
        "shop",
        "shop-5d9f-abcde",
        json!({"hush.dev/inject": "true"}),
        None,
    ));
    let r = checks::findings(&s);
    let table = render::table(&r, Some("shop"), "hush");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("SEVERITY  CHECK             OBJECT"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(
            "ERROR     missed-injection  pod shop/shop-5d9f-abcde (deployment/shop)  annotated"
        ),
        "{table}"
    );
    assert_eq!(
        lines[2],
        "          fix: kubectl -n shop rollout restart deployment/shop"
    );
    assert!(
        table.ends_with("1 finding(s): webhook hush, 1 pod(s) in namespace shop.\n"),
        "{table}"
    );

    let doc: serde_json::Value =
        serde_json::from_str(&render::json(&r, Some("shop"), "hush")).unwrap();
    assert_eq!(doc["namespace"], "shop");
    assert_eq!(doc["podsChecked"], 1);
    assert_eq!(doc["findings"][0]["check"], "missed-injection");
    assert_eq!(doc["findings"][0]["severity"], "error");
    assert_eq!(doc["findings"][0]["owner"], "deployment/shop");
    assert_eq!(
        doc["findings"][0]["fix"],
        "kubectl -n shop rollout restart deployment/shop"
    );
    assert!(doc["notes"].as_array().is_some_and(|n| !n.is_empty()));

    let clean = render::table(&checks::findings(&healthy()), None, "hush");
    assert!(
        clean.starts_with("No findings: webhook hush, 0 pod(s) in all namespaces.\n"),
        "{clean}"
    );
}

#[test]
fn the_charts_config_gives_the_sidecar_image_and_operator_settings() {
    let c = chart_config();
    assert_eq!(c.sidecar_image.as_deref(), Some(IMAGE));
    assert_eq!(c.operator.as_ref().unwrap()["metricsPort"], 9102);
    assert!(!c.vault_ca_file);
    let with_file =
        parse_injector_config("vault:\n  caFile: /etc/ca.pem\nnewSection: {}\n", "x").unwrap();
    assert!(
        with_file.vault_ca_file,
        "unknown sections of a newer injector are ignored"
    );
    assert!(parse_injector_config("sidecar: [", "ConfigMap a/b").is_err());
}
