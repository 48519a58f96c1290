//! What `hush doctor` read from the cluster (and from `--repo`), as plain data. The reads happen in
//! `gather.rs`; every check in `checks.rs` is a pure function of one [`Snapshot`], so the rules
//! are unit-tested with hand-built snapshots and the e2e test only has to prove the reads. A value
//! that could not be read is recorded as [`Read::Unknown`] with the reason (RBAC, for example),
//! never guessed, so a narrower ClusterRole gives notes instead of false findings.

use std::collections::BTreeMap;

use hush_sealed_format::format::Scope;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;

/// Labels of an object.
pub(crate) type Labels = BTreeMap<String, String>;

/// Everything the checks look at.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The MutatingWebhookConfiguration doctor was pointed at (`--webhook`).
    pub(crate) webhook_name: String,
    /// `None`: it does not exist.
    pub(crate) mutating: Option<MutatingWebhookConfiguration>,
    /// Per webhook (by its `name` inside the configuration): its Service and TLS check.
    pub(crate) endpoints: BTreeMap<String, WebhookEndpoint>,
    /// Labels of the namespaces doctor looked at (the pods' namespaces, `kube-system`, the
    /// injector's), by name. A namespace that does not exist is absent.
    pub(crate) namespaces: BTreeMap<String, Read<Labels>>,
    /// The namespace the injector's configuration lives in.
    pub(crate) injector_namespace: String,
    /// The injector's current configuration (the chart's ConfigMap).
    pub(crate) injector: Read<InjectorSettings>,
    /// The pods in scope.
    pub(crate) pods: Vec<Pod>,
    /// The controller of each ReplicaSet and Job that owns a pod in scope:
    /// `(namespace, kind, name) -> Some((kind, name))` of its own controller, `None` without one.
    pub(crate) controllers: BTreeMap<(String, String, String), Option<(String, String)>>,
    /// ConfigMaps named by `sealed:` references: `(namespace, name) -> data keys`, `None` when
    /// the ConfigMap does not exist.
    pub(crate) configmaps: BTreeMap<(String, String), Read<Option<Vec<String>>>>,
    /// Whether each namespace with a `sealed:` reference has its `hush-identity` Secret.
    pub(crate) identities: BTreeMap<String, Read<bool>>,
    /// With `--repo`: the repository's sealed files and the cluster's sealed ConfigMaps.
    pub(crate) repo: Option<RepoState>,
    /// Seconds since the epoch when the snapshot was taken (certificate expiry).
    pub(crate) now: i64,
}

/// A value read from the cluster, or why it could not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read<T> {
    Known(T),
    Unknown(String),
}

impl<T: Default> Default for Read<T> {
    fn default() -> Self {
        Read::Known(T::default())
    }
}

/// The Service behind one webhook, and what dialing it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebhookEndpoint {
    /// `namespace/name` of the Service in the webhook's `clientConfig`.
    pub(crate) service: Option<(String, String)>,
    /// The Service exists.
    pub(crate) service_exists: Read<bool>,
    /// `ip:port` of each ready endpoint.
    pub(crate) ready: Read<Vec<String>>,
    /// The TLS check against the caBundle.
    pub(crate) tls: TlsProbe,
}

/// The outcome of dialing a webhook endpoint with the caBundle as the only trust anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsProbe {
    /// Not attempted (no endpoint, no caBundle, a URL webhook); the reason.
    NotTried(String),
    /// The handshake verified the serving certificate for the Service's name.
    Verified {
        /// The endpoint dialed.
        addr: String,
        /// `notAfter` of the serving certificate, seconds since the epoch.
        not_after: i64,
    },
    /// The handshake failed on the certificate: the caBundle does not verify it.
    Rejected { addr: String, reason: String },
    /// The endpoint could not be reached from here (a note, not a finding).
    Unreachable { addr: String, reason: String },
}

/// What the injector injects today, from its configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct InjectorSettings {
    /// Where it was read from (`ConfigMap ns/name`).
    pub(crate) source: String,
    /// `sidecar.image`.
    pub(crate) sidecar_image: Option<String>,
    /// The `operator:` section as JSON, when present.
    pub(crate) operator: Option<serde_json::Value>,
    /// `vault.caFile` is set: the injector inlines that file as `operator.vault.caPem`, which doctor
    /// cannot see.
    pub(crate) vault_ca_file: bool,
}

/// The repository side of `--repo`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RepoState {
    /// The repository directory.
    pub(crate) dir: String,
    /// Sealed files found under it.
    pub(crate) files: Vec<RepoFile>,
    /// Sealed ConfigMaps in the cluster, in scope.
    pub(crate) cluster: Vec<ClusterSealed>,
}

/// One sealed file of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoFile {
    pub(crate) path: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) scope: Scope,
    /// The file's own recipients, sorted.
    pub(crate) recipients: Vec<String>,
    /// What `.hush.yaml` says the recipients should be (sorted), or why that is unknown.
    pub(crate) rule_recipients: Result<Vec<String>, String>,
}

/// One sealed ConfigMap in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterSealed {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// Scope and sorted recipients from its `_hush` key, or why they could not be read.
    pub(crate) meta: Result<(Scope, Vec<String>), String>,
}
