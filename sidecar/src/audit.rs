//! The sidecar's audit trail: one record for each access to a secret store on behalf of this pod (a
//! fetch, a re-fetch, a sealed decrypt, a Vault login, a lease or token renewal, a revocation) and
//! for each failure, so that a security team can answer "which pod read which secret, when, and did
//! it work?" without relying on the store's own audit log alone (docs/audit.md).
//!
//! A record is typed ([`Access`] becomes [`Record`]): it has no field that could hold a value or a
//! token, references are the annotation's reference string (a path or secret id, never a value, by
//! the annotation contract), and a lease id is only ever written as [`lease_hash`]. Who the pod is
//! comes from the downward-API env the injector sets ([`Identity`]), so recording calls nothing.
//! [`Audit`] is a cheap handle the refresh engine and the Vault provider hold; when the operator
//! turned the trail off it records nothing. The record is emitted with
//! [`hush_config::audit::emit`], which the binary's audit layer writes to stdout as one JSON line.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::provider::Version;
use crate::runtime::Env;
use hush_config::{ErrorClass, SidecarConfig, SourceKind};
use hush_contract::env as vars;

/// Who this sidecar acts for.
#[derive(Debug, Default)]
struct Identity {
    pod: String,
    namespace: String,
    service_account: String,
    node: String,
}

/// The audit handle: records for this pod, or nothing when the trail is off.
#[derive(Clone, Debug, Default)]
pub(crate) struct Audit {
    who: Option<Arc<Identity>>,
}

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Event {
    /// The first read of a secret.
    Fetch,
    /// A later read: a new version, a KV v1 or dynamic secret read again, a lease replaced.
    Refetch,
    /// A sealed value decrypted from its mounted ConfigMap (first time or after a change).
    Decrypt,
    /// A cheap change check that failed (a successful one is not recorded).
    Check,
    /// A Vault login (at start, when the token is no longer valid, or at its max TTL).
    Login,
    /// A lease or the Vault token renewed.
    Renew,
    /// A lease or the Vault token revoked.
    Revoke,
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// It worked.
    Ok,
    /// The store refused by policy (a revocation without `update` on `sys/leases/revoke`).
    Forbidden,
    /// It failed; `errorClass` and `error` say how.
    Error,
}

/// What the event acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Object {
    /// A secret (its value went to the files, or would have).
    Secret,
    /// A Vault lease of a dynamic secret.
    Lease,
    /// The sidecar's own Vault token.
    Token,
    /// A certificate issued by a Vault PKI engine (its serial is the record's `version`).
    Certificate,
}

/// Why a secret was read again, or a lease revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Reason {
    /// The refresh cycle found a new version, or the store has no cheap check (KV v1).
    Refresh,
    /// The lease can no longer be renewed (near `max_ttl`, gone, or its token was replaced).
    Lease,
    /// A newer lease replaced this one.
    Replaced,
    /// The sidecar is stopping (SIGTERM).
    Shutdown,
}

/// One access, as the call site knows it.
#[derive(Debug)]
pub(crate) struct Access<'a> {
    pub event: Event,
    pub object: Object,
    pub outcome: Outcome,
    pub source: SourceKind,
    /// The reference without its per-file selector (`vault:database/creds/app`); `None` for the
    /// token.
    pub reference: Option<&'a str>,
    /// The files this secret feeds.
    pub files: &'a [String],
    pub version: Option<&'a Version>,
    /// The lease id (hashed before it is recorded).
    pub lease_id: Option<&'a str>,
    pub reason: Option<Reason>,
    /// Whether the value differed from the one held (re-fetches).
    pub changed: Option<bool>,
    /// The failure, for `outcome: error` (its message names references, never values).
    pub error: Option<(ErrorClass, String)>,
}

impl<'a> Access<'a> {
    /// An access of `event` on `object` that worked; the other fields are set by the caller.
    pub(crate) fn new(event: Event, object: Object, source: SourceKind) -> Access<'a> {
        Access {
            event,
            object,
            outcome: Outcome::Ok,
            source,
            reference: None,
            files: &[],
            version: None,
            lease_id: None,
            reason: None,
            changed: None,
            error: None,
        }
    }

    /// Marks it failed with `e`.
    pub(crate) fn failed(mut self, e: &crate::Error) -> Access<'a> {
        self.outcome = Outcome::Error;
        self.error = Some((e.class(), e.to_string()));
        self
    }
}

/// The record as written (schema `hush.audit/v1`, docs/audit.md).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    schema: &'static str,
    time: String,
    program: &'static str,
    event: Event,
    outcome: Outcome,
    pod: &'a str,
    namespace: &'a str,
    service_account: &'a str,
    node: &'a str,
    source: &'static str,
    object: Object,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    files: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl Audit {
    /// The handle for this pod: its identity from the downward-API env (the namespace falls back to
    /// the config's), or a handle that records nothing when the operator turned the trail off.
    pub(crate) fn new(env: &dyn Env, cfg: &SidecarConfig) -> Audit {
        if !cfg.operator.audit {
            return Audit { who: None };
        }
        let var = |name| env.var(name).unwrap_or_default();
        let namespace = env
            .var(vars::POD_NAMESPACE)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| cfg.namespace.clone());
        Audit {
            who: Some(Arc::new(Identity {
                pod: var(vars::POD_NAME),
                namespace,
                service_account: var(vars::SERVICE_ACCOUNT),
                node: var(vars::NODE_NAME),
            })),
        }
    }

    /// Emits the record of `a`.
    pub(crate) fn record(&self, a: Access<'_>) {
        let Some(who) = &self.who else {
            return;
        };
        let (error_class, error) = match &a.error {
            Some((c, m)) => (Some(c.as_str()), Some(m.as_str())),
            None => (None, None),
        };
        hush_config::audit::emit(&Record {
            schema: hush_config::audit::SCHEMA,
            time: hush_config::audit::now(),
            program: hush_contract::SIDECAR_BINARY,
            event: a.event,
            outcome: a.outcome,
            pod: &who.pod,
            namespace: &who.namespace,
            service_account: &who.service_account,
            node: &who.node,
            source: a.source.as_str(),
            object: a.object,
            reference: a.reference,
            files: a.files,
            version: a.version.and_then(version),
            lease: a.lease_id.map(lease_hash),
            reason: a.reason,
            changed: a.changed,
            error_class,
            error,
        });
    }
}

/// The version as recorded: a KV v2 version number, an AWS VersionId or a sealed ConfigMap's
/// digest (none of them secret); `pinned` for `?version=N` and `?version-id=`, whose reference
/// already names it; nothing for KV v1 and leased secrets.
fn version(v: &Version) -> Option<String> {
    match v {
        Version::Kv2(n) => Some(n.to_string()),
        Version::Opaque(s) => Some(s.clone()),
        Version::Pinned => Some("pinned".into()),
        Version::None | Version::Leased => None,
    }
}

/// A lease id as recorded: `sha256:` and the first 16 hex digits of its SHA-256. Whoever holds the
/// lease id (Vault's `sys/leases/lookup`) can match it; the record alone does not let anyone renew
/// or revoke the lease.
pub(crate) fn lease_hash(id: &str) -> String {
    let d = Sha256::digest(id.as_bytes());
    let mut out = String::from("sha256:");
    for b in &d[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn cfg(audit: bool) -> SidecarConfig {
        let operator = hush_config::OperatorSettings {
            audit,
            ..hush_config::OperatorSettings::default()
        };
        SidecarConfig::defaults("shop", &operator)
    }

    fn capture(audit: &Audit, f: impl FnOnce(&Audit)) -> Vec<serde_json::Value> {
        let buf = Buf::default();
        tracing::subscriber::with_default(hush_config::audit::subscriber(buf.clone()), || f(audit));
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_record_names_the_pod_and_hashes_the_lease() {
        let env = BTreeMap::from([
            (vars::POD_NAME.to_string(), "app-1".to_string()),
            (vars::SERVICE_ACCOUNT.to_string(), "app".to_string()),
            (vars::NODE_NAME.to_string(), "node-a".to_string()),
        ]);
        let audit = Audit::new(&env, &cfg(true));
        let lease = "database/creds/app/AbCdEf0123456789";
        let files = vec!["db-user".to_string(), "db-password".to_string()];
        let recs = capture(&audit, |a| {
            let mut x = Access::new(Event::Fetch, Object::Secret, SourceKind::Vault);
            x.reference = Some("vault:database/creds/app");
            x.files = &files;
            x.version = Some(&Version::Leased);
            x.lease_id = Some(lease);
            a.record(x);
            let e = crate::Error::store("vault", ErrorClass::Transient, "connection refused");
            a.record(Access::new(Event::Renew, Object::Token, SourceKind::Vault).failed(&e));
        });
        assert_eq!(recs.len(), 2);
        let r = &recs[0];
        assert_eq!(r["schema"], "hush.audit/v1");
        assert_eq!(r["program"], "hush-sidecar");
        assert_eq!(r["event"], "fetch");
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["pod"], "app-1");
        assert_eq!(
            r["namespace"], "shop",
            "falls back to the config's namespace"
        );
        assert_eq!(r["serviceAccount"], "app");
        assert_eq!(r["node"], "node-a");
        assert_eq!(r["source"], "vault");
        assert_eq!(r["object"], "secret");
        assert_eq!(r["reference"], "vault:database/creds/app");
        assert_eq!(r["files"], serde_json::json!(["db-user", "db-password"]));
        assert_eq!(r["lease"], lease_hash(lease));
        assert!(r.get("version").is_none() && r.get("error").is_none());
        let line = r.to_string();
        assert!(!line.contains("AbCdEf0123456789"), "{line}");
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(recs[1]["outcome"], "error");
        assert_eq!(recs[1]["errorClass"], "transient");
        assert_eq!(recs[1]["object"], "token");
        assert!(recs[1].get("reference").is_none());
    }

    #[test]
    fn the_operator_can_turn_it_off() {
        let audit = Audit::new(&BTreeMap::new(), &cfg(false));
        let recs = capture(&audit, |a| {
            a.record(Access::new(
                Event::Fetch,
                Object::Secret,
                SourceKind::Sealed,
            ))
        });
        assert!(recs.is_empty());
    }

    #[test]
    fn lease_hashes_are_short_stable_and_distinct() {
        let a = lease_hash("database/creds/app/one");
        assert_eq!(a, lease_hash("database/creds/app/one"));
        assert_ne!(a, lease_hash("database/creds/app/two"));
        assert_eq!(a.len(), "sha256:".len() + 16);
    }
}
