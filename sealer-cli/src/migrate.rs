//! `hush migrate`: reads a manifest written for the Vault Agent Injector (vault-k8s,
//! `vault.hashicorp.com/` annotations) and prints the Hush annotations that do the same job, so a
//! team can move workload by workload without re-learning every option. It translates only what
//! has the same meaning in Hush; everything else is either an operator setting in Hush (reported
//! as a note: the injector's config owns images, resources and server addresses) or has no safe
//! equivalent (reported as a problem that names the annotation, the reason and what to do). One
//! problem anywhere means nothing is printed on standard output, so a pipeline never applies a
//! half-translated manifest. Consul Template bodies are translated to MiniJinja only for the forms
//! almost every vault-k8s template uses (`with secret`, `.Data.data.x`, `index`, `range $k, $v`,
//! `toJSON`); anything else is refused rather than guessed. The result is checked by the same
//! annotation parser the webhook runs, so what `migrate` prints is what `kubectl apply` admits.
//! The mapping of every vault-k8s annotation is documented in `docs/migrating.md`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use hush_config::annotations as hush;
use hush_config::{OperatorSettings, VaultSettings};
use hush_sealed_format::yaml;

/// Prefix of every vault-k8s annotation.
pub(crate) const VAULT_PREFIX: &str = "vault.hashicorp.com/";
/// Where vault-k8s mounts the secrets in the app containers unless told otherwise.
const VAULT_K8S_MOUNT: &str = "/vault/secrets";

/// What `hush migrate` found in one manifest.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// The Hush annotations, one commented block per object (empty when there are problems).
    pub(crate) output: String,
    /// Differences the user should know about; they do not stop the translation.
    pub(crate) notes: Vec<String>,
    /// Annotations that cannot be translated; any of them means no output.
    pub(crate) problems: Vec<String>,
    /// Objects that carried vault-k8s annotations.
    pub(crate) objects: usize,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Object {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<Meta>,
    #[serde(default)]
    spec: Option<WorkloadSpec>,
    #[serde(default)]
    items: Option<Vec<Object>>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WorkloadSpec {
    #[serde(default)]
    template: Option<PodTemplate>,
    #[serde(default)]
    job_template: Option<JobTemplate>,
}

#[derive(Deserialize, Default)]
struct PodTemplate {
    #[serde(default)]
    metadata: Option<Meta>,
}

#[derive(Deserialize, Default)]
struct JobTemplate {
    #[serde(default)]
    spec: Option<Box<WorkloadSpec>>,
}

/// Translates every object of `text` (YAML or JSON, one or more documents).
pub(crate) fn migrate_manifest(text: &str, what: &str) -> crate::Result<Report> {
    let objects: Vec<Object> = yaml::parse_all(text, what)?;
    let mut report = Report::default();
    for object in &objects {
        visit(object, &mut report);
    }
    if !report.problems.is_empty() {
        report.output.clear();
    }
    Ok(report)
}

fn visit(object: &Object, report: &mut Report) {
    let kind = object.kind.as_deref().unwrap_or("object");
    if let Some(items) = &object.items {
        for item in items {
            visit(item, report);
        }
    }
    let label = {
        let meta = object.metadata.as_ref();
        let name = meta.and_then(|m| m.name.as_deref()).unwrap_or("<no name>");
        match meta.and_then(|m| m.namespace.as_deref()) {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        }
    };
    let namespace = object
        .metadata
        .as_ref()
        .and_then(|m| m.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let mut places: Vec<(&str, &Meta)> = Vec::new();
    if let (true, Some(m)) = (kind == "Pod", &object.metadata) {
        places.push(("metadata.annotations", m));
    }
    if let Some(spec) = &object.spec {
        if let Some(m) = spec.template.as_ref().and_then(|t| t.metadata.as_ref()) {
            places.push(("spec.template.metadata.annotations", m));
        }
        if let Some(m) = spec
            .job_template
            .as_ref()
            .and_then(|j| j.spec.as_ref())
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
        {
            places.push(("spec.jobTemplate.spec.template.metadata.annotations", m));
        }
    }
    for (path, meta) in places {
        let Some(annotations) = &meta.annotations else {
            continue;
        };
        if !annotations.keys().any(|k| k.starts_with(VAULT_PREFIX)) {
            continue;
        }
        report.objects += 1;
        let at = format!("{label} ({path})");
        match translate(annotations, &namespace) {
            Translation::NotInjected => report.notes.push(format!(
                "{at}: vault.hashicorp.com/agent-inject is not \"true\", so vault-k8s did not \
                 inject this pod; nothing to translate"
            )),
            Translation::Done { annotations, notes } => {
                report
                    .notes
                    .extend(notes.into_iter().map(|n| format!("{at}: {n}")));
                report.output.push_str(&format!(
                    "# {at}: replace every vault.hashicorp.com/ annotation with\n"
                ));
                for (k, v) in &annotations {
                    push_annotation(&mut report.output, k, v);
                }
            }
            Translation::Refused(problems) => report
                .problems
                .extend(problems.into_iter().map(|p| format!("{at}: {p}"))),
        }
    }
}

/// Appends `key: value` as YAML, a multi-line value as a literal block when that is exact. No
/// blank line follows a block: a `|+` block would take it as part of its value.
fn push_annotation(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push(':');
    if value.contains('\n') {
        let mut block = String::from(" ");
        if yaml::push_literal_block(&mut block, value, 2) {
            out.push_str(&block);
            if !block.ends_with('\n') {
                out.push('\n');
            }
            return;
        }
    }
    out.push(' ');
    out.push_str(&yaml::quote(value));
    out.push('\n');
}

/// The result of translating one annotation map.
#[derive(Debug, PartialEq)]
enum Translation {
    /// `agent-inject` is absent or false: vault-k8s would not inject.
    NotInjected,
    /// The Hush annotations, and what differs.
    Done {
        annotations: BTreeMap<String, String>,
        notes: Vec<String>,
    },
    /// What could not be translated (never empty).
    Refused(Vec<String>),
}

/// One secret of the pod, gathered from its per-secret annotations.
#[derive(Default)]
struct SecretIn<'a> {
    path: Option<&'a str>,
    template: Option<&'a str>,
    file: Option<&'a str>,
    perms: Option<&'a str>,
}

/// Per-secret annotations: each is `<prefix><raw name>`. Longer prefixes first, so that
/// `agent-inject-template-file-x` is not read as the template of `file-x`.
const PER_SECRET: &[&str] = &[
    "agent-inject-template-file-",
    "agent-inject-template-",
    "agent-inject-secret-",
    "agent-inject-file-",
    "agent-inject-perms-",
    "agent-inject-command-",
    "secret-volume-path-",
    "error-on-missing-key-",
    "preserve-secret-case-",
];

/// Pod-level vault-k8s annotations that the injector's own configuration owns in Hush, with the
/// setting that replaces them (dropped with a note).
const OPERATOR_OWNED: &[(&str, &str)] = &[
    ("agent-image", "the sidecar image (`image` in the chart)"),
    ("agent-limits-cpu", "`sidecar.resources`"),
    ("agent-limits-mem", "`sidecar.resources`"),
    ("agent-limits-ephemeral", "`sidecar.resources`"),
    ("agent-requests-cpu", "`sidecar.resources`"),
    ("agent-requests-mem", "`sidecar.resources`"),
    ("agent-requests-ephemeral", "`sidecar.resources`"),
    ("agent-run-as-user", "the sidecar's fixed non-root user"),
    ("agent-run-as-group", "the sidecar's fixed non-root user"),
    (
        "agent-run-as-same-user",
        "the sidecar's fixed non-root user",
    ),
    (
        "agent-set-security-context",
        "the sidecar's fixed restricted security context",
    ),
    (
        "agent-service-account-token-volume-name",
        "the sidecar's own projected token",
    ),
    ("service", "`operator.vault.addr`"),
    ("ca-cert", "`operator.vault.caPem`"),
    ("ca-key", "`operator.vault.caPem`"),
    ("tls-server-name", "`operator.vault.addr` (its host name)"),
    ("log-level", "the injector's sidecar log settings"),
    ("log-format", "the injector's sidecar log settings"),
    ("go-max-procs", "nothing (the sidecar is single-threaded)"),
    (
        "client-max-retries",
        "the sidecar's built-in backoff (it retries until the store answers)",
    ),
    ("client-timeout", "the sidecar's built-in request timeouts"),
    ("auth-min-backoff", "the sidecar's built-in backoff"),
    ("auth-max-backoff", "the sidecar's built-in backoff"),
    (
        "agent-disable-idle-connections",
        "nothing (one connection per sidecar)",
    ),
    (
        "agent-disable-keep-alives",
        "nothing (one connection per sidecar)",
    ),
    (
        "template-max-connections-per-host",
        "nothing (one connection per sidecar)",
    ),
    (
        "template-config-exit-on-retry-failure",
        "nothing: Hush keeps the last good files and retries; the startup probe holds the app",
    ),
    (
        "agent-auto-auth-exit-on-err",
        "nothing: Hush retries logins with backoff",
    ),
    (
        "agent-enable-quit",
        "nothing: the native sidecar ends with the pod",
    ),
    ("agent-metrics-listener-port", "`operator.metricsPort`"),
    (
        "agent-revoke-grace",
        "nothing: Hush revokes at once on SIGTERM, within the pod's grace period",
    ),
    (
        "agent-init-first",
        "nothing: Hush's native sidecar starts before the app's init containers that get the mount",
    ),
    (
        "agent-share-process-namespace",
        "`podSecurity.allowShareProcessNamespace`, set only with `hush.dev/on-change: signal:...`",
    ),
    (
        "agent-cache-use-auto-auth-token",
        "nothing (no agent cache)",
    ),
    ("agent-cache-listener-port", "nothing (no agent cache)"),
    ("agent-cache-exit-on-err", "nothing (no agent cache)"),
    ("auth-path", "`operator.vault.authMount` / `approleMount`"),
];

/// Pod-level vault-k8s annotations with no Hush equivalent, and why.
const REFUSED: &[(&str, &str)] = &[
    (
        "agent-inject-token",
        "Hush never writes its Vault token where the app can read it (docs/threat-model.md); \
         give the app its own secrets instead",
    ),
    (
        "agent-configmap",
        "a full Vault Agent configuration cannot be translated; write the hush.dev/ annotations \
         by hand (README, Annotations)",
    ),
    (
        "agent-json-patch",
        "the sidecar's container spec is owned by the injector's configuration, not by pods",
    ),
    (
        "agent-init-json-patch",
        "the sidecar's container spec is owned by the injector's configuration, not by pods",
    ),
    (
        "agent-copy-volume-mounts",
        "the sidecar never mounts the app's volumes (docs/threat-model.md)",
    ),
    (
        "tls-secret",
        "Hush does not present client certificates to Vault; use kubernetes or approle auth",
    ),
    (
        "client-cert",
        "Hush does not present client certificates to Vault; use kubernetes or approle auth",
    ),
    (
        "client-key",
        "Hush does not present client certificates to Vault; use kubernetes or approle auth",
    ),
    (
        "proxy-address",
        "the sidecar connects to Vault directly; it has no HTTP proxy setting",
    ),
];

/// AppRole parameters that vault-k8s reads from files of `agent-extra-secret`; Hush reads the
/// same Secret's `role_id` and `secret_id` keys itself.
const APPROLE_CONFIG: &[&str] = &[
    "auth-config-role-id-file-path",
    "auth-config-secret-id-file-path",
    "auth-config-remove-secret-id-file-after-reading",
];

/// Go's `strconv.ParseBool`, which vault-k8s uses.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn translate(all: &BTreeMap<String, String>, namespace: &str) -> Translation {
    let vault: BTreeMap<&str, &str> = all
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(VAULT_PREFIX).map(|n| (n, v.as_str())))
        .collect();
    if vault.get("agent-inject").copied().and_then(go_bool) != Some(true) {
        return Translation::NotInjected;
    }
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut notes: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let key = |name: &str| format!("{VAULT_PREFIX}{name}");
    let set = |out: &mut BTreeMap<String, String>, name: &str, value: &str| {
        out.insert(hush::key(name), value.to_owned());
    };

    if all
        .keys()
        .any(|k| k.starts_with(hush_contract::ANNOTATION_PREFIX))
    {
        problems.push(
            "it already has hush.dev/ annotations; migrate a manifest that uses only vault-k8s"
                .into(),
        );
    }
    set(&mut out, "inject", "true");

    // Per-secret annotations, grouped by the raw name vault-k8s uses to pair them.
    let mut secrets: BTreeMap<&str, SecretIn<'_>> = BTreeMap::new();
    let mut commands: BTreeMap<&str, &str> = BTreeMap::new();
    let auth_type = vault.get("auth-type").copied().unwrap_or("kubernetes");
    for (&name, &value) in &vault {
        if let Some(prefix) = PER_SECRET.iter().find(|p| name.starts_with(**p)) {
            let raw = &name[prefix.len()..];
            if raw.is_empty() {
                problems.push(format!("{}: no secret name after the prefix", key(name)));
                continue;
            }
            match *prefix {
                "agent-inject-secret-" => secrets.entry(raw).or_default().path = Some(value),
                "agent-inject-template-" => secrets.entry(raw).or_default().template = Some(value),
                "agent-inject-file-" => secrets.entry(raw).or_default().file = Some(value),
                "agent-inject-perms-" => secrets.entry(raw).or_default().perms = Some(value),
                "agent-inject-command-" => {
                    commands.insert(raw, value);
                }
                "agent-inject-template-file-" => problems.push(format!(
                    "{}: the template lives in a file of the agent's image or ConfigMap, which \
                     migrate cannot read; put its text in hush.dev/template-<file> as MiniJinja",
                    key(name)
                )),
                "secret-volume-path-" => problems.push(format!(
                    "{}: Hush mounts every file at one path (hush.dev/mount-path); read this \
                     file from there, or give it a link in the image",
                    key(name)
                )),
                "error-on-missing-key-" if go_bool(value) != Some(true) => notes.push(format!(
                    "{}: Hush templates always fail on a missing key (the last good file \
                         stays)",
                    key(name)
                )),
                _ => {} // preserve-secret-case-<name>: read when the file is named
            }
            continue;
        }
        match name {
            "agent-inject" | "agent-inject-status" | "agent-request-namespace" => {}
            "agent-inject-default-template" | "preserve-secret-case" | "auth-type" => {}
            "role" => set(&mut out, "role", value),
            "namespace" => {
                set(&mut out, "vault-namespace", value);
                notes.push(format!(
                    "{}: the operator must list {value:?} in vault.allowedNamespaces",
                    key(name)
                ));
            }
            "agent-inject-containers" => set(&mut out, "containers", value),
            "agent-pre-populate-only" => match go_bool(value) {
                Some(true) => set(&mut out, "mode", "init-only"),
                Some(false) => {}
                None => problems.push(bad_bool(&key(name))),
            },
            "agent-pre-populate" => match go_bool(value) {
                Some(false) => notes.push(format!(
                    "{}: Hush always holds the app until its files are written (the sidecar's \
                     startup probe); there is no mode without it",
                    key(name)
                )),
                Some(true) => {}
                None => problems.push(bad_bool(&key(name))),
            },
            "agent-revoke-on-shutdown" => match go_bool(value) {
                Some(b) => set(
                    &mut out,
                    "revoke-on-shutdown",
                    if b { "true" } else { "false" },
                ),
                None => problems.push(bad_bool(&key(name))),
            },
            "secret-volume-path" => set(&mut out, "mount-path", value),
            "template-static-secret-render-interval" => set(&mut out, "refresh", value),
            "agent-extra-secret" => {
                if auth_type == "approle" {
                    set(&mut out, "vault-auth", "approle");
                    set(&mut out, "vault-auth-secret", value);
                    notes.push(format!(
                        "{}: Hush reads the keys role_id and secret_id of Secret {value:?} \
                         (mounted into the sidecar only); rename the keys if they differ",
                        key(name)
                    ));
                } else {
                    problems.push(format!(
                        "{}: extra files for the agent have no use in Hush; only AppRole \
                         credentials are read from a Secret (hush.dev/vault-auth-secret)",
                        key(name)
                    ));
                }
            }
            "tls-skip-verify" => {
                if go_bool(value) == Some(true) {
                    notes.push(format!(
                        "{}: dropped: a pod can never turn off TLS verification in Hush; the \
                         operator gives Vault's CA (operator.vault.caPem)",
                        key(name)
                    ));
                }
            }
            "agent-cache-enable" => {
                if go_bool(value) == Some(true) {
                    problems.push(format!(
                        "{}: Hush has no agent cache or proxy for the app; the app reads files",
                        key(name)
                    ));
                }
            }
            _ if APPROLE_CONFIG.contains(&name) && auth_type == "approle" => {}
            _ if name.starts_with("auth-config-") => problems.push(format!(
                "{}: auth method parameters are not translated; Hush's auth is chosen with \
                 hush.dev/vault-auth and the operator's mounts",
                key(name)
            )),
            _ if name.starts_with("agent-telemetry-") => notes.push(format!(
                "{}: dropped: the sidecar serves Prometheus metrics on operator.metricsPort",
                key(name)
            )),
            _ => {
                if let Some((_, setting)) = OPERATOR_OWNED.iter().find(|(n, _)| *n == name) {
                    if !(name == "auth-path" && value.trim_matches('/') == "auth/kubernetes") {
                        notes.push(format!(
                            "{}: dropped: in Hush this is the injector's configuration: \
                             {setting}",
                            key(name)
                        ));
                    }
                } else if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
                    problems.push(format!("{}: {why}", key(name)));
                } else {
                    problems.push(format!(
                        "{}: not a vault-k8s annotation migrate knows; check its spelling, or \
                         translate it by hand (docs/migrating.md)",
                        key(name)
                    ));
                }
            }
        }
    }
    match auth_type {
        "kubernetes" => {}
        "approle" => {
            if !vault.contains_key("agent-extra-secret") {
                problems.push(format!(
                    "{}: approle needs the Secret with role_id and secret_id; name it with {}",
                    key("auth-type"),
                    key("agent-extra-secret")
                ));
            }
        }
        other => problems.push(format!(
            "{}: {other:?} is not an auth method Hush offers (kubernetes, approle, token)",
            key("auth-type")
        )),
    }
    if !out.contains_key(&hush::key("mount-path")) {
        set(&mut out, "mount-path", VAULT_K8S_MOUNT);
    }

    // Files.
    let json_default = vault.get("agent-inject-default-template").copied() == Some("json");
    let mut files: BTreeSet<String> = BTreeSet::new();
    for (raw, s) in &secrets {
        let preserve = vault
            .get(format!("preserve-secret-case-{raw}").as_str())
            .or_else(|| vault.get("preserve-secret-case"))
            .copied()
            .and_then(go_bool)
            == Some(true);
        let file = match s.file {
            Some(f) if f.contains('/') => {
                problems.push(format!(
                    "{}: {f:?} has a directory; Hush writes files at the top of its volume only",
                    key(&format!("agent-inject-file-{raw}"))
                ));
                continue;
            }
            Some(f) => f.to_owned(),
            None if preserve => (*raw).to_owned(),
            None => raw.to_lowercase(),
        };
        if !files.insert(file.clone()) {
            problems.push(format!(
                "secret {raw:?}: two secrets write the file {file:?}; give one another name"
            ));
            continue;
        }
        // vault-k8s fetches what a template names; the path annotation is then optional.
        let path = match (s.path, s.template) {
            (Some(p), _) => p,
            (None, Some(_)) => "",
            (None, None) => {
                problems.push(format!(
                    "secret {raw:?}: no {} annotation names its Vault path",
                    key(&format!("agent-inject-secret-{raw}"))
                ));
                continue;
            }
        };
        match s.template {
            Some(body) => match go_template(body) {
                Ok(t) => {
                    let source = t.path.as_deref().unwrap_or(path);
                    if source.is_empty() {
                        problems.push(format!(
                            "{}: the template names no secret (`with secret \"...\"`) and no \
                             path is given",
                            key(&format!("agent-inject-template-{raw}"))
                        ));
                        continue;
                    }
                    if !path.is_empty() && t.path.as_deref().is_some_and(|p| p != path) {
                        notes.push(format!(
                            "file {file:?}: the template reads {source:?}, not the path of its \
                             agent-inject-secret annotation ({path:?}); Hush reads {source:?}, \
                             as Vault Agent did"
                        ));
                    }
                    set(&mut out, &format!("secret-{file}"), &vault_ref(source));
                    set(&mut out, &format!("template-{file}"), &t.jinja);
                }
                Err(reason) => problems.push(format!(
                    "{}: {reason}; write this template in MiniJinja by hand (README, \
                     Annotations: `data` holds the secret's fields)",
                    key(&format!("agent-inject-template-{raw}"))
                )),
            },
            None => {
                set(&mut out, &format!("secret-{file}"), &vault_ref(path));
                set(&mut out, &format!("format-{file}"), "json");
                notes.push(if json_default {
                    format!(
                        "file {file:?}: written as a JSON object of the secret's fields; \
                         Vault Agent's json template also wrapped KV v2 secrets in \
                         {{\"data\":...,\"metadata\":...}}"
                    )
                } else {
                    format!(
                        "file {file:?}: Vault Agent's default template wrote Go's map text \
                         (map[key:value]); Hush writes a JSON object of the secret's fields \
                         (hush.dev/format-{file}: json; or raw with #field for one value)"
                    )
                });
            }
        }
        if let Some(perms) = s.perms {
            set(&mut out, &format!("mode-{file}"), perms);
        }
    }
    if secrets.is_empty() {
        problems.push(format!(
            "no {} annotation: a Hush pod needs at least one secret",
            key("agent-inject-secret-<name>")
        ));
    }

    // Commands after rendering become one notification for the pod.
    let mut signals: BTreeSet<String> = BTreeSet::new();
    for (raw, cmd) in &commands {
        match signal_command(cmd) {
            Some(s) => {
                signals.insert(s);
            }
            None => problems.push(format!(
                "{}: Hush runs no commands; it notifies the app with hush.dev/on-change \
                 (http:<loopback url> or signal:<SIG>:<process>); only `kill -SIG $(pidof P)`, \
                 `pkill -SIG P` and `killall -SIG P` are translated",
                key(&format!("agent-inject-command-{raw}"))
            )),
        }
    }
    match signals.len() {
        0 => {}
        1 => {
            if let Some(s) = signals.into_iter().next() {
                notes.push(format!(
                    "hush.dev/on-change: {s} needs the operator's \
                     podSecurity.allowShareProcessNamespace; it is sent once per update of the \
                     whole set, not per file"
                ));
                set(&mut out, "on-change", &s);
            }
        }
        _ => problems.push(
            "the agent-inject-command annotations send different signals; Hush sends one \
             notification per update (hush.dev/on-change)"
                .into(),
        ),
    }

    if problems.is_empty() {
        // What we print must pass the webhook's own check.
        let mut operator = OperatorSettings {
            vault: Some(VaultSettings::new("https://vault.invalid:8200".into())),
            allow_signal: true,
            ..OperatorSettings::default()
        };
        if let (Some(v), Some(ns)) = (operator.vault.as_mut(), vault.get("namespace")) {
            v.allowed_namespaces.push((*ns).to_owned());
        }
        if let Err(e) = hush::check(&out, namespace, &operator) {
            problems.push(format!(
                "the translation does not pass Hush's annotation check: {e}"
            ));
        }
    }
    if problems.is_empty() {
        Translation::Done {
            annotations: out,
            notes,
        }
    } else {
        Translation::Refused(problems)
    }
}

fn bad_bool(key: &str) -> String {
    format!("{key}: not a boolean (true or false)")
}

/// `vault:<path>`; vault-k8s paths are API paths (`secret/data/app` for KV v2), which Hush
/// accepts as they are.
fn vault_ref(path: &str) -> String {
    format!("vault:{}", path.trim_matches('/'))
}

/// `signal:<SIG>:<process>` for the few post-render commands that only signal one process.
fn signal_command(cmd: &str) -> Option<String> {
    const SIGNALS: &[&str] = &["HUP", "USR1", "USR2", "TERM", "INT", "QUIT"];
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let sig = |w: &str| {
        let s = w.strip_prefix('-')?;
        let s = s.strip_prefix("SIG").unwrap_or(s);
        SIGNALS.contains(&s).then(|| s.to_owned())
    };
    let process = |w: &str| {
        (!w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        .then(|| w.to_owned())
    };
    let (s, p) = match words.as_slice() {
        ["kill", s, "$(pidof", p] => (sig(s)?, process(p.strip_suffix(')')?)?),
        ["kill", "-s", s, "$(pidof", p] => (sig(&format!("-{s}"))?, process(p.strip_suffix(')')?)?),
        ["pkill" | "killall", s, p] => (sig(s)?, process(p)?),
        _ => return None,
    };
    Some(format!("signal:{s}:{p}"))
}

/// A Consul Template body translated to MiniJinja.
#[derive(Debug, PartialEq)]
struct GoTemplate {
    /// The path of its `with secret "..."`, if any.
    path: Option<String>,
    jinja: String,
}

enum Block {
    With,
    Range(Vec<String>),
}

/// Translates the common forms of a Consul Template body; refuses anything else with the reason.
fn go_template(src: &str) -> Result<GoTemplate, String> {
    let mut jinja = String::with_capacity(src.len() + 32);
    let mut path: Option<String> = None;
    let mut stack: Vec<Block> = Vec::new();
    let mut rest = src;
    loop {
        let Some(start) = rest.find("{{") else {
            literal(rest, &mut jinja)?;
            break;
        };
        literal(&rest[..start], &mut jinja)?;
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "an action `{{` is never closed".to_owned())?;
        let mut inner = &after[..end];
        rest = &after[end + 2..];
        let trim_left = inner.len() >= 2
            && inner.starts_with('-')
            && inner[1..].starts_with(|c: char| c.is_ascii_whitespace());
        if trim_left {
            inner = &inner[1..];
        }
        let trim_right = inner.len() >= 2
            && inner.ends_with('-')
            && inner[..inner.len() - 1].ends_with(|c: char| c.is_ascii_whitespace());
        if trim_right {
            inner = &inner[..inner.len() - 1];
        }
        let (l, r) = (
            if trim_left { "-" } else { "" },
            if trim_right { "-" } else { "" },
        );
        let action = inner.trim();
        let vars: Vec<&str> = stack
            .iter()
            .flat_map(|b| match b {
                Block::Range(v) => v.iter().map(String::as_str).collect(),
                Block::With => Vec::new(),
            })
            .collect();
        let in_with = stack.iter().any(|b| matches!(b, Block::With));
        if action.starts_with("/*") {
            jinja.push_str(&format!("{{#{l} {r}#}}"));
        } else if let Some(arg) = action.strip_prefix("with secret ") {
            if in_with || path.is_some() {
                return Err("it reads more than one secret; write it by hand as one hush.dev/secret-<name> per secret and a template-only hush.dev/template-<file> that reads them as files[\"<name>\"] (README, Templates over several files)".into());
            }
            path = Some(go_string(arg.trim())?);
            stack.push(Block::With);
            jinja.push_str(&format!("{{#{l} {r}#}}"));
        } else if let Some(spec) = action.strip_prefix("range ") {
            let (names, expr) = spec
                .split_once(":=")
                .ok_or_else(|| "only `range $k, $v := ...` is translated".to_owned())?;
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            let [k, v] = names.as_slice() else {
                return Err("only `range $k, $v := ...` is translated".into());
            };
            let (k, v) = (jinja_var(k)?, jinja_var(v)?);
            let over = expression(expr.trim(), in_with, &vars)?;
            jinja.push_str(&format!("{{%{l} for {k}, {v} in {over}|items {r}%}}"));
            stack.push(Block::Range(vec![k, v]));
        } else if action == "end" {
            match stack.pop() {
                Some(Block::With) => jinja.push_str(&format!("{{#{l} {r}#}}")),
                Some(Block::Range(_)) => jinja.push_str(&format!("{{%{l} endfor {r}%}}")),
                None => return Err("an `{{ end }}` closes nothing".into()),
            }
        } else {
            let first = action.split_whitespace().next().unwrap_or("");
            if matches!(
                first,
                "if" | "else" | "with" | "define" | "template" | "block" | "range"
            ) {
                return Err(format!("the action `{first}` is not translated"));
            }
            let expr = expression(action, in_with, &vars)?;
            jinja.push_str(&format!("{{{{{l} {expr} {r}}}}}"));
        }
    }
    if !stack.is_empty() {
        return Err("a `with` or `range` is never closed with `{{ end }}`".into());
    }
    // MiniJinja drops one trailing newline of a template; Consul Template keeps it.
    if jinja.ends_with('\n') {
        jinja.push('\n');
    }
    Ok(GoTemplate { path, jinja })
}

/// Copies template text, refusing what MiniJinja would read as a tag.
fn literal(text: &str, out: &mut String) -> Result<(), String> {
    if text.contains("{%") || text.contains("{#") {
        return Err("its text contains `{%` or `{#`, which MiniJinja reads as a tag".into());
    }
    out.push_str(text);
    Ok(())
}

/// A Go double-quoted string without escapes.
fn go_string(s: &str) -> Result<String, String> {
    let inner = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(|| {
            "`with secret` takes one quoted path; parameters (as for PKI) are not translated"
                .to_owned()
        })?;
    if inner.contains(['"', '\\']) || inner.contains(char::is_whitespace) {
        return Err(
            "`with secret` takes one quoted path; parameters (as for PKI) are not translated"
                .into(),
        );
    }
    Ok(inner.to_owned())
}

/// `$name` → `name` (a MiniJinja identifier that shadows neither `data` nor `value`).
fn jinja_var(go: &str) -> Result<String, String> {
    let name = go
        .strip_prefix('$')
        .filter(|n| is_ident(n))
        .ok_or_else(|| format!("{go:?} is not a simple variable"))?;
    Ok(if matches!(name, "data" | "value" | "loop") {
        format!("v_{name}")
    } else {
        name.to_owned()
    })
}

fn is_ident(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One expression: a field path, `index X "key"`, or either piped to `toJSON`.
fn expression(action: &str, in_with: bool, vars: &[&str]) -> Result<String, String> {
    let (head, pipe) = match action.split_once('|') {
        Some((h, p)) => (h.trim(), Some(p.trim())),
        None => (action, None),
    };
    let mut expr = if let Some(args) = head.strip_prefix("index ") {
        let mut parts = args.split_whitespace();
        let base = parts.next().unwrap_or("");
        let mut e = field_path(base, in_with, vars)?;
        for key in parts {
            let k = key
                .strip_prefix('"')
                .and_then(|k| k.strip_suffix('"'))
                .filter(|k| !k.contains(['"', '\\']))
                .ok_or_else(|| format!("`index` with {key:?} is not translated"))?;
            e.push_str(&format!("[{}]", yaml::quote(k)));
        }
        e
    } else {
        field_path(head, in_with, vars)?
    };
    match pipe {
        None => {}
        Some("toJSON") => expr.push_str("|tojson"),
        Some(f) => return Err(format!("the function `{f}` is not translated")),
    }
    Ok(expr)
}

/// `.Data.data.a.b` / `.Data.a` / `$v.a` → `data.a.b` / `data.a` / `v.a`.
fn field_path(go: &str, in_with: bool, vars: &[&str]) -> Result<String, String> {
    let (mut out, rest) = if let Some(rest) = go.strip_prefix(".Data") {
        if !in_with {
            return Err(format!("`{go}` is used outside `with secret`"));
        }
        let rest = rest.strip_prefix(".data").unwrap_or(rest);
        if rest.starts_with(".metadata") || go == ".Data.metadata" {
            return Err("Hush templates see a secret's fields, not its KV metadata".into());
        }
        ("data".to_owned(), rest)
    } else if let Some(v) = go.strip_prefix('$') {
        let (name, rest) = v.split_at(v.find('.').unwrap_or(v.len()));
        let var = jinja_var(&format!("${name}"))?;
        if !vars.contains(&var.as_str()) {
            return Err(format!(
                "the variable `${name}` is not set by a translated `range`"
            ));
        }
        (var, rest)
    } else {
        return Err(format!("the expression `{go}` is not translated"));
    };
    if rest.is_empty() {
        return Ok(out);
    }
    let rest = rest
        .strip_prefix('.')
        .ok_or_else(|| format!("the expression `{go}` is not translated"))?;
    for seg in rest.split('.') {
        if !is_ident(seg) {
            return Err(format!("the expression `{go}` is not translated"));
        }
        out.push('.');
        out.push_str(seg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{VAULT_PREFIX}{k}"), (*v).to_owned()))
            .collect()
    }

    fn done(t: Translation) -> (BTreeMap<String, String>, Vec<String>) {
        match t {
            Translation::Done { annotations, notes } => (annotations, notes),
            other => panic!("expected a translation, got {other:?}"),
        }
    }

    fn refused(t: Translation) -> Vec<String> {
        match t {
            Translation::Refused(p) => p,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Renders a translated template with Hush's own sandbox, as the sidecar does.
    fn render(jinja: &str, data: &[(&str, &str)]) -> String {
        let env = hush_config::template::sandbox();
        let t = env.template_from_str(jinja).unwrap();
        let data: BTreeMap<String, String> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        t.render(minijinja::context! { data => data }).unwrap()
    }

    #[test]
    fn the_usual_kv_v2_template_renders_what_vault_agent_rendered() {
        let src = "{{- with secret \"secret/data/shop/db\" -}}\npostgres://{{ .Data.data.username }}:{{ .Data.data.password }}@db:5432/shop\n{{- end }}\n";
        let t = go_template(src).unwrap();
        assert_eq!(t.path.as_deref(), Some("secret/data/shop/db"));
        assert_eq!(
            render(&t.jinja, &[("username", "app"), ("password", "pw")]),
            "postgres://app:pw@db:5432/shop\n"
        );
    }

    #[test]
    fn range_over_fields_becomes_a_for_loop_in_key_order() {
        let src = "{{ with secret \"database/creds/app\" }}{{ range $k, $v := .Data }}export {{ $k }}=\"{{ $v }}\"\n{{ end }}{{ end }}";
        let t = go_template(src).unwrap();
        assert_eq!(
            render(&t.jinja, &[("username", "u"), ("password", "p")]),
            "export password=\"p\"\nexport username=\"u\"\n"
        );
    }

    #[test]
    fn index_and_to_json_are_translated() {
        let t = go_template(
            "{{ with secret \"secret/data/a\" }}{{ index .Data.data \"api-key\" }} {{ .Data.data | toJSON }}{{ end }}",
        )
        .unwrap();
        // MiniJinja's tojson puts a space after `:`; the JSON is the same.
        assert_eq!(
            render(&t.jinja, &[("api-key", "k")]),
            "k {\"api-key\": \"k\"}"
        );
    }

    #[test]
    fn templates_beyond_the_common_forms_are_refused_with_the_reason() {
        for (src, why) in [
            (
                "{{ with secret \"a\" }}{{ .Data.data.x | base64Decode }}{{ end }}",
                "base64Decode",
            ),
            (
                "{{ with secret \"pki/issue/web\" \"common_name=x\" }}{{ .Data.certificate }}{{ end }}",
                "PKI",
            ),
            (
                "{{ with secret \"a\" }}{{ if .Data.data.x }}y{{ end }}{{ end }}",
                "`if`",
            ),
            (
                "{{ with secret \"a\" }}{{ end }}{{ with secret \"b\" }}{{ end }}",
                "more than one secret",
            ),
            (
                "{{ with secret \"a\" }}{{ .Data.metadata.version }}{{ end }}",
                "metadata",
            ),
            ("{{ .Data.data.x }}", "outside"),
            ("{{ with secret \"a\" }}{% raw %}{{ end }}", "MiniJinja"),
            ("{{ with secret \"a\" }}", "never closed"),
        ] {
            let e = go_template(src).unwrap_err();
            assert!(e.contains(why), "{src}: {e}");
        }
    }

    #[test]
    fn a_typical_deployment_is_translated_and_passes_the_webhook_check() {
        let (out, notes) = done(translate(
            &ann(&[
                ("agent-inject", "true"),
                ("role", "shop"),
                ("agent-inject-secret-DB", "database/creds/shop"),
                (
                    "agent-inject-template-DB",
                    "{{- with secret \"database/creds/shop\" -}}{{ .Data.password }}{{- end }}",
                ),
                ("agent-inject-secret-config", "secret/data/shop/config"),
                ("agent-inject-perms-config", "0400"),
                ("agent-inject-command-DB", "kill -HUP $(pidof shop)"),
                ("agent-pre-populate-only", "false"),
                ("agent-limits-cpu", "250m"),
                ("agent-inject-status", "injected"),
            ]),
            "shop",
        ));
        let want: BTreeMap<String, String> = [
            ("inject", "true"),
            ("role", "shop"),
            ("mount-path", "/vault/secrets"),
            ("secret-db", "vault:database/creds/shop"),
            ("template-db", "{#- -#}{{ data.password }}{#- #}"),
            ("secret-config", "vault:secret/data/shop/config"),
            ("format-config", "json"),
            ("mode-config", "0400"),
            ("on-change", "signal:HUP:shop"),
        ]
        .iter()
        .map(|(k, v)| (hush::key(k), (*v).to_owned()))
        .collect();
        assert_eq!(out, want);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("agent-limits-cpu") && n.contains("sidecar.resources"))
        );
        assert!(notes.iter().any(|n| n.contains("map[key:value]")));
    }

    #[test]
    fn untranslatable_annotations_are_all_named_with_a_fix() {
        let p = refused(translate(
            &ann(&[
                ("agent-inject", "true"),
                ("agent-inject-secret-a", "secret/data/a"),
                ("agent-inject-token", "true"),
                ("agent-inject-file-a", "conf/a.json"),
                ("agent-configmap", "agent-config"),
                ("agent-inject-command-a", "/bin/reload.sh"),
                ("auth-type", "gcp"),
                ("agent-inejct-containers", "app"),
            ]),
            "shop",
        ));
        for what in [
            "agent-inject-token",
            "agent-inject-file-a",
            "agent-configmap",
            "agent-inject-command-a",
            "auth-type",
            "agent-inejct-containers",
        ] {
            assert!(
                p.iter().any(|m| m.contains(what)),
                "{what} not named in {p:?}"
            );
        }
    }

    #[test]
    fn pods_vault_k8s_would_not_inject_are_left_alone() {
        assert_eq!(
            translate(&ann(&[("agent-inject", "false"), ("role", "x")]), "ns"),
            Translation::NotInjected
        );
        assert_eq!(
            translate(&ann(&[("role", "x")]), "ns"),
            Translation::NotInjected
        );
    }

    #[test]
    fn approle_with_its_secret_becomes_hush_approle() {
        let (out, _) = done(translate(
            &ann(&[
                ("agent-inject", "true"),
                ("auth-type", "approle"),
                ("agent-extra-secret", "shop-approle"),
                ("auth-config-role-id-file-path", "/vault/custom/role-id"),
                ("auth-config-secret-id-file-path", "/vault/custom/secret-id"),
                ("agent-inject-secret-a", "secret/data/a"),
            ]),
            "shop",
        ));
        assert_eq!(out[&hush::key("vault-auth")], "approle");
        assert_eq!(out[&hush::key("vault-auth-secret")], "shop-approle");
    }

    #[test]
    fn a_translation_the_hush_parser_refuses_is_a_problem_not_output() {
        // 1s is below the operator's minimum refresh: the webhook would deny it.
        let p = refused(translate(
            &ann(&[
                ("agent-inject", "true"),
                ("role", "x"),
                ("agent-inject-secret-a", "secret/data/a"),
                ("template-static-secret-render-interval", "1s"),
            ]),
            "shop",
        ));
        assert!(p.iter().any(|m| m.contains("hush.dev/refresh")), "{p:?}");
    }

    #[test]
    fn signal_commands() {
        assert_eq!(
            signal_command("kill -HUP $(pidof nginx)").as_deref(),
            Some("signal:HUP:nginx")
        );
        assert_eq!(
            signal_command("pkill -SIGUSR1 app").as_deref(),
            Some("signal:USR1:app")
        );
        assert_eq!(
            signal_command("kill -s TERM $(pidof a)").as_deref(),
            Some("signal:TERM:a")
        );
        assert_eq!(signal_command("kill -9 $(pidof a)"), None);
        assert_eq!(signal_command("sh -c 'curl ...'"), None);
    }

    #[test]
    fn manifests_with_several_documents_and_kinds() {
        let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, namespace: shop}
spec:
  template:
    metadata:
      annotations:
        vault.hashicorp.com/agent-inject: "true"
        vault.hashicorp.com/role: orders
        vault.hashicorp.com/agent-inject-secret-db: database/creds/orders
        vault.hashicorp.com/agent-inject-template-db: |
          {{- with secret "database/creds/orders" -}}
          {{ .Data.username }}
          {{- end }}
    spec:
      containers: [{name: app, image: app}]
---
apiVersion: v1
kind: Service
metadata: {name: orders}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: shop}
spec:
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            vault.hashicorp.com/agent-inject: "true"
            vault.hashicorp.com/agent-pre-populate-only: "true"
            vault.hashicorp.com/role: report
            vault.hashicorp.com/agent-inject-secret-token: secret/data/report
"#;
        let r = migrate_manifest(text, "test").unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.objects, 2);
        assert!(
            r.output
                .contains("# Deployment shop/orders (spec.template.metadata.annotations): replace")
        );
        assert!(r.output.contains("hush.dev/template-db: |"));
        assert!(r.output.contains(
            "# CronJob shop/report (spec.jobTemplate.spec.template.metadata.annotations)"
        ));
        assert!(r.output.contains("hush.dev/mode: \"init-only\""));
        // The printed YAML reads back as the annotations that were checked.
        let block = format!("{}\n", r.output.split("\n# ").next().unwrap());
        let back: BTreeMap<String, String> = yaml::parse(&block, "output").unwrap();
        assert_eq!(
            back[&hush::key("template-db")],
            "{#- -#}\n{{ data.username }}\n{#- #}\n\n"
        );
        // Vault Agent rendered "app\n" from this template; so does Hush.
        assert_eq!(
            render(&back[&hush::key("template-db")], &[("username", "app")]),
            "app\n"
        );
    }

    #[test]
    fn a_problem_anywhere_means_no_output() {
        let text = "kind: Pod\nmetadata:\n  name: a\n  annotations:\n    vault.hashicorp.com/agent-inject: \"true\"\n    vault.hashicorp.com/agent-inject-token: \"true\"\n";
        let r = migrate_manifest(text, "test").unwrap();
        assert!(r.output.is_empty());
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems); // the token, and no secret
    }
}
