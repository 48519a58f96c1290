//! The injector's audit trail: one record per admission decision (allowed unchanged, patched with
//! the sidecar, denied and why, or refused as a bad request) with the user the kube-apiserver says
//! made the request, so that a security team can see who tried to inject which pod and what Hush
//! decided (docs/audit.md). The record is typed and small: the decision, the denial's reason code
//! and the request's identifying fields. It deliberately leaves out the denial message and the
//! object, which quote tenant-written annotations; the API response and the apiserver's own audit
//! log have them. Emitted with [`hush_config::audit::emit`] on the shared audit target, which the
//! binary writes to stdout as one JSON line; nothing when the operator's `audit` is off.

use serde::Serialize;

use crate::metrics::{Endpoint, Outcome};

/// The decision, as the review module knows it.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    pub endpoint: Endpoint,
    pub outcome: Outcome,
    /// The denial's reason code (`annotations`, `reserved_name`, ...) or `bad_request`.
    pub reason: Option<&'static str>,
    pub user: &'a str,
    pub uid: &'a str,
    pub operation: &'a str,
    /// `Pod`, or `<group>/<Kind>` for a workload.
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub dry_run: bool,
}

/// The record as written (schema `hush.audit/v1`, docs/audit.md).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    schema: &'static str,
    time: String,
    program: &'static str,
    event: &'static str,
    endpoint: &'static str,
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    user: &'a str,
    uid: &'a str,
    operation: &'a str,
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    dry_run: bool,
}

/// Emits the record of one admission decision, if the operator's `audit` is on.
pub(crate) fn admission(enabled: bool, a: &Admission<'_>) {
    if !enabled {
        return;
    }
    let decision = match a.outcome {
        Outcome::Allowed => "allowed",
        Outcome::Patched => "patched",
        Outcome::Denied => "denied",
        Outcome::BadRequest => "invalid",
    };
    hush_config::audit::emit(&Record {
        schema: hush_config::audit::SCHEMA,
        time: hush_config::audit::now(),
        program: "hush-injector",
        event: "admission",
        endpoint: a.endpoint.as_str(),
        decision,
        reason: a.reason,
        user: a.user,
        uid: a.uid,
        operation: a.operation,
        kind: if a.group.is_empty() {
            a.kind.to_string()
        } else {
            format!("{}/{}", a.group, a.kind)
        },
        namespace: a.namespace.filter(|n| !n.is_empty()),
        name: a.name.filter(|n| !n.is_empty()),
        dry_run: a.dry_run,
    });
}
