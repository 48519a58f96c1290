//! AdmissionReview v1 in and out. The request side is a small typed struct (only the fields we
//! read; the object stays a `serde_json::Value` until we know it is ours). The response is our own
//! typed struct rather than kube-core's `AdmissionResponse`, because kube 5 serialises its `patch`
//! as an array of numbers while the API documents (and the kube-apiserver expects) base64 with
//! `patchType: JSONPatch`. [`review`] is pure: bytes in, status and bytes out, so it is tested
//! without a server.

use std::time::Instant;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::InjectorConfig;
use crate::metrics::{Endpoint, Metrics, Outcome};
use crate::mutate::{Denial, mutate};

/// The only AdmissionReview version we speak.
pub(crate) const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<RequestIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    operation: String,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    dry_run: Option<bool>,
    /// Who made the request, for the audit record.
    #[serde(default)]
    user_info: UserInfo,
}

#[derive(Deserialize, Default)]
struct UserInfo {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    kind: String,
}

/// The AdmissionReview we send back.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut {
    pub api_version: String,
    pub kind: String,
    pub response: ResponseOut,
}

/// The `response` of an AdmissionReview.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResponseOut {
    /// Echo of `request.uid` (empty when the request had none we could read).
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patch_type: Option<String>,
    /// Base64 of the JSON patch.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<StatusOut>,
}

/// `metav1.Status` subset used for denials and errors.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusOut {
    pub code: u16,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// An answer ready to write: HTTP status, JSON body, and how it ended (for metrics).
#[derive(Debug)]
pub struct Answer {
    pub http_status: u16,
    pub body: Vec<u8>,
    pub outcome: Outcome,
}

impl ResponseOut {
    fn allowed(uid: String) -> ResponseOut {
        ResponseOut {
            uid,
            allowed: true,
            patch_type: None,
            patch: None,
            status: None,
        }
    }

    fn refused(uid: String, code: u16, reason: &str, message: String) -> ResponseOut {
        ResponseOut {
            uid,
            allowed: false,
            patch_type: None,
            patch: None,
            status: Some(StatusOut {
                code,
                message,
                reason: Some(reason.to_string()),
            }),
        }
    }
}

fn encode(http_status: u16, response: ResponseOut, outcome: Outcome) -> Answer {
    let out = ReviewOut {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        response,
    };
    let body = serde_json::to_vec(&out).unwrap_or_else(|_| {
        // Serialising plain strings and bools cannot fail; keep a valid answer regardless.
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":false}}"#.to_vec()
    });
    Answer {
        http_status,
        body,
        outcome,
    }
}

/// A 400 answer for a request we cannot read, with the uid echoed when there is one.
pub(crate) fn bad_request(uid: Option<String>, message: String) -> Answer {
    encode(
        400,
        ResponseOut::refused(uid.unwrap_or_default(), 400, "BadRequest", message),
        Outcome::BadRequest,
    )
}

/// Digs `request.uid` out of a body that did not fit the schema.
fn salvage_uid(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("request")?.get("uid")?.as_str().map(str::to_string)
}

fn describe_json_error(e: &serde_json::Error) -> String {
    // Position and category only: serde's message may quote request content.
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "not an AdmissionReview",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// Answers one AdmissionReview body for `endpoint`, recording metrics.
pub fn review(endpoint: Endpoint, body: &[u8], cfg: &InjectorConfig, metrics: &Metrics) -> Answer {
    let start = Instant::now();
    let answer = review_inner(endpoint, body, cfg, metrics);
    metrics.observe(endpoint, answer.outcome, start.elapsed());
    answer
}

fn review_inner(
    endpoint: Endpoint,
    body: &[u8],
    cfg: &InjectorConfig,
    metrics: &Metrics,
) -> Answer {
    let parsed: ReviewIn = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(
                salvage_uid(body),
                format!(
                    "hush-injector: malformed AdmissionReview: {}",
                    describe_json_error(&e)
                ),
            );
        }
    };
    let uid = parsed.request.as_ref().map(|r| r.uid.clone());
    if parsed.api_version != API_VERSION || parsed.kind != KIND {
        return bad_request(
            uid,
            format!(
                "hush-injector: unsupported {}/{}: only {API_VERSION} {KIND} is served",
                if parsed.api_version.is_empty() {
                    "<no apiVersion>"
                } else {
                    &parsed.api_version
                },
                if parsed.kind.is_empty() {
                    "<no kind>"
                } else {
                    &parsed.kind
                },
            ),
        );
    }
    let Some(req) = parsed.request else {
        return bad_request(None, "hush-injector: AdmissionReview has no request".into());
    };
    let uid = req.uid.clone();
    let result = match endpoint {
        Endpoint::Mutate => admit_pod(&req, cfg),
        Endpoint::Validate => validate_workload(&req, cfg),
    };
    let reason = match &result {
        Err(Refusal::Denied(d)) => Some(d.reason.as_str()),
        Err(Refusal::Bad(_)) => Some(Outcome::BadRequest.as_str()),
        Ok(_) => None,
    };
    let answer = match result {
        Ok(Verdict::Unchanged) => {
            tracing::debug!(%uid, kind = %req.kind.kind, op = %req.operation, "allowed unchanged");
            encode(200, ResponseOut::allowed(uid), Outcome::Allowed)
        }
        Ok(Verdict::Patch(bytes)) => {
            tracing::debug!(
                %uid,
                namespace = req.namespace.as_deref().unwrap_or(""),
                dry_run = req.dry_run.unwrap_or(false),
                "injected sidecar"
            );
            let mut resp = ResponseOut::allowed(uid);
            resp.patch_type = Some("JSONPatch".into());
            resp.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
            encode(200, resp, Outcome::Patched)
        }
        Err(Refusal::Denied(d)) => {
            metrics.denied(d.reason.as_str());
            tracing::info!(
                %uid,
                namespace = req.namespace.as_deref().unwrap_or(""),
                name = req.name.as_deref().unwrap_or(""),
                reason = d.reason.as_str(),
                "denied"
            );
            encode(
                200,
                ResponseOut::refused(uid, 403, "Forbidden", d.to_string()),
                Outcome::Denied,
            )
        }
        Err(Refusal::Bad(message)) => bad_request(Some(uid), message),
    };
    crate::audit::admission(
        cfg.operator.audit,
        &crate::audit::Admission {
            endpoint,
            outcome: answer.outcome,
            reason,
            user: &req.user_info.username,
            uid: &req.uid,
            operation: &req.operation,
            group: &req.kind.group,
            kind: &req.kind.kind,
            namespace: req.namespace.as_deref(),
            name: req.name.as_deref(),
            dry_run: req.dry_run.unwrap_or(false),
        },
    );
    answer
}

enum Verdict {
    Unchanged,
    Patch(Vec<u8>),
}

enum Refusal {
    Denied(Denial),
    Bad(String),
}

fn namespace_of(req: &RequestIn, meta: &ObjectMeta) -> Result<String, Refusal> {
    req.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| meta.namespace.clone())
        .ok_or_else(|| Refusal::Bad("hush-injector: request has no namespace".into()))
}

fn admit_pod(req: &RequestIn, cfg: &InjectorConfig) -> Result<Verdict, Refusal> {
    if !req.kind.group.is_empty() || req.kind.kind != "Pod" || req.operation != "CREATE" {
        return Ok(Verdict::Unchanged);
    }
    let Some(object) = &req.object else {
        return Err(Refusal::Bad(
            "hush-injector: CREATE without an object".into(),
        ));
    };
    let pod = Pod::deserialize(object).map_err(|e| {
        Refusal::Bad(format!(
            "hush-injector: cannot decode the Pod: {}",
            describe_json_error(&e)
        ))
    })?;
    let ns = namespace_of(req, &pod.metadata)?;
    let patch = mutate(&pod, cfg, &ns).map_err(Refusal::Denied)?;
    if patch.0.is_empty() {
        return Ok(Verdict::Unchanged);
    }
    let bytes = serde_json::to_vec(&patch)
        .map_err(|_| Refusal::Bad("hush-injector: cannot encode the patch".into()))?;
    Ok(Verdict::Patch(bytes))
}

/// Where the pod template sits in each workload kind we validate.
fn template_path(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    match (group, kind) {
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") => {
            Some(&["spec", "template"])
        }
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

#[derive(Deserialize, Default)]
struct Template {
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default)]
    spec: Option<PodSpec>,
}

fn validate_workload(req: &RequestIn, cfg: &InjectorConfig) -> Result<Verdict, Refusal> {
    if !(req.operation == "CREATE" || req.operation == "UPDATE") {
        return Ok(Verdict::Unchanged);
    }
    let Some(path) = template_path(&req.kind.group, &req.kind.kind) else {
        return Ok(Verdict::Unchanged);
    };
    let Some(object) = &req.object else {
        return Err(Refusal::Bad(format!(
            "hush-injector: {} without an object",
            req.operation
        )));
    };
    let mut node = object;
    for key in path {
        match node.get(key) {
            Some(n) => node = n,
            None => return Ok(Verdict::Unchanged),
        }
    }
    let template = Template::deserialize(node).map_err(|e| {
        Refusal::Bad(format!(
            "hush-injector: cannot decode the pod template: {}",
            describe_json_error(&e)
        ))
    })?;
    let object_meta = object
        .get("metadata")
        .and_then(|m| ObjectMeta::deserialize(m).ok())
        .unwrap_or_default();
    let ns = namespace_of(req, &object_meta)?;
    let pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    };
    match mutate(&pod, cfg, &ns) {
        Ok(_) => Ok(Verdict::Unchanged),
        Err(mut d) => {
            d.message = format!(
                "{} {} pod template: {}",
                req.kind.kind,
                object_meta.name.as_deref().unwrap_or("(unnamed)"),
                d.message
            );
            Err(Refusal::Denied(d))
        }
    }
}
