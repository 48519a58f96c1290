//! The reads of `hush doctor`: everything it looks at, fetched with the user's kubeconfig through
//! kube-rs, plus the TLS dial and the `--repo` files, into one [`Snapshot`]. Only `get` and `list`
//! are used (the ClusterRole in `deploy/manifests/hush-doctor-clusterrole.yaml`); nothing is ever
//! written. The `hush-identity` Secret is read as metadata only (`PartialObjectMetadata`), so the
//! identity never reaches this process even when RBAC would allow it. Reads that the pods and the
//! webhook cannot do without are fatal; the others become [`Read::Unknown`] with the reason, which
//! the checks turn into notes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hush_config::annotations;
use hush_contract::IDENTITY_SECRET;
use hush_sealed_format::format::LABEL as SEALED_LABEL;
use hush_sealed_format::sealed::{self, SealedConfigMap};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, ObjectMeta};
use kube::{Api, Client};
use serde::Deserialize;

use super::checks::{KUBE_SYSTEM, sealed_refs};
use super::snapshot::{
    ClusterSealed, InjectorSettings, Read, RepoFile, RepoState, Snapshot, TlsProbe, WebhookEndpoint,
};
use super::tls;
use crate::{Error, Result, Rules};

/// Where doctor looks.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The MutatingWebhookConfiguration.
    pub(crate) webhook: String,
    /// Namespace of the injector's configuration; default: the webhook Service's.
    pub(crate) injector_namespace: Option<String>,
    /// Name of the injector's ConfigMap; default: the webhook Service's name.
    pub(crate) injector_config: Option<String>,
    /// One namespace, or `None` for all.
    pub(crate) namespace: Option<String>,
    /// The repository to compare sealed ConfigMaps with.
    pub(crate) repo: Option<std::path::PathBuf>,
}

/// The chart's namespace and key of the injector's configuration file.
const DEFAULT_INJECTOR_NAMESPACE: &str = "hush-system";
const CONFIG_KEY: &str = "config.yaml";
/// Label of an EndpointSlice naming its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Endpoints dialed at most, until one answers.
const MAX_DIALS: usize = 3;

/// Why a read failed, for notes and errors; a 403 names the ClusterRole that grants the read.
fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "forbidden ({}); deploy/manifests/hush-doctor-clusterrole.yaml grants what doctor reads",
            s.message
        ),
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => format!(
            "{other}; check that the kubeconfig's apiserver is reachable (kubectl cluster-info)"
        ),
    }
}

fn fatal(action: &str, e: &kube::Error) -> Error {
    Error::Cluster {
        action: action.to_string(),
        reason: reason(e),
    }
}

fn known<T>(r: kube::Result<T>) -> Read<T> {
    match r {
        Ok(v) => Read::Known(v),
        Err(e) => Read::Unknown(reason(&e)),
    }
}

/// Reads everything the checks need.
pub(crate) async fn gather(client: &Client, t: &Target, now: i64) -> Result<Snapshot> {
    let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get_opt(&t.webhook)
        .await
        .map_err(|e| {
            fatal(
                &format!("reading MutatingWebhookConfiguration {}", t.webhook),
                &e,
            )
        })?;
    let webhooks: Vec<MutatingWebhook> = mutating
        .as_ref()
        .and_then(|m| m.webhooks.clone())
        .unwrap_or_default();

    let mut endpoints = BTreeMap::new();
    for w in &webhooks {
        endpoints.insert(w.name.clone(), endpoint(client, w).await);
    }
    let service = webhooks
        .iter()
        .find_map(|w| w.client_config.service.as_ref())
        .map(|s| (s.namespace.clone(), s.name.clone()));
    let injector_namespace = t
        .injector_namespace
        .clone()
        .or_else(|| service.as_ref().map(|s| s.0.clone()))
        .unwrap_or_else(|| DEFAULT_INJECTOR_NAMESPACE.to_string());
    let config_name = t
        .injector_config
        .clone()
        .or_else(|| service.as_ref().map(|s| s.1.clone()))
        .unwrap_or_else(|| t.webhook.clone());
    let injector = injector_settings(client, &injector_namespace, &config_name).await;

    let pods = match &t.namespace {
        Some(ns) => Api::<Pod>::namespaced(client.clone(), ns),
        None => Api::<Pod>::all(client.clone()),
    }
    .list(&ListParams::default())
    .await
    .map_err(|e| fatal("listing pods", &e))?
    .items;

    // Namespaces: the pods', kube-system and each webhook Service's.
    let mut wanted: BTreeSet<String> = BTreeSet::from([KUBE_SYSTEM.to_string()]);
    wanted.insert(injector_namespace.clone());
    for w in &webhooks {
        if let Some(s) = &w.client_config.service {
            wanted.insert(s.namespace.clone());
        }
    }
    wanted.extend(t.namespace.iter().cloned());
    wanted.extend(pods.iter().filter_map(|p| p.metadata.namespace.clone()));
    let ns_api = Api::<Namespace>::all(client.clone());
    let mut namespaces = BTreeMap::new();
    for ns in wanted {
        match ns_api.get_opt(&ns).await {
            Ok(Some(n)) => {
                namespaces.insert(ns, Read::Known(n.metadata.labels.unwrap_or_default()));
            }
            Ok(None) => {}
            Err(e) => {
                namespaces.insert(ns, Read::Unknown(reason(&e)));
            }
        }
    }

    // The controllers of annotated pods' ReplicaSets and Jobs, and their sealed references.
    let mut controllers = BTreeMap::new();
    let mut configmaps = BTreeMap::new();
    let mut identities = BTreeMap::new();
    for pod in &pods {
        let a = pod.metadata.annotations.clone().unwrap_or_default();
        if !annotations::inject_requested(&a) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        for o in pod.metadata.owner_references.iter().flatten() {
            if o.controller != Some(true) || !matches!(o.kind.as_str(), "ReplicaSet" | "Job") {
                continue;
            }
            let k = (ns.clone(), o.kind.clone(), o.name.clone());
            if controllers.contains_key(&k) {
                continue;
            }
            let meta = if o.kind == "ReplicaSet" {
                Api::<ReplicaSet>::namespaced(client.clone(), &ns)
                    .get_opt(&o.name)
                    .await
                    .map(|x| x.map(|x| x.metadata))
            } else {
                Api::<Job>::namespaced(client.clone(), &ns)
                    .get_opt(&o.name)
                    .await
                    .map(|x| x.map(|x| x.metadata))
            };
            controllers.insert(k, controller_of(meta.ok().flatten().as_ref()));
        }
        let refs = sealed_refs(&a);
        for (cm, _) in &refs {
            let k = (ns.clone(), cm.clone());
            if configmaps.contains_key(&k) {
                continue;
            }
            let read = Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .get_opt(cm)
                .await
                .map(|c| c.map(|c| c.data.unwrap_or_default().into_keys().collect()));
            configmaps.insert(k, known(read));
        }
        if !refs.is_empty() && !identities.contains_key(&ns) {
            let read = Api::<Secret>::namespaced(client.clone(), &ns)
                .get_metadata_opt(IDENTITY_SECRET)
                .await
                .map(|m| m.is_some());
            identities.insert(ns.clone(), known(read));
        }
    }

    let repo = match &t.repo {
        Some(dir) => Some(repo_state(client, dir, t.namespace.as_deref()).await?),
        None => None,
    };

    Ok(Snapshot {
        webhook_name: t.webhook.clone(),
        mutating,
        endpoints,
        namespaces,
        injector_namespace,
        injector,
        pods,
        controllers,
        configmaps,
        identities,
        repo,
        now,
    })
}

fn controller_of(meta: Option<&ObjectMeta>) -> Option<(String, String)> {
    meta?
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone()))
}

/// The webhook's Service, its ready endpoints, and the TLS check of one of them.
async fn endpoint(client: &Client, w: &MutatingWebhook) -> WebhookEndpoint {
    let Some(svc) = &w.client_config.service else {
        return WebhookEndpoint {
            service: None,
            service_exists: Read::Known(false),
            ready: Read::Known(Vec::new()),
            tls: TlsProbe::NotTried("the webhook calls a URL, not a Service".into()),
        };
    };
    let service = Api::<Service>::namespaced(client.clone(), &svc.namespace)
        .get_opt(&svc.name)
        .await;
    // The Service port the webhook calls (443 by default) and its name, which EndpointSlices
    // carry.
    let want_port = svc.port.unwrap_or(443);
    let port_name = match &service {
        Ok(Some(s)) => s
            .spec
            .as_ref()
            .and_then(|spec| spec.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.port == want_port))
            .map(|p| p.name.clone().unwrap_or_default()),
        _ => None,
    };
    let ready = match &service {
        Ok(Some(_)) => {
            known(ready_endpoints(client, &svc.namespace, &svc.name, port_name.as_deref()).await)
        }
        Ok(None) => Read::Known(Vec::new()),
        Err(e) => Read::Unknown(reason(e)),
    };
    let bundle = w
        .client_config
        .ca_bundle
        .as_ref()
        .map(|b| b.0.clone())
        .unwrap_or_default();
    let server_name = format!("{}.{}.svc", svc.name, svc.namespace);
    let tls = match &ready {
        _ if bundle.is_empty() => TlsProbe::NotTried("the caBundle is empty".into()),
        Read::Known(addrs) if !addrs.is_empty() => {
            let mut last = TlsProbe::NotTried("no endpoint".into());
            for addr in addrs.iter().take(MAX_DIALS) {
                last = tls::probe(addr, &server_name, &bundle).await;
                if !matches!(last, TlsProbe::Unreachable { .. }) {
                    break;
                }
            }
            last
        }
        _ => TlsProbe::NotTried("no ready endpoint to dial".into()),
    };
    WebhookEndpoint {
        service: Some((svc.namespace.clone(), svc.name.clone())),
        service_exists: known(service.map(|s| s.is_some())),
        ready,
        tls,
    }
}

/// `ip:port` of every ready endpoint of a Service's port (by its name, as EndpointSlices carry it).
async fn ready_endpoints(
    client: &Client,
    ns: &str,
    service: &str,
    port_name: Option<&str>,
) -> kube::Result<Vec<String>> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={service}")))
        .await?;
    let mut out = Vec::new();
    for slice in slices.items {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| port_name.is_none_or(|n| p.name.as_deref().unwrap_or_default() == n))
            .and_then(|p| p.port);
        let Some(port) = port else { continue };
        for e in &slice.endpoints {
            // An unset `ready` means ready (EndpointSlice API).
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                out.push(if a.contains(':') {
                    format!("[{a}]:{port}")
                } else {
                    format!("{a}:{port}")
                });
            }
        }
    }
    Ok(out)
}

/// The part of the injector's config file doctor reads. Not `deny_unknown_fields`: the file
/// belongs to the injector, which refuses unknown fields itself, and a newer injector's new
/// section must not make an older doctor fail.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct InjectorFile {
    #[serde(default)]
    sidecar: Option<SidecarSection>,
    #[serde(default)]
    operator: Option<serde_json::Value>,
    #[serde(default)]
    vault: Option<VaultSection>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SidecarSection {
    #[serde(default)]
    image: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct VaultSection {
    #[serde(default)]
    ca_file: Option<String>,
}

async fn injector_settings(client: &Client, ns: &str, name: &str) -> Read<InjectorSettings> {
    let source = format!("ConfigMap {ns}/{name}");
    let cm = match Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
    {
        Ok(Some(cm)) => cm,
        Ok(None) => {
            return Read::Unknown(format!("{source} (the chart's injector config) is missing"));
        }
        Err(e) => return Read::Unknown(format!("{source}: {}", reason(&e))),
    };
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(CONFIG_KEY)) else {
        return Read::Unknown(format!("{source} has no {CONFIG_KEY}"));
    };
    match parse_injector_config(text, &source) {
        Ok(s) => Read::Known(s),
        Err(e) => Read::Unknown(e.to_string()),
    }
}

/// Parses the injector's config file (pure, for the unit tests).
pub(crate) fn parse_injector_config(text: &str, source: &str) -> Result<InjectorSettings> {
    let file: InjectorFile =
        hush_sealed_format::yaml::parse(text, &format!("{CONFIG_KEY} of {source}"))?;
    Ok(InjectorSettings {
        source: source.to_string(),
        sidecar_image: file.sidecar.and_then(|s| s.image),
        operator: file.operator,
        vault_ca_file: file.vault.is_some_and(|v| v.ca_file.is_some()),
    })
}

/// `--repo`: the repository's sealed files with the recipients `.hush.yaml` wants for each, and
/// the cluster's sealed ConfigMaps in scope.
async fn repo_state(client: &Client, dir: &Path, namespace: Option<&str>) -> Result<RepoState> {
    let mut paths = Vec::new();
    crate::cli::collect_sealed(dir, &mut paths)?;
    let rules = Rules::find(dir)?;
    let mut files = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(cm) = SealedConfigMap::parse(&text, &shown) else {
            continue;
        };
        let Ok(meta) = sealed::check_structure(
            &cm.data,
            &cm.namespace,
            &cm.name,
            hush_sealed_format::META_KEY,
        ) else {
            continue;
        };
        let rule_recipients = match &rules {
            None => Err(format!("no .hush.yaml in {} or above", dir.display())),
            Some(rules) => match rules.recipients_for(&path) {
                Ok(Some(r)) => sealed::normalise_recipients(r).map_err(|e| e.to_string()),
                Ok(None) => Err(format!(
                    "no creation rule in {} matches it",
                    rules.path.display()
                )),
                Err(e) => Err(e.to_string()),
            },
        };
        files.push(RepoFile {
            path: shown,
            namespace: cm.namespace,
            name: cm.name,
            scope: meta.scope,
            recipients: meta.recipients,
            rule_recipients,
        });
    }
    let api = match namespace {
        Some(ns) => Api::<ConfigMap>::namespaced(client.clone(), ns),
        None => Api::<ConfigMap>::all(client.clone()),
    };
    let listed = api
        .list(&ListParams::default().labels(SEALED_LABEL))
        .await
        .map_err(|e| fatal("listing sealed ConfigMaps", &e))?;
    let cluster = listed
        .items
        .into_iter()
        .map(|cm| {
            let ns = cm.metadata.namespace.clone().unwrap_or_default();
            let name = cm.metadata.name.clone().unwrap_or_default();
            let data = cm.data.unwrap_or_default();
            let meta = sealed::check_structure(&data, &ns, &name, hush_sealed_format::META_KEY)
                .map(|m| (m.scope, m.recipients))
                .map_err(|e| e.to_string());
            ClusterSealed {
                namespace: ns,
                name,
                meta,
            }
        })
        .collect();
    Ok(RepoState {
        dir: dir.display().to_string(),
        files,
        cluster,
    })
}
