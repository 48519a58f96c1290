//! The seam between the refresh loop and the secret stores. A [`Provider`] turns a [`SourceRef`]
//! into the fields of one secret, says cheaply whether a secret it already delivered has changed,
//! keeps tokens and leases alive on its own schedule, and revokes them on shutdown. Vault, AWS and
//! sealed ConfigMaps each implement it; the refresh loop knows nothing about any of them.
//!
//! Providers are compiled in but built only for the source kinds a pod uses ([`build`]), so a pod
//! with only `vault:` references never pays for the AWS SDK's credential chain
//! (docs/architecture.md, "Footprint"). Several files may point at the same secret
//! (`database/creds/app#username` and `#password`): the loop fetches each secret once per
//! [`FetchKey`], so both files come from the same lease, and picks the field per file.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use crate::audit::Audit;
use crate::error::{Error, Result};
use crate::runtime::Paths;
use crate::secret::{SecretBytes, SecretFields, SecretValue};
use hush_config::ErrorClass;
use hush_config::{SidecarConfig, SourceKind, SourceRef};

/// A boxed future for the single-threaded runtime (no `Send` needed).
pub(crate) type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// What a provider remembers about a delivered secret to check it cheaply later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// No cheap check exists (KV v1): the loop fetches again each cycle and compares.
    None,
    /// A KV v2 version number.
    Kv2(u64),
    /// A fixed version that can never change (`?version=N`, AWS `version-id`).
    Pinned,
    /// A leased (dynamic) secret: it changes only when the provider says so from `maintain`.
    Leased,
    /// An opaque store version (an AWS VersionId).
    Opaque(String),
}

/// One fetched secret.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The secret: all its fields, or its single value.
    pub value: SecretValue,
    /// How to check it cheaply later.
    pub version: Version,
}

/// What one round of [`Provider::maintain`] did.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    /// Secrets to fetch again now.
    pub refetch: Vec<SourceRef>,
    /// Leases renewed.
    pub leases_renewed: u32,
    /// Whether the token was renewed or replaced by a fresh login.
    pub token_renewed: bool,
    /// Replaced leases revoked.
    pub leases_revoked: u32,
    /// Replaced leases the policy does not let us revoke (no `update` on `sys/leases/revoke`).
    pub lease_revocations_forbidden: u32,
    /// Replaced leases whose revocation failed otherwise (they end at their TTL).
    pub lease_revocations_failed: u32,
}

/// The outcome of a cheap check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Same version as held: nothing to do.
    Unchanged,
    /// Fetch it again.
    Changed,
}

/// The secret behind a reference, without the per-file selector (`#field`, `#json-key`): files
/// with the same key share one fetch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FetchKey(String);

impl FetchKey {
    /// The key of a reference, plus the reference to fetch for it.
    pub(crate) fn of(source: &SourceRef) -> (FetchKey, SourceRef) {
        let stripped = match source {
            SourceRef::Vault { path, version, .. } => SourceRef::Vault {
                path: path.clone(),
                field: None,
                version: *version,
            },
            SourceRef::Pki {
                mount, role, issue, ..
            } => SourceRef::Pki {
                mount: mount.clone(),
                role: role.clone(),
                field: None,
                issue: issue.clone(),
            },
            SourceRef::Aws { id, stage, .. } => SourceRef::Aws {
                id: id.clone(),
                json_key: None,
                stage: stage.clone(),
            },
            other => other.clone(),
        };
        (FetchKey(stripped.to_string()), stripped)
    }

    /// The canonical reference string (a path, never a value).
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// The operations every secret store offers the refresh loop.
pub(crate) trait Provider {
    /// Fetches every field of the secret behind `source` (already stripped of its selector).
    fn fetch<'a>(&'a mut self, source: &'a SourceRef) -> LocalBoxFuture<'a, Result<Fetched>>;

    /// Checks held secrets cheaply, in one batch where the store allows it. The result has one
    /// entry per input, in order.
    fn check<'a>(
        &'a mut self,
        held: &'a [(&'a SourceRef, &'a Version)],
    ) -> LocalBoxFuture<'a, Vec<Result<Check>>>;

    /// When [`Provider::maintain`] is next due (token or lease renewal); `None` if never.
    fn next_maintenance(&self) -> Option<Instant> {
        None
    }

    /// Renews what is due. Reports the references whose secrets must be fetched again now (a
    /// lease near its `max_ttl`, or leases tied to a token that had to be replaced).
    fn maintain(&mut self) -> LocalBoxFuture<'_, Result<Maintenance>> {
        Box::pin(async { Ok(Maintenance::default()) })
    }

    /// When the lease behind `source` ends if not renewed (metrics only).
    fn lease_expiry(&self, _source: &SourceRef) -> Option<Instant> {
        None
    }

    /// The id of the lease behind `source`, for the audit trail (which records only its hash).
    fn lease_id(&self, _source: &SourceRef) -> Option<&str> {
        None
    }

    /// Revokes leases and the token, best effort (SIGTERM in sidecar mode only).
    fn revoke_all(&mut self) -> LocalBoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

impl Error {
    /// Whether retrying can help. Errors that are not store errors (a bad field, a render
    /// failure, a config problem) are permanent.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Store { class, .. } => *class,
            Error::Output { .. } | Error::Io { .. } => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    /// A store error.
    pub fn store(store: &'static str, class: ErrorClass, reason: impl Into<String>) -> Error {
        Error::Store {
            store,
            class,
            reason: reason.into(),
        }
    }

    /// A copy of this error as a store error of `store` (a store error is copied as is), for
    /// reporting one failure against every reference it answers.
    pub(crate) fn copy_as_store(&self, store: &'static str) -> Error {
        match self {
            Error::Store {
                store,
                class,
                reason,
            } => Error::store(store, *class, reason.clone()),
            other => Error::store(store, other.class(), other.to_string()),
        }
    }
}

/// The value one file gets from a fetched secret: the `#field` / `#json-key` it selects (a
/// single value that is a JSON object is parsed for it), else the whole secret. The error names
/// the field and the fields present, never a value.
pub(crate) fn select(
    value: &SecretValue,
    selector: Option<&str>,
) -> std::result::Result<SecretValue, String> {
    let Some(name) = selector else {
        return Ok(value.clone());
    };
    let parsed;
    let fields = match value {
        SecretValue::Fields(f) => f,
        SecretValue::Single(b) => {
            parsed = SecretFields::from_json_object(b.expose())
                .map_err(|e| format!("field \"{name}\" was asked for, but the secret is {e}"))?;
            &parsed
        }
    };
    fields
        .get(name)
        .map(|v: &SecretBytes| SecretValue::Single(v.clone()))
        .ok_or_else(|| {
            format!(
                "the secret has no field \"{name}\" (it has: {})",
                fields.names().collect::<Vec<_>>().join(", ")
            )
        })
}

/// The selector of a reference (`#field`, `#json-key`), if any.
pub(crate) fn selector(source: &SourceRef) -> Option<&str> {
    match source {
        SourceRef::Vault { field, .. } | SourceRef::Pki { field, .. } => field.as_deref(),
        SourceRef::Aws { json_key, .. } => json_key.as_deref(),
        SourceRef::Sealed { .. } => None,
    }
}

/// Builds the provider for `kind`. Called once per kind the pod actually uses, so unused
/// providers cost nothing at run time. Only Vault holds leases and a token, so only it records
/// its own renewals and revocations; every fetch is recorded by the refresh engine.
pub(crate) fn build(
    kind: SourceKind,
    cfg: &SidecarConfig,
    paths: &Paths,
    audit: &Audit,
) -> Result<Box<dyn Provider>> {
    match kind {
        SourceKind::Vault => Ok(Box::new(crate::vault::VaultProvider::new(
            cfg,
            paths,
            audit.clone(),
        )?)),
        SourceKind::Aws => Ok(Box::new(crate::aws::AwsProvider::new(
            cfg,
            &crate::runtime::ProcessEnv,
        )?)),
        SourceKind::Sealed => Ok(Box::new(crate::sealed::SealedProvider::new(cfg, paths)?)),
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_with_the_same_secret_share_a_key() {
        let a = SourceRef::parse("vault:database/creds/app#username").unwrap();
        let b = SourceRef::parse("vault:database/creds/app#password").unwrap();
        let c = SourceRef::parse("vault:secret/app?version=2").unwrap();
        let d = SourceRef::parse("vault:secret/app").unwrap();
        assert_eq!(FetchKey::of(&a).0, FetchKey::of(&b).0);
        assert_ne!(FetchKey::of(&c).0, FetchKey::of(&d).0);
        assert_eq!(
            FetchKey::of(&a).1,
            SourceRef::parse("vault:database/creds/app").unwrap()
        );
    }

    #[test]
    fn selection_picks_a_field_and_names_missing_ones() {
        let f = SecretFields::from_json_object(br#"{"user":"u","password":"canary-1"}"#).unwrap();
        let v = SecretValue::Fields(f);
        match select(&v, Some("user")).unwrap() {
            SecretValue::Single(b) => assert_eq!(b.expose(), b"u"),
            other => panic!("{other:?}"),
        }
        let e = select(&v, Some("nope")).unwrap_err();
        assert!(
            e.contains("nope") && e.contains("password") && !e.contains("canary"),
            "{e}"
        );
        let single = SecretValue::Single(SecretBytes::from_slice(br#"{"k":"v"}"#));
        match select(&single, Some("k")).unwrap() {
            SecretValue::Single(b) => assert_eq!(b.expose(), b"v"),
            other => panic!("{other:?}"),
        }
        assert!(
            select(
                &SecretValue::Single(SecretBytes::from_slice(b"canary-2")),
                Some("k")
            )
            .unwrap_err()
            .find("canary")
            .is_none()
        );
    }
}
