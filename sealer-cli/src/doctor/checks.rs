//! The rules of `hush doctor`, as pure functions of a [`Snapshot`]: no IO, no clock, so every rule
//! is unit-tested with a hand-built snapshot. Each [`Finding`] names the object and gives the
//! command or change that fixes it; what is fine, or could not be checked, is a [`Note`]. The
//! annotations are read with the parser's own pieces (`hush_config::annotations`,
//! `SourceRef::parse`) and the pod-spec names with `hush_contract`, never re-spelled here.

use std::collections::{BTreeMap, BTreeSet};

use hush_config::{CONFIG_VERSION, OperatorSettings, SourceRef, annotations};
use hush_contract::{IDENTITY_SECRET, SIDECAR_CONTAINER, env as vars};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Serialize;

use super::snapshot::{
    ClusterSealed, InjectorSettings, Labels, Read, RepoFile, Snapshot, TlsProbe, WebhookEndpoint,
};

/// Days before expiry from which a serving certificate is a finding.
pub(crate) const EXPIRY_WARNING_DAYS: i64 = 30;
/// The namespace Kubernetes' own components live in; a webhook must never select it.
pub(crate) const KUBE_SYSTEM: &str = "kube-system";
/// Label the apiserver sets on every namespace, holding its name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Check {
    /// Webhook configuration, Service, TLS.
    Webhook,
    /// An annotated pod without the sidecar.
    MissedInjection,
    /// A sidecar injected with another image or configuration than the injector's current one.
    OutdatedSidecar,
    /// A `sealed:` reference or a sealed ConfigMap.
    Sealed,
}

impl Check {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Check::Webhook => "webhook",
            Check::MissedInjection => "missed-injection",
            Check::OutdatedSidecar => "outdated-sidecar",
            Check::Sealed => "sealed",
        }
    }
}

/// How bad a finding is. Both make `hush doctor` exit 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    /// Pods run without their secrets, or soon will.
    Error,
    /// A risk or a drift that has not broken anything yet.
    Warning,
}

/// One problem, the object it is about, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Finding {
    pub(crate) check: Check,
    pub(crate) severity: Severity,
    /// `pod ns/name`, `MutatingWebhookConfiguration name`, ...
    pub(crate) object: String,
    /// The workload that owns the pod, as `kubectl` spells it (`deployment/shop`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) owner: Option<String>,
    pub(crate) problem: String,
    pub(crate) fix: String,
}

/// Something checked and fine, or something that could not be checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Note {
    pub(crate) object: String,
    pub(crate) message: String,
}

/// The outcome of all checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    pub(crate) findings: Vec<Finding>,
    pub(crate) notes: Vec<Note>,
    /// Pods looked at.
    pub(crate) pods_checked: usize,
}

impl Report {
    fn finding(
        &mut self,
        check: Check,
        severity: Severity,
        object: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> &mut Finding {
        self.findings.push(Finding {
            check,
            severity,
            object: object.into(),
            owner: None,
            problem: problem.into(),
            fix: fix.into(),
        });
        self.findings.last_mut().expect("a finding was just pushed")
    }

    fn note(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.notes.push(Note {
            object: object.into(),
            message: message.into(),
        });
    }
}

/// Runs every check.
pub(crate) fn findings(s: &Snapshot) -> Report {
    let mut r = Report {
        pods_checked: s.pods.len(),
        ..Report::default()
    };
    check_webhooks(s, &mut r);
    check_pods(s, &mut r);
    check_sealed_refs(s, &mut r);
    if let Some(repo) = &s.repo {
        r.note(
            format!("--repo {}", repo.dir),
            format!(
                "{} sealed file(s) compared with {} sealed ConfigMap(s) in the cluster",
                repo.files.len(),
                repo.cluster.len()
            ),
        );
        check_repo(&repo.files, &repo.cluster, &mut r);
    }
    r.findings
        .sort_by(|a, b| (a.check, a.severity, &a.object).cmp(&(b.check, b.severity, &b.object)));
    r
}

// ---------------------------------------------------------------------------------------------
// Webhook health

fn check_webhooks(s: &Snapshot, r: &mut Report) {
    let object = format!("MutatingWebhookConfiguration {}", s.webhook_name);
    let Some(mwc) = &s.mutating else {
        r.finding(
            Check::Webhook,
            Severity::Error,
            &object,
            "not found: no pod is injected",
            "install Hush (helm install hush deploy/helm/hush -n hush-system), or pass --webhook \
             NAME (kubectl get mutatingwebhookconfigurations)",
        );
        return;
    };
    let webhooks = mwc.webhooks.as_deref().unwrap_or_default();
    if webhooks.is_empty() {
        r.finding(
            Check::Webhook,
            Severity::Error,
            &object,
            "has no webhooks: no pod is injected",
            "re-install the chart (helm upgrade --install hush deploy/helm/hush -n hush-system)",
        );
    }
    for w in webhooks {
        let object = format!("{object} (webhook {})", w.name);
        let ep = s.endpoints.get(&w.name);
        check_service(&object, w, ep, r);
        check_tls(&object, w, ep, s.now, r);
        check_failure_policy(&object, w, r);
        let own = w
            .client_config
            .service
            .as_ref()
            .map(|svc| svc.namespace.clone())
            .unwrap_or_else(|| s.injector_namespace.clone());
        check_excluded(&object, w, KUBE_SYSTEM, s, r);
        if own != KUBE_SYSTEM {
            check_excluded(&object, w, &own, s, r);
        }
        check_match_conditions(&object, w, r);
    }
}

fn check_service(object: &str, w: &MutatingWebhook, ep: Option<&WebhookEndpoint>, r: &mut Report) {
    let Some(svc) = &w.client_config.service else {
        let url = w.client_config.url.as_deref().unwrap_or("(none)");
        r.note(
            object,
            format!(
                "calls the URL {url}, not a Service: its Service and endpoints are not checked"
            ),
        );
        return;
    };
    let name = format!("{}/{}", svc.namespace, svc.name);
    let Some(ep) = ep else {
        r.note(object, format!("Service {name} was not read"));
        return;
    };
    match &ep.service_exists {
        Read::Known(false) => {
            r.finding(
                Check::Webhook,
                Severity::Error,
                object,
                format!("its Service {name} does not exist: the apiserver cannot call the webhook"),
                format!(
                    "re-install the chart, or point clientConfig.service at the injector's Service \
                     (kubectl -n {} get services)",
                    svc.namespace
                ),
            );
            return;
        }
        Read::Unknown(why) => r.note(object, format!("Service {name} could not be read: {why}")),
        Read::Known(true) => {}
    }
    match &ep.ready {
        Read::Known(ready) if ready.is_empty() => {
            r.finding(
                Check::Webhook,
                Severity::Error,
                object,
                format!("Service {name} has no ready endpoints: no injector pod is serving"),
                format!(
                    "check the injector pods: kubectl -n {ns} get pods,endpointslices -l \
                     app.kubernetes.io/component=injector; kubectl -n {ns} describe deployment",
                    ns = svc.namespace
                ),
            );
        }
        Read::Known(ready) => r.note(
            object,
            format!("Service {name} has {} ready endpoint(s)", ready.len()),
        ),
        Read::Unknown(why) => r.note(
            object,
            format!("the endpoints of Service {name} could not be read: {why}"),
        ),
    }
}

fn check_tls(
    object: &str,
    w: &MutatingWebhook,
    ep: Option<&WebhookEndpoint>,
    now: i64,
    r: &mut Report,
) {
    let bundle = w
        .client_config
        .ca_bundle
        .as_ref()
        .map(|b| b.0.as_slice())
        .unwrap_or_default();
    let fix_bundle = "put the CA that signed the injector's serving certificate into the caBundle \
                      (chart: tls.caBundle = base64 -w0 ca.crt; cert-manager: check its CA \
                      injector; selfManaged: check the injector's log), or renew the serving \
                      certificate (Secret hush-tls) with that CA";
    if bundle.is_empty() {
        r.finding(
            Check::Webhook,
            Severity::Error,
            object,
            "clientConfig.caBundle is empty: the apiserver cannot trust the injector",
            fix_bundle,
        );
        return;
    }
    let cas = super::tls::bundle_certificates(bundle);
    if cas.is_empty() {
        r.finding(
            Check::Webhook,
            Severity::Error,
            object,
            "clientConfig.caBundle holds no PEM certificate",
            fix_bundle,
        );
        return;
    }
    for ca in &cas {
        let days = days_left(ca.not_after, now);
        if days < 0 {
            r.note(
                object,
                format!(
                    "caBundle certificate \"{}\" expired {} day(s) ago",
                    ca.subject, -days
                ),
            );
        }
    }
    let Some(ep) = ep else { return };
    match &ep.tls {
        TlsProbe::NotTried(why) => r.note(
            object,
            format!("the serving certificate was not checked: {why}"),
        ),
        TlsProbe::Unreachable { addr, reason } => r.note(
            object,
            format!(
                "the serving certificate was not checked: {addr} is not reachable from here \
                 ({reason})"
            ),
        ),
        TlsProbe::Rejected { addr, reason } => {
            r.finding(
                Check::Webhook,
                Severity::Error,
                object,
                format!(
                    "the caBundle does not verify the serving certificate at {addr} ({reason}): \
                     the apiserver refuses to call the webhook"
                ),
                fix_bundle,
            );
        }
        TlsProbe::Verified { addr, not_after } => {
            let days = days_left(*not_after, now);
            if days < EXPIRY_WARNING_DAYS {
                r.finding(
                    Check::Webhook,
                    Severity::Warning,
                    object,
                    format!("the serving certificate at {addr} expires in {days} day(s)"),
                    "renew the serving certificate (Secret hush-tls, or cert-manager's \
                     Certificate); the injector reloads it without a restart",
                );
            } else {
                r.note(
                    object,
                    format!(
                        "the caBundle verifies the serving certificate at {addr}; it expires in \
                         {days} days"
                    ),
                );
            }
        }
    }
}

/// Whole days from `now` to `not_after` (negative once expired).
pub(crate) fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(86_400)
}

fn check_failure_policy(object: &str, w: &MutatingWebhook, r: &mut Report) {
    // The API's default for admissionregistration/v1 is Fail.
    let policy = w.failure_policy.as_deref().unwrap_or("Fail");
    if policy == "Ignore" {
        r.finding(
            Check::Webhook,
            Severity::Warning,
            object,
            "failurePolicy is Ignore: a pod created while the injector is down starts without its \
             sidecar and its secret files, and nothing injects it later",
            "set failurePolicy: Fail (chart: webhook.failurePolicy=Fail); this command finds the \
             pods that already missed injection",
        );
    } else {
        r.note(object, format!("failurePolicy is {policy}"));
    }
}

fn check_excluded(object: &str, w: &MutatingWebhook, ns: &str, s: &Snapshot, r: &mut Report) {
    match s.namespaces.get(ns) {
        Some(Read::Known(labels)) => {
            if selector_matches(w.namespace_selector.as_ref(), labels) {
                let why = if ns == KUBE_SYSTEM {
                    "system pods would wait for (or, with Ignore, skip) the injector"
                } else {
                    "the injector's own pods would need the injector to start: after an outage it \
                     cannot come back"
                };
                r.finding(
                    Check::Webhook,
                    Severity::Error,
                    object,
                    format!("its namespaceSelector selects namespace {ns}: {why}"),
                    format!(
                        "exclude it: a namespaceSelector expression {{key: {NAME_LABEL}, \
                         operator: NotIn, values: [{ns}]}} (the chart excludes kube-system and its \
                         release namespace; add others to webhook.excludeNamespaces)"
                    ),
                );
            } else {
                r.note(object, format!("namespace {ns} is excluded"));
            }
        }
        Some(Read::Unknown(why)) => r.note(
            object,
            format!("whether namespace {ns} is excluded was not checked: {why}"),
        ),
        None => {
            // A namespace that does not exist yet would get the name label; judge by that.
            let labels = Labels::from([(NAME_LABEL.to_string(), ns.to_string())]);
            if selector_matches(w.namespace_selector.as_ref(), &labels) {
                r.note(
                    object,
                    format!(
                        "namespace {ns} does not exist, and the namespaceSelector would select it \
                         if it did"
                    ),
                );
            }
        }
    }
}

fn check_match_conditions(object: &str, w: &MutatingWebhook, r: &mut Report) {
    let conditions = w.match_conditions.as_deref().unwrap_or_default();
    if conditions.is_empty() {
        r.finding(
            Check::Webhook,
            Severity::Warning,
            object,
            "has no matchConditions: every pod of every selected namespace is sent to the \
             injector, so they all depend on it",
            "add the chart's matchCondition has-hush-annotation (only objects with a hush.dev/ \
             annotation), e.g. by re-installing the chart",
        );
    } else {
        let names: Vec<&str> = conditions.iter().map(|c| c.name.as_str()).collect();
        let hush = conditions
            .iter()
            .any(|c| c.expression.contains(hush_contract::ANNOTATION_PREFIX));
        r.note(
            object,
            format!(
                "matchConditions: {}{}",
                names.join(", "),
                if hush {
                    ""
                } else {
                    " (none mentions hush.dev/: check that annotated pods still match)"
                }
            ),
        );
    }
}

/// Whether a label selector matches `labels`, as the apiserver decides it (an absent selector
/// matches everything; `NotIn` and `DoesNotExist` match an absent key).
pub(crate) fn selector_matches(selector: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(sel) = selector else { return true };
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An unknown operator is rejected by the apiserver; never matches here.
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// What to do so that a selector that does not match `labels` does: the `kubectl label` arguments
/// (`k=v`), or `None` when no label can make it match (a `NotIn` on the namespace's name).
fn labels_to_match(selector: Option<&LabelSelector>, labels: &Labels) -> Option<Vec<String>> {
    let sel = selector?;
    let mut out = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            out.push(format!("{k}={v}"));
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" if !value.is_some_and(|v| values.contains(v)) => {
                out.push(format!("{}={}", e.key, values.first()?));
            }
            "Exists" if value.is_none() => out.push(format!("{}=true", e.key)),
            "NotIn" if value.is_some_and(|v| values.contains(v)) => {
                if e.key == NAME_LABEL {
                    return None;
                }
                out.push(format!("{}-", e.key));
            }
            "DoesNotExist" if value.is_some() => out.push(format!("{}-", e.key)),
            _ => {}
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Pods

fn pod_ns_name(p: &Pod) -> (&str, &str) {
    (
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The injected container, where the injector puts it (`initContainers`, or `containers` for a
/// hand-written spec).
fn sidecar_of(p: &Pod) -> Option<&Container> {
    let spec = p.spec.as_ref()?;
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .find(|c| c.name == SIDECAR_CONTAINER)
}

fn check_pods(s: &Snapshot, r: &mut Report) {
    let webhook = s
        .mutating
        .as_ref()
        .and_then(|m| m.webhooks.as_ref())
        .and_then(|w| w.first());
    let mut outdated_config_noted = false;
    // Injected pods this webhook does not select now: another injector's (or from before a
    // selector change), so not compared with this one's configuration.
    let mut not_ours = Vec::new();
    for pod in &s.pods {
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        if !annotations::inject_requested(&annotations) {
            continue;
        }
        let (ns, name) = pod_ns_name(pod);
        let object = format!("pod {ns}/{name}");
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match sidecar_of(pod) {
            None => missed(s, r, pod, &object, webhook),
            Some(_) if !selected_by(webhook, s, pod) => not_ours.push(object),
            Some(sidecar) => match &s.injector {
                Read::Known(current) => {
                    outdated(r, pod, &object, sidecar, current, s);
                }
                Read::Unknown(why) if !outdated_config_noted => {
                    outdated_config_noted = true;
                    r.note(
                        "injected pods",
                        format!(
                            "not compared with the injector's configuration: {why}; pass \
                             --injector-config NAME"
                        ),
                    );
                }
                Read::Unknown(_) => {}
            },
        }
    }
    if let Some(first) = not_ours.first() {
        r.note(
            "injected pods",
            format!(
                "{} (e.g. {first}) are in namespaces or have labels webhook {} does not select: \
                 not compared with its injector's configuration",
                not_ours.len(),
                s.webhook_name
            ),
        );
    }
}

/// Whether `webhook` would see this pod now (namespace and object selectors). Unknown namespace
/// labels count as selected.
fn selected_by(webhook: Option<&MutatingWebhook>, s: &Snapshot, pod: &Pod) -> bool {
    let Some(w) = webhook else { return true };
    let (ns, _) = pod_ns_name(pod);
    let ns_ok = match s.namespaces.get(ns) {
        Some(Read::Known(labels)) => selector_matches(w.namespace_selector.as_ref(), labels),
        _ => true,
    };
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    ns_ok && selector_matches(w.object_selector.as_ref(), &pod_labels)
}

/// The workload that owns a pod (`deployment/shop`) and the command that re-creates its pods.
pub(crate) fn owner_and_fix(s: &Snapshot, pod: &Pod) -> (Option<String>, String) {
    let (ns, name) = pod_ns_name(pod);
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let Some(c) = controller else {
        return (
            None,
            format!(
                "re-create the pod from its manifest: kubectl -n {ns} replace --force -f POD.yaml"
            ),
        );
    };
    let top = match c.kind.as_str() {
        "ReplicaSet" | "Job" => s
            .controllers
            .get(&(ns.to_string(), c.kind.clone(), c.name.clone()))
            .cloned()
            .flatten(),
        _ => None,
    };
    let (kind, owner) = top.unwrap_or_else(|| (c.kind.clone(), c.name.clone()));
    let k = kind.to_ascii_lowercase();
    let fix = match kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" => {
            format!("kubectl -n {ns} rollout restart {k}/{owner}")
        }
        "CronJob" => format!(
            "the next run of cronjob/{owner} is injected; to run it now: kubectl -n {ns} create \
             job --from=cronjob/{owner} {owner}-rerun, then kubectl -n {ns} delete job/{}",
            c.name
        ),
        "Job" => format!(
            "re-create job/{owner} from its manifest: kubectl -n {ns} replace --force -f JOB.yaml"
        ),
        _ => format!("kubectl -n {ns} delete pod {name} (its {k}/{owner} re-creates it)"),
    };
    (Some(format!("{k}/{owner}")), fix)
}

fn missed(
    s: &Snapshot,
    r: &mut Report,
    pod: &Pod,
    object: &str,
    webhook: Option<&MutatingWebhook>,
) {
    let (ns, _) = pod_ns_name(pod);
    let (owner, restart) = owner_and_fix(s, pod);
    // Would the webhook see a new pod of this namespace? Then a restart is the whole fix.
    let mut before = Vec::new();
    let mut why = "created while the webhook was down, failing with failurePolicy: Ignore, or \
                   not yet installed"
        .to_string();
    match (webhook, s.namespaces.get(ns)) {
        (None, _) => {
            before.push(format!(
                "install Hush (MutatingWebhookConfiguration {} is missing)",
                s.webhook_name
            ));
            why = "the webhook does not exist".into();
        }
        (Some(w), Some(Read::Known(labels))) => {
            if !selector_matches(w.namespace_selector.as_ref(), labels) {
                why = format!("the webhook's namespaceSelector does not select namespace {ns}");
                match labels_to_match(w.namespace_selector.as_ref(), labels) {
                    Some(l) if !l.is_empty() => {
                        before.push(format!("kubectl label namespace {ns} {}", l.join(" ")))
                    }
                    _ => before.push(format!(
                        "run it in a namespace the webhook selects ({ns} is excluded by name)"
                    )),
                }
            } else {
                let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
                if !selector_matches(w.object_selector.as_ref(), &pod_labels) {
                    why = "the webhook's objectSelector does not select the pod's labels".into();
                    before.push(
                        "change the pod template's labels or the webhook's objectSelector".into(),
                    );
                }
            }
        }
        _ => {}
    }
    before.push(restart);
    let f = r.finding(
        Check::MissedInjection,
        Severity::Error,
        object,
        format!(
            "annotated hush.dev/inject: \"true\" but has no {SIDECAR_CONTAINER} container, so it \
             runs without its secret files ({why})"
        ),
        before.join("; then "),
    );
    f.owner = owner;
}

fn outdated(
    r: &mut Report,
    pod: &Pod,
    object: &str,
    sidecar: &Container,
    current: &InjectorSettings,
    s: &Snapshot,
) {
    let mut problems = Vec::new();
    if let Some(want) = &current.sidecar_image
        && sidecar.image.as_deref() != Some(want.as_str())
    {
        problems.push(format!(
            "its sidecar image is {}, the injector now injects {want}",
            sidecar.image.as_deref().unwrap_or("(none)")
        ));
    }
    let config = sidecar
        .env
        .iter()
        .flatten()
        .find(|e| e.name == vars::CONFIG)
        .and_then(|e| e.value.as_deref());
    match config.map(serde_json::from_str::<serde_json::Value>) {
        None => problems.push(format!("its sidecar has no {} value", vars::CONFIG)),
        Some(Err(_)) => problems.push(format!("its sidecar's {} is not JSON", vars::CONFIG)),
        Some(Ok(v)) => {
            let version = v.get("version").and_then(serde_json::Value::as_u64);
            if version != Some(u64::from(CONFIG_VERSION)) {
                problems.push(format!(
                    "its {} is version {}, this release writes version {CONFIG_VERSION}",
                    vars::CONFIG,
                    version.map_or_else(|| "(none)".to_string(), |v| v.to_string())
                ));
            } else if let Some(want) = &current.operator {
                let fields = operator_drift(v.get("operator"), want, current.vault_ca_file);
                if !fields.is_empty() {
                    problems.push(format!(
                        "its operator settings differ from the injector's current ones in: {}",
                        fields.join(", ")
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        return;
    }
    let (owner, fix) = owner_and_fix(s, pod);
    let f = r.finding(
        Check::OutdatedSidecar,
        Severity::Warning,
        object,
        format!(
            "injected by an older injector or configuration ({}): {}",
            current.source,
            problems.join("; ")
        ),
        fix,
    );
    f.owner = owner;
}

/// The top-level `operator` fields whose values differ between a pod's `HUSH_CONFIG` and the
/// injector's configuration. The fields the injector fills in per pod are left out, and so is
/// `vault.caPem` when the injector reads it from `vault.caFile`. Names only: no value is printed.
pub(crate) fn operator_drift(
    pod: Option<&serde_json::Value>,
    current: &serde_json::Value,
    ca_from_file: bool,
) -> Vec<String> {
    let parse = |v: &serde_json::Value| serde_json::from_value::<OperatorSettings>(v.clone()).ok();
    let (Some(pod), Some(mut now)) = (pod.and_then(parse), parse(current)) else {
        return vec!["operator (not readable as this release's settings)".to_string()];
    };
    let mut pod = pod;
    for o in [&mut pod, &mut now] {
        o.allowed_roles = None;
        o.allow_signal = false;
        o.fs_group = None;
    }
    if ca_from_file && let (Some(p), Some(n)) = (&pod.vault, &mut now.vault) {
        n.ca_pem.clone_from(&p.ca_pem);
    }
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(&pod), serde_json::to_value(&now))
    else {
        return Vec::new();
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| k.to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Sealed references

/// Every `sealed:<configmap>/<key>` reference of a pod, parsed by the annotation parser's own
/// [`SourceRef::parse`]; other and malformed references are skipped (admission reports those).
pub(crate) fn sealed_refs(annotations: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let prefix = annotations::file_rows()
        .map(|(_, a)| a)
        .find(|a| a.field == "source")
        .map(|a| annotations::key(a.name()));
    let Some(prefix) = prefix else {
        return Vec::new();
    };
    annotations
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(_, v)| match SourceRef::parse(v) {
            Ok(SourceRef::Sealed { configmap, key }) => Some((configmap, key)),
            _ => None,
        })
        .collect()
}

fn check_sealed_refs(s: &Snapshot, r: &mut Report) {
    // (namespace, configmap, key) -> pods using it
    let mut uses: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    for pod in &s.pods {
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        if !annotations::inject_requested(&annotations) {
            continue;
        }
        let (ns, name) = pod_ns_name(pod);
        for (cm, key) in sealed_refs(&annotations) {
            uses.entry((ns.to_string(), cm, key))
                .or_default()
                .push(name.to_string());
        }
    }
    let used_by = |pods: &[String]| match pods {
        [one] => format!("used by pod {one}"),
        [first, rest @ ..] => format!("used by pod {first} and {} more", rest.len()),
        [] => String::new(),
    };
    let mut namespaces = BTreeSet::new();
    for ((ns, cm, key), pods) in &uses {
        namespaces.insert(ns.clone());
        let object = format!("ConfigMap {ns}/{cm}");
        let reference = format!("sealed:{cm}/{key}");
        match s.configmaps.get(&(ns.clone(), cm.clone())) {
            Some(Read::Known(None)) => {
                r.finding(
                    Check::Sealed,
                    Severity::Error,
                    &object,
                    format!(
                        "missing, but {reference} is {}: the sidecar cannot start",
                        used_by(pods)
                    ),
                    format!(
                        "apply the sealed file from Git: kubectl apply -f <{cm}.sealed.yaml> (made \
                         with hush seal ... -n {ns}), or fix the reference"
                    ),
                );
            }
            Some(Read::Known(Some(keys))) if !keys.iter().any(|k| k == key) => {
                let available: Vec<&str> = keys
                    .iter()
                    .map(String::as_str)
                    .filter(|k| *k != hush_sealed_format::META_KEY)
                    .collect();
                r.finding(
                    Check::Sealed,
                    Severity::Error,
                    &object,
                    format!(
                        "has no key {key} (it has: {}), but {reference} is {}",
                        if available.is_empty() {
                            "none".to_string()
                        } else {
                            available.join(", ")
                        },
                        used_by(pods)
                    ),
                    format!(
                        "fix the annotation's key, or re-seal the Secret with a {key} value and \
                         apply it"
                    ),
                );
            }
            Some(Read::Unknown(why)) => {
                r.note(&object, format!("{reference} was not checked: {why}"));
            }
            _ => {}
        }
    }
    for ns in namespaces {
        match s.identities.get(&ns) {
            Some(Read::Known(false)) => {
                r.finding(
                    Check::Sealed,
                    Severity::Error,
                    format!("namespace {ns}"),
                    format!(
                        "pods use sealed: references but the Secret {IDENTITY_SECRET} is missing: \
                         their sidecars cannot decrypt"
                    ),
                    format!(
                        "hush keygen --namespace {ns} | kubectl apply -f - (then re-seal its sealed \
                         files for the new public key), or restore the namespace's identity"
                    ),
                );
            }
            Some(Read::Unknown(why)) => r.note(
                format!("namespace {ns}"),
                format!("whether Secret {IDENTITY_SECRET} exists was not checked: {why}"),
            ),
            _ => {}
        }
    }
}

fn check_repo(files: &[RepoFile], cluster: &[ClusterSealed], r: &mut Report) {
    let by_name: BTreeMap<(&str, &str), &RepoFile> = files
        .iter()
        .map(|f| ((f.namespace.as_str(), f.name.as_str()), f))
        .collect();
    for c in cluster {
        let object = format!("ConfigMap {}/{}", c.namespace, c.name);
        let Some(f) = by_name.get(&(c.namespace.as_str(), c.name.as_str())) else {
            continue;
        };
        let (scope, recipients) = match &c.meta {
            Ok(m) => m,
            Err(why) => {
                r.finding(
                    Check::Sealed,
                    Severity::Error,
                    &object,
                    format!("its sealed metadata cannot be read: {why}"),
                    format!("kubectl apply -f {}", f.path),
                );
                continue;
            }
        };
        if *scope != f.scope {
            r.finding(
                Check::Sealed,
                Severity::Warning,
                &object,
                format!(
                    "has scope {} in the cluster but {} in {}",
                    scope.as_str(),
                    f.scope.as_str(),
                    f.path
                ),
                format!("kubectl apply -f {} (or let GitOps sync it)", f.path),
            );
        }
        match &f.rule_recipients {
            Ok(want) if want != recipients => {
                let missing: Vec<&str> = want
                    .iter()
                    .filter(|w| !recipients.contains(w))
                    .map(String::as_str)
                    .collect();
                let extra: Vec<&str> = recipients
                    .iter()
                    .filter(|w| !want.contains(w))
                    .map(String::as_str)
                    .collect();
                let mut what = Vec::new();
                if !missing.is_empty() {
                    what.push(format!("lacks {}", missing.join(" ")));
                }
                if !extra.is_empty() {
                    what.push(format!("also has {}", extra.join(" ")));
                }
                let fix = if &f.recipients == want {
                    format!("{} is up to date: kubectl apply -f {}", f.path, f.path)
                } else {
                    format!(
                        "hush rotate {p} (with an identity that can decrypt it), commit, then \
                         kubectl apply -f {p}",
                        p = f.path
                    )
                };
                r.finding(
                    Check::Sealed,
                    Severity::Warning,
                    &object,
                    format!(
                        "its recipients differ from .hush.yaml's rule for {}: it {}",
                        f.path,
                        what.join(" and ")
                    ),
                    fix,
                );
            }
            Err(why) => r.note(&object, format!("{}: {why}", f.path)),
            Ok(_) => {}
        }
    }
}
