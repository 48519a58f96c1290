//! AdmissionReview v1 in and out. The request side is a small typed struct that borrows from the
//! body (only the fields we read). Its `object` is decoded straight into the view of
//! [`crate::pod`] in the same pass when the `kind` and `operation` before it say it is a Pod
//! CREATE, and otherwise stays raw JSON (`&RawValue`, checked but not built) until we know what to
//! read from it. The response is our own typed struct rather than kube-core's
//! `AdmissionResponse`, because kube 5 serialises its `patch` as an array of numbers while the API
//! documents (and the kube-apiserver expects) base64 with `patchType: JSONPatch`; a patched answer
//! is written in one pass, the base64 straight into the body. [`review`] is pure: bytes in, status
//! and bytes out, so it is tested without a server.

use std::borrow::Cow;
use std::time::Instant;

use base64::Engine as _;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::InjectorConfig;
use crate::metrics::{Endpoint, Metrics, Outcome};
use crate::mutate::{Denial, Ops, mutate_view};
use crate::pod::{MetaView, PodView, SpecView};

/// The only AdmissionReview version we speak.
pub(crate) const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// The AdmissionReview, its request read as `R`: [`RequestIn`] (every object raw), or [`OnePass`]
/// (a Pod CREATE's object decoded while the request is read).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a, R> {
    #[serde(default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    request: Option<R>,
}

/// `request.object`, read once.
enum Object<'a> {
    /// A Pod CREATE's object, decoded while the request was read ([`OnePass`]).
    Pod(Box<PodView<'a>>),
    /// Any other object (or any object, read as a plain [`RequestIn`]), checked as JSON but not
    /// built.
    Raw(&'a RawValue),
}

/// The request of an AdmissionReview: the fields we read, others skipped unbuilt. Deserialised by
/// hand (with the rules serde's derive would apply: `uid`, `kind` and `operation` required, a field
/// given twice refused) so that [`OnePass`] can share the reading.
struct RequestIn<'a> {
    uid: Cow<'a, str>,
    kind: GroupVersionKind<'a>,
    namespace: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    operation: Cow<'a, str>,
    object: Option<Object<'a>>,
    dry_run: Option<bool>,
    /// Who made the request, for the audit record.
    user_info: UserInfo,
}

/// A [`RequestIn`] whose object, when the `kind` and `operation` before it say Pod CREATE (the
/// order the kube-apiserver writes them in), is decoded into its view right there. Kept raw and
/// decoded afterwards, its bytes were scanned twice, a tenth of an admission. If that decode fails,
/// the whole review fails; [`review_inner`] then reads it again as a plain [`RequestIn`], so a bad
/// Pod gets the same answer as before ("cannot decode the Pod", with its position).
struct OnePass<'a>(RequestIn<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for RequestIn<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RequestVisitor::<'a, false>(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for OnePass<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RequestVisitor::<'a, true>(std::marker::PhantomData))
            .map(OnePass)
    }
}

/// Reads a request; `POD` says whether a Pod CREATE's object is decoded as it is read.
struct RequestVisitor<'a, const POD: bool>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a, const POD: bool> Visitor<'de> for RequestVisitor<'a, POD> {
    type Value = RequestIn<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an admission request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        fn once<T, E: serde::de::Error>(slot: &Option<T>, name: &'static str) -> Result<(), E> {
            match slot {
                Some(_) => Err(E::duplicate_field(name)),
                None => Ok(()),
            }
        }
        let mut uid = None;
        let mut kind: Option<GroupVersionKind<'de>> = None;
        let mut namespace = None;
        let mut name = None;
        let mut operation: Option<Cow<'de, str>> = None;
        let mut object = None;
        let mut dry_run = None;
        let mut user_info = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "uid" => {
                    once(&uid, "uid")?;
                    uid = Some(map.next_value::<Cow<'de, str>>()?);
                }
                "kind" => {
                    once(&kind, "kind")?;
                    kind = Some(map.next_value()?);
                }
                "namespace" => {
                    once(&namespace, "namespace")?;
                    namespace = Some(map.next_value::<Option<Cow<'de, str>>>()?);
                }
                "name" => {
                    once(&name, "name")?;
                    name = Some(map.next_value::<Option<Cow<'de, str>>>()?);
                }
                "operation" => {
                    once(&operation, "operation")?;
                    operation = Some(map.next_value()?);
                }
                "object" => {
                    once(&object, "object")?;
                    let pod = POD
                        && kind
                            .as_ref()
                            .is_some_and(|k| k.group.is_empty() && k.kind == "Pod")
                        && operation.as_deref().is_none_or(|op| op == "CREATE");
                    object = Some(if pod {
                        map.next_value::<Option<PodView<'de>>>()?
                            .map(|p| Object::Pod(Box::new(p)))
                    } else {
                        map.next_value::<Option<&'de RawValue>>()?.map(Object::Raw)
                    });
                }
                "dryRun" => {
                    once(&dry_run, "dryRun")?;
                    dry_run = Some(map.next_value::<Option<bool>>()?);
                }
                "userInfo" => {
                    once(&user_info, "userInfo")?;
                    user_info = Some(map.next_value::<UserInfo>()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RequestIn {
            uid: uid.ok_or_else(|| A::Error::missing_field("uid"))?,
            kind: kind.ok_or_else(|| A::Error::missing_field("kind"))?,
            namespace: namespace.flatten(),
            name: name.flatten(),
            operation: operation.ok_or_else(|| A::Error::missing_field("operation"))?,
            object: object.flatten(),
            dry_run: dry_run.flatten(),
            user_info: user_info.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize, Default)]
struct UserInfo {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
struct GroupVersionKind<'a> {
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
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

/// The answer with a patch: the bytes `encode` gives for an allowed [`ResponseOut`] with
/// `patchType: JSONPatch` and the base64 of `patch`, written in one pass into a buffer of the right
/// size (base64 needs no JSON escaping).
fn encode_patched(uid: &str, patch: &[u8]) -> Answer {
    const HEAD: &[u8] =
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#;
    const MID: &[u8] = br#","allowed":true,"patchType":"JSONPatch","patch":""#;
    const TAIL: &[u8] = br#""}}"#;
    let b64 = base64::engine::general_purpose::STANDARD;
    let encoded = base64::encoded_len(patch.len(), true).unwrap_or(0);
    let mut body =
        Vec::with_capacity(HEAD.len() + uid.len() + 2 + MID.len() + encoded + TAIL.len());
    body.extend_from_slice(HEAD);
    if serde_json::to_writer(&mut body, uid).is_err() {
        // Writing a string into a Vec cannot fail.
        return bad_request(None, "hush-injector: cannot encode the answer".into());
    }
    body.extend_from_slice(MID);
    let at = body.len();
    body.resize(at + encoded, 0);
    if b64.encode_slice(patch, &mut body[at..]).ok() != Some(encoded) {
        return bad_request(
            Some(uid.to_string()),
            "hush-injector: cannot encode the patch".into(),
        );
    }
    body.extend_from_slice(TAIL);
    Answer {
        http_status: 200,
        body,
        outcome: Outcome::Patched,
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

/// Digs `request.uid` out of a body that did not fit the schema, without building anything else
/// (unknown fields and the object are skipped unbuilt).
fn salvage_uid(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Option<Request<'a>>,
    }
    #[derive(Deserialize)]
    struct Request<'a> {
        #[serde(default, borrow)]
        uid: Option<Cow<'a, str>>,
    }
    let v: Review<'_> = serde_json::from_slice(body).ok()?;
    v.request?.uid.map(Cow::into_owned)
}

fn describe_json_error(e: &serde_json::Error) -> String {
    describe_json_error_at(e, 1, 0)
}

/// [`describe_json_error`] for an error in a part of the body that starts at `line` (1-based),
/// `column` bytes into it, so the position is the body's.
fn describe_json_error_at(e: &serde_json::Error, line: usize, column: usize) -> String {
    // Position and category only: serde's message may quote request content.
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "not an AdmissionReview",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    let (l, c) = match e.line() {
        0 => (0, 0),
        1 => (line, column + e.column()),
        l => (line + l - 1, e.column()),
    };
    format!("{what} (line {l}, column {c})")
}

/// Deserialises a part of `body` into `T`; an error names its position in the body.
fn decode<'a, T: Deserialize<'a>>(body: &[u8], raw: &'a RawValue) -> Result<T, String> {
    serde_json::from_str(raw.get()).map_err(|e| {
        let text = raw.get();
        let offset = (text.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        let before = body.get(..offset).unwrap_or_default();
        let line = 1 + before.iter().filter(|b| **b == b'\n').count();
        let column = before.iter().rev().take_while(|b| **b != b'\n').count();
        describe_json_error_at(&e, line, column)
    })
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
    // One pass; if it fails (a malformed review, or a Pod its view cannot hold), the review is
    // read again with every object raw, which finds the same problem and says where it is.
    // A body that is UTF-8 as a whole (every valid one is) is read as a `str`, so serde_json does
    // not check each string it borrows again.
    let one_pass = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<ReviewIn<'_, OnePass<'_>>>(text),
        Err(_) => serde_json::from_slice(body),
    };
    let parsed: ReviewIn<'_, RequestIn<'_>> = match one_pass {
        Ok(r) => ReviewIn {
            api_version: r.api_version,
            kind: r.kind,
            request: r.request.map(|one| one.0),
        },
        Err(_) => match serde_json::from_slice(body) {
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
        },
    };
    let uid = parsed.request.as_ref().map(|r| r.uid.to_string());
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
    let uid = &*req.uid;
    let result = match endpoint {
        Endpoint::Mutate => admit_pod(body, &req, cfg),
        Endpoint::Validate => validate_workload(body, &req, cfg),
    };
    let reason = match &result {
        Err(Refusal::Denied(d)) => Some(d.reason.as_str()),
        Err(Refusal::Bad(_)) => Some(Outcome::BadRequest.as_str()),
        Ok(_) => None,
    };
    let answer = match result {
        Ok(Verdict::Unchanged) => {
            tracing::debug!(%uid, kind = %req.kind.kind, op = %req.operation, "allowed unchanged");
            encode(200, ResponseOut::allowed(uid.to_string()), Outcome::Allowed)
        }
        Ok(Verdict::Patch(bytes)) => {
            tracing::debug!(
                %uid,
                namespace = req.namespace.as_deref().unwrap_or(""),
                dry_run = req.dry_run.unwrap_or(false),
                "injected sidecar"
            );
            encode_patched(uid, &bytes)
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
                ResponseOut::refused(uid.to_string(), 403, "Forbidden", d.to_string()),
                Outcome::Denied,
            )
        }
        Err(Refusal::Bad(message)) => bad_request(Some(uid.to_string()), message),
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

fn namespace_of(req: &RequestIn<'_>, meta: &MetaView<'_>) -> Result<String, Refusal> {
    req.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(meta.namespace.as_deref())
        .map(str::to_string)
        .ok_or_else(|| Refusal::Bad("hush-injector: request has no namespace".into()))
}

fn admit_pod(body: &[u8], req: &RequestIn<'_>, cfg: &InjectorConfig) -> Result<Verdict, Refusal> {
    if !req.kind.group.is_empty() || req.kind.kind != "Pod" || req.operation != "CREATE" {
        return Ok(Verdict::Unchanged);
    }
    let decoded: PodView<'_>;
    let pod: &PodView<'_> = match &req.object {
        None => {
            return Err(Refusal::Bad(
                "hush-injector: CREATE without an object".into(),
            ));
        }
        Some(Object::Pod(pod)) => pod,
        Some(Object::Raw(raw)) => {
            decoded = decode(body, raw).map_err(|why| {
                Refusal::Bad(format!("hush-injector: cannot decode the Pod: {why}"))
            })?;
            &decoded
        }
    };
    let ns = namespace_of(req, &pod.metadata)?;
    let ops = mutate_view(
        pod.metadata.annotations.as_ref(),
        pod.spec.as_ref(),
        cfg,
        &ns,
    )
    .map_err(Refusal::Denied)?;
    if ops.is_empty() {
        return Ok(Verdict::Unchanged);
    }
    Ok(Verdict::Patch(patch_bytes(&ops)?))
}

fn patch_bytes(ops: &Ops) -> Result<Vec<u8>, Refusal> {
    let mut bytes = Vec::with_capacity(8 * 1024);
    ops.write(&mut bytes)
        .map_err(|_| Refusal::Bad("hush-injector: cannot encode the patch".into()))?;
    Ok(bytes)
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

/// A workload's pod template.
#[derive(Deserialize, Default)]
struct Template<'a> {
    #[serde(default, borrow)]
    metadata: Option<MetaView<'a>>,
    #[serde(default, borrow)]
    spec: Option<SpecView<'a>>,
}

/// The value under `key` when `raw` is an object that has it (the last one, as a JSON object
/// read into a map keeps), else `None`; nothing else is built.
fn member<'a>(raw: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    struct Member<'k>(&'k str);
    impl<'de> DeserializeSeed<'de> for Member<'_> {
        type Value = Option<&'de RawValue>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Member<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                if k == self.0 {
                    found = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    let mut d = serde_json::Deserializer::from_str(raw.get());
    Member(key).deserialize(&mut d).ok().flatten()
}

fn validate_workload(
    body: &[u8],
    req: &RequestIn<'_>,
    cfg: &InjectorConfig,
) -> Result<Verdict, Refusal> {
    if !(req.operation == "CREATE" || req.operation == "UPDATE") {
        return Ok(Verdict::Unchanged);
    }
    let Some(path) = template_path(&req.kind.group, &req.kind.kind) else {
        return Ok(Verdict::Unchanged);
    };
    let object = match &req.object {
        Some(Object::Raw(raw)) => *raw,
        // Only a Pod's object is read as a Pod, and a Pod has no template.
        Some(Object::Pod(_)) => return Ok(Verdict::Unchanged),
        None => {
            return Err(Refusal::Bad(format!(
                "hush-injector: {} without an object",
                req.operation
            )));
        }
    };
    let mut node = object;
    for key in path {
        match member(node, key) {
            Some(n) => node = n,
            None => return Ok(Verdict::Unchanged),
        }
    }
    let template: Template<'_> = decode(body, node).map_err(|why| {
        Refusal::Bad(format!(
            "hush-injector: cannot decode the pod template: {why}"
        ))
    })?;
    let object_meta: MetaView<'_> = member(object, "metadata")
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_default();
    let ns = namespace_of(req, &object_meta)?;
    let meta = template.metadata.unwrap_or_default();
    match mutate_view(meta.annotations.as_ref(), template.spec.as_ref(), cfg, &ns) {
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
