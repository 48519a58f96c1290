//! The annotation parser: the user-facing API of Hush. It turns a pod's `hush.dev/*` annotations
//! (plus the operator's settings) into a validated [`SidecarConfig`], reporting every problem at
//! once, each naming the annotation and the rule it broke. The injector calls it at `/mutate` and
//! at `/validate`, so it is pure (no IO) and bounded. The same module holds the one reference table
//! of annotations that the README prints, so docs and parser cannot drift apart.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{
    self, ANNOTATION_PREFIX, FileSpec, Format, INJECT, Mode, OnChange, OperatorSettings, STATUS,
    SidecarConfig, SourceKind, SourceRef, VaultAuth, limits, paths,
};
use crate::error::{AnnotationProblem, Error, Result};
use crate::names::{check_dns1123_subdomain, check_file_name, short};

/// One row of the annotation reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnotationDoc {
    /// The annotation key; per-file keys use `<file>`.
    pub key: &'static str,
    /// Accepted values.
    pub values: &'static str,
    /// The default when absent.
    pub default: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// Pod-level keys (after the prefix). `status` is written by the injector and ignored here.
const POD_KEYS: &[&str] = &[
    "inject",
    "role",
    "vault-auth",
    "vault-auth-secret",
    "refresh",
    "on-change",
    "mode",
    "containers",
    "mount-path",
    "aws-role-arn",
    "revoke-on-shutdown",
];

/// Per-file key prefixes (after the annotation prefix).
const FILE_PREFIXES: &[&str] = &["secret-", "template-", "format-", "mode-"];

/// Most `hush.dev/*` annotations looked at on one pod.
const MAX_HUSH_ANNOTATIONS: usize = 4 * limits::MAX_FILES + 16;

const DOCS: &[AnnotationDoc] = &[
    AnnotationDoc {
        key: "hush.dev/inject",
        values: "`true` | `false`",
        default: "`false`",
        description: "Opts the pod in. Any other `hush.dev/` annotation without `inject` is an error; `false` switches Hush off.",
    },
    AnnotationDoc {
        key: "hush.dev/secret-<file>",
        values: "`vault:<path>[#field][?version=N]`, `aws:<name-or-arn>[#json-key][?stage=<label>|?version-id=<id>]`, `sealed:<configmap>/<key>`",
        default: "(at least one is required)",
        description: "One file per annotation. `<file>` is `[A-Za-z0-9._-]`, starts and ends with a letter or digit, and the whole key after `hush.dev/` is at most 63 characters (file names up to 56), so there are no subdirectories. Vault paths are relative with no `..`, empty segments or `%`; `version` is 1 to 100000000. AWS stage defaults to `AWSCURRENT`.",
    },
    AnnotationDoc {
        key: "hush.dev/template-<file>",
        values: "a MiniJinja template (may span lines, at most 32 KiB)",
        default: "(none)",
        description: "Renders the file with a sandboxed template: `data` holds the secret's fields, `value` the single value; undefined names are errors; no file, env or network access; output capped at the operator's file size.",
    },
    AnnotationDoc {
        key: "hush.dev/format-<file>",
        values: "`raw` | `json` | `env` | `yaml`",
        default: "`raw`",
        description: "`raw` writes the one value byte for byte (a secret with several fields needs `#field`); `json`, `env` and `yaml` write all fields. Not combined with `template-<file>`.",
    },
    AnnotationDoc {
        key: "hush.dev/mode-<file>",
        values: "octal `0400` to `0644`, never executable or group/world-writable",
        default: "`0440` with the pod's fsGroup, else `0444`",
        description: "File permissions. The sidecar has no capabilities and cannot chown, so group access comes from the pod's `fsGroup`.",
    },
    AnnotationDoc {
        key: "hush.dev/role",
        values: "Vault role name `[A-Za-z0-9._-]`",
        default: "(required for `kubernetes` auth)",
        description: "The Vault role to log in as. Must be on the operator's allowlist for the namespace, if one is set.",
    },
    AnnotationDoc {
        key: "hush.dev/vault-auth",
        values: "`kubernetes` | `approle` | `token`",
        default: "`kubernetes`",
        description: "How the sidecar logs in to Vault. `kubernetes` uses a projected service-account token that only the sidecar mounts.",
    },
    AnnotationDoc {
        key: "hush.dev/vault-auth-secret",
        values: "Secret name",
        default: "(required for `approle` and `token`)",
        description: "A Secret in the pod's namespace, mounted into the sidecar only, holding `role_id` and `secret_id` (approle) or `token` (token).",
    },
    AnnotationDoc {
        key: "hush.dev/refresh",
        values: "duration: `30s`, `5m`, `1h`, `1h30m`",
        default: "operator setting (`5m`)",
        description: "How often the sidecar checks for changes. Bounded by the operator (by default 10s to 24h). Not used with `init-only`.",
    },
    AnnotationDoc {
        key: "hush.dev/on-change",
        values: "`none` | `http:<url>` (or the bare `http://` URL) | `signal:<SIG>:<process>`",
        default: "`none`",
        description: "Notification once per consistent update, never for an unchanged refresh. `http:` is a POST to loopback only (`http://127.0.0.1:<port>/...`, `http://[::1]:<port>/...`, `http://localhost:<port>/...`). `signal:` (HUP, USR1, USR2, TERM, INT, QUIT) needs the operator to allow `shareProcessNamespace`. Not used with `init-only`.",
    },
    AnnotationDoc {
        key: "hush.dev/mode",
        values: "`sidecar` | `init-only`",
        default: "`sidecar`",
        description: "`sidecar` keeps files fresh as a native sidecar; `init-only` (for Jobs) fetches once in an init container and never revokes.",
    },
    AnnotationDoc {
        key: "hush.dev/containers",
        values: "comma-separated container names",
        default: "all app and later init containers",
        description: "Narrows which containers get the read-only secrets mount.",
    },
    AnnotationDoc {
        key: "hush.dev/mount-path",
        values: "absolute path",
        default: "`/var/run/secrets/hush`",
        description: "Where the app containers see the files. Normalised, not `/`, not under `/hush`, and not over the service-account token.",
    },
    AnnotationDoc {
        key: "hush.dev/aws-role-arn",
        values: "`arn:aws:iam::<12-digit account>:role/<name>`",
        default: "(none: the SDK's default chain)",
        description: "IAM role for web identity. IAM's trust policy, not Hush, decides whether this pod's service account may assume it. Only with `aws:` sources.",
    },
    AnnotationDoc {
        key: "hush.dev/revoke-on-shutdown",
        values: "`true` | `false`",
        default: "`true`",
        description: "Revoke Vault leases and the token on SIGTERM. `init-only` never revokes (the app still needs what it fetched).",
    },
    AnnotationDoc {
        key: "hush.dev/status",
        values: "(written by the injector)",
        default: "(none)",
        description: "Set by the injector on injected pods; ignored by the parser and never trusted without the sidecar present.",
    },
];

/// The reference table of every annotation.
pub fn reference_table() -> &'static [AnnotationDoc] {
    DOCS
}

/// The README's "Annotations" table, exactly.
pub fn reference_table_markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out =
        String::from("| Annotation | Values | Default | Description |\n|---|---|---|---|\n");
    for d in DOCS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            d.key,
            cell(d.values),
            cell(d.default),
            cell(d.description)
        ));
    }
    out
}

/// Whether the pod opts in (`hush.dev/inject: "true"`).
pub fn inject_requested(annotations: &BTreeMap<String, String>) -> bool {
    annotations.get(INJECT).map(String::as_str) == Some("true")
}

/// Checks a pod's annotations.
///
/// Returns `Ok(None)` when the pod does not opt in (no `hush.dev/` annotation, or
/// `hush.dev/inject: "false"`); annotation keys are still checked then, so a misspelt
/// `hush.dev/injet` is caught. Returns the config when it opts in, or every problem at once.
/// Keys outside `hush.dev/` are ignored, and so is `hush.dev/status`.
pub fn check(
    annotations: &BTreeMap<String, String>,
    namespace: &str,
    operator: &OperatorSettings,
) -> Result<Option<SidecarConfig>> {
    let mut p = Problems::default();
    let mut pod: BTreeMap<&str, &str> = BTreeMap::new();
    let mut files: BTreeMap<&str, FileAnnotations<'_>> = BTreeMap::new();
    let mut seen = 0usize;
    // Secret annotations that failed before parsing, and the stores they were meant for, so that
    // one bad reference does not cascade into "role is unused" and "a secret is required".
    let mut broken = BrokenSecrets::default();

    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        if key == STATUS {
            continue;
        }
        seen += 1;
        if name.starts_with("secret-") {
            broken.note(value);
        }
        if seen > MAX_HUSH_ANNOTATIONS {
            p.add(
                key,
                format!("too many hush.dev/ annotations (at most {MAX_HUSH_ANNOTATIONS})"),
            );
            break;
        }
        if name.len() > 63 {
            p.add(
                key,
                format!(
                    "the name after hush.dev/ is {} characters long; at most 63 are allowed",
                    name.len()
                ),
            );
            continue;
        }
        let is_template = name.starts_with("template-");
        if !is_template && value.chars().any(|c| c == '\n' || c == '\r') {
            p.add(
                key,
                "must not contain a newline (only templates may span lines)",
            );
            continue;
        }
        if let Some(c) = value
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            p.add(key, format!("contains {}", crate::names::describe_char(c)));
            continue;
        }
        if POD_KEYS.contains(&name) {
            pod.insert(name, value);
            continue;
        }
        let Some((prefix, file)) = FILE_PREFIXES
            .iter()
            .find_map(|pre| name.strip_prefix(pre).map(|f| (*pre, f)))
        else {
            p.add(key, unknown_key_reason(name));
            if ["vault:", "aws:", "sealed:"]
                .iter()
                .any(|s| value.starts_with(s))
            {
                // Most likely a misspelt secret- key: don't cascade.
                broken.note(value);
                broken.any_invalid = true;
            }
            continue;
        };
        if let Err(reason) = check_file_name(file) {
            p.add(
                key,
                format!("invalid file name \"{}\": {reason}", short(file)),
            );
            continue;
        }
        let entry = files.entry(file).or_default();
        let slot = match prefix {
            "secret-" => &mut entry.secret,
            "template-" => &mut entry.template,
            "format-" => &mut entry.format,
            _ => &mut entry.mode,
        };
        *slot = Some((key.as_str(), value.as_str()));
    }
    broken.any_invalid |=
        p.0.iter()
            .any(|x| x.annotation.starts_with("hush.dev/secret-"));

    match pod.get("inject").copied() {
        Some("true") => {}
        Some("false") => return p.finish().map(|()| None),
        Some(other) => {
            p.add(
                INJECT,
                format!("must be \"true\" or \"false\", not \"{}\"", short(other)),
            );
            return p.finish().map(|()| None);
        }
        None => {
            if seen > 0 {
                p.add(
                    INJECT,
                    "missing: other hush.dev/ annotations are set; add hush.dev/inject: \"true\" (or \"false\" to switch Hush off)",
                );
            }
            return p.finish().map(|()| None);
        }
    }

    operator.validate()?;
    let cfg = build(&pod, &files, namespace, operator, &mut broken, &mut p);
    p.finish()?;
    let cfg = cfg.ok_or_else(|| Error::Config {
        field: "annotations".into(),
        reason: "internal error: no config and no problem reported".into(),
    })?;
    cfg.validate()?;
    Ok(Some(cfg))
}

/// Secret annotations seen, including those that failed validation.
#[derive(Default)]
struct BrokenSecrets {
    /// Every `secret-` annotation counts, valid or not.
    seen: bool,
    /// Any `secret-` annotation failed.
    any_invalid: bool,
    /// Some `secret-` value starts with `vault:` / `aws:` (valid or not).
    vault_hint: bool,
    aws_hint: bool,
}

impl BrokenSecrets {
    fn note(&mut self, value: &str) {
        self.seen = true;
        self.vault_hint |= value.starts_with("vault:");
        self.aws_hint |= value.starts_with("aws:");
    }
}

/// The per-file annotations of one file: (key, value) of each.
#[derive(Default)]
struct FileAnnotations<'a> {
    secret: Option<(&'a str, &'a str)>,
    template: Option<(&'a str, &'a str)>,
    format: Option<(&'a str, &'a str)>,
    mode: Option<(&'a str, &'a str)>,
}

/// Collects problems.
#[derive(Default)]
struct Problems(Vec<AnnotationProblem>);

impl Problems {
    fn add(&mut self, annotation: &str, reason: impl Into<String>) {
        self.0.push(AnnotationProblem {
            annotation: annotation.to_string(),
            reason: reason.into(),
        });
    }

    fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Annotations(self.0))
        }
    }
}

fn key(name: &str) -> String {
    format!("{ANNOTATION_PREFIX}{name}")
}

/// Builds the config from classified annotations; `None` if any problem was found.
fn build(
    pod: &BTreeMap<&str, &str>,
    files: &BTreeMap<&str, FileAnnotations<'_>>,
    namespace: &str,
    op: &OperatorSettings,
    broken: &mut BrokenSecrets,
    p: &mut Problems,
) -> Option<SidecarConfig> {
    let before = p.0.len();
    if let Err(r) = crate::names::check_dns1123_label(namespace) {
        p.add(INJECT, format!("the pod's namespace is invalid: {r}"));
    }

    // Files.
    let mut specs = Vec::new();
    for (name, fa) in files {
        let Some((skey, svalue)) = fa.secret else {
            for (k, _) in [fa.template, fa.format, fa.mode].into_iter().flatten() {
                p.add(
                    k,
                    format!("there is no hush.dev/secret-{name} for this file; add it or remove this annotation"),
                );
            }
            continue;
        };
        let source = match SourceRef::parse(svalue) {
            Ok(s) => s,
            Err(r) => {
                p.add(skey, r);
                broken.any_invalid = true;
                continue;
            }
        };
        match source.kind() {
            SourceKind::Vault if op.vault.is_none() => p.add(skey, config::NO_VAULT),
            SourceKind::Aws if op.aws.is_none() => p.add(skey, config::NO_AWS),
            _ => {}
        }
        let template = fa.template.map(|(_, v)| v.to_string());
        if let Some((tkey, t)) = fa.template
            && let Err(r) = config::check_template(t)
        {
            p.add(tkey, r);
        }
        let format = match (fa.format, &template) {
            (None, None) => Format::Raw,
            (None, Some(_)) => Format::Template,
            (Some((fkey, _)), Some(_)) => {
                p.add(
                    fkey,
                    format!("hush.dev/template-{name} decides the output; remove this annotation"),
                );
                Format::Template
            }
            (Some((fkey, v)), None) => match Format::parse(v) {
                Some(f) => {
                    if let Err(r) = config::check_format(f, None, &source) {
                        p.add(fkey, r);
                    }
                    f
                }
                None => {
                    p.add(
                        fkey,
                        format!("must be raw, json, env or yaml, not \"{}\"", short(v)),
                    );
                    Format::Raw
                }
            },
        };
        let mode = match fa.mode {
            None => op.default_file_mode(),
            Some((mkey, v)) => match config::parse_mode(v) {
                Ok(m) => m,
                Err(r) => {
                    p.add(mkey, r);
                    0
                }
            },
        };
        specs.push(FileSpec {
            name: (*name).to_string(),
            source,
            format,
            template,
            mode,
        });
    }
    if !broken.seen {
        p.add(
            INJECT,
            "at least one hush.dev/secret-<file> annotation is required",
        );
    }
    if specs.len() > limits::MAX_FILES {
        p.add(
            &key("secret-*"),
            format!("at most {} files per pod", limits::MAX_FILES),
        );
    }
    let has_vault = specs.iter().any(|f| f.source.kind() == SourceKind::Vault);
    let has_aws = specs.iter().any(|f| f.source.kind() == SourceKind::Aws);
    // With a broken reference, "unused" cannot be decided; "required" still can.
    let complete = broken.seen && !broken.any_invalid;
    let vault_known = has_vault || broken.vault_hint || complete;
    let aws_known = has_aws || broken.aws_hint || complete;

    // Mode.
    let mode = match pod.get("mode").copied() {
        None | Some("sidecar") => Mode::Sidecar,
        Some("init-only") => Mode::InitOnly,
        Some(v) => {
            p.add(
                &key("mode"),
                format!("must be sidecar or init-only, not \"{}\"", short(v)),
            );
            Mode::Sidecar
        }
    };
    let init_only = mode == Mode::InitOnly;

    // Vault auth.
    let role = pod.get("role").map(|r| r.to_string());
    if let Some(r) = &role
        && let Err(reason) = config::check_role(r, namespace, op)
    {
        p.add(&key("role"), reason);
    }
    let mut auth_known = vault_known;
    let auth = match pod.get("vault-auth").copied() {
        None | Some("kubernetes") => VaultAuth::Kubernetes,
        Some("approle") => VaultAuth::AppRole,
        Some("token") => VaultAuth::Token,
        Some(v) => {
            p.add(
                &key("vault-auth"),
                format!("must be kubernetes, approle or token, not \"{}\"", short(v)),
            );
            auth_known = false;
            VaultAuth::Kubernetes
        }
    };
    let credentials_secret = pod.get("vault-auth-secret").map(|s| s.to_string());
    if let Some(s) = &credentials_secret
        && let Err(r) = check_dns1123_subdomain(s)
    {
        p.add(&key("vault-auth-secret"), r);
    } else if auth_known
        && let Err((field, reason)) = config::check_auth(
            auth,
            role.is_some(),
            credentials_secret.as_deref(),
            has_vault || broken.vault_hint,
        )
    {
        let k = match field {
            "auth" => "vault-auth",
            "role" => "role",
            _ => "vault-auth-secret",
        };
        p.add(&key(k), reason);
    }

    // Refresh.
    let refresh = match pod.get("refresh").copied() {
        None => op.default_refresh,
        Some(_) if init_only => {
            p.add(
                &key("refresh"),
                "init-only fetches once, so refresh does not apply; remove it",
            );
            op.default_refresh
        }
        Some(v) => match config::parse_duration(v) {
            Ok(d) if d < op.min_refresh || d > op.max_refresh => {
                p.add(
                    &key("refresh"),
                    format!(
                        "must be between {} and {} (operator limits)",
                        human(op.min_refresh),
                        human(op.max_refresh)
                    ),
                );
                op.default_refresh
            }
            Ok(d) => d,
            Err(r) => {
                p.add(&key("refresh"), r);
                op.default_refresh
            }
        },
    };

    // On change.
    let on_change = match pod.get("on-change").copied() {
        None => OnChange::None,
        Some(v) => match config::parse_on_change(v, op) {
            Ok(OnChange::None) => OnChange::None,
            Ok(_) if init_only => {
                p.add(&key("on-change"), config::INIT_ONLY_NOTIFY);
                OnChange::None
            }
            Ok(o) => o,
            Err(r) => {
                p.add(&key("on-change"), r);
                OnChange::None
            }
        },
    };

    // Containers.
    let containers = pod.get("containers").map(|v| {
        let list: Vec<String> = v.split(',').map(|c| c.trim().to_string()).collect();
        if let Err(r) = config::check_containers(&list) {
            p.add(&key("containers"), r);
        }
        list
    });

    // Mount path.
    let mount_path = pod
        .get("mount-path")
        .map_or(paths::DEFAULT_APP_MOUNT_PATH, |v| v)
        .to_string();
    if let Err(r) = config::check_mount_path(&mount_path) {
        p.add(&key("mount-path"), r);
    }

    // AWS role.
    let aws_role_arn = pod.get("aws-role-arn").map(|v| v.to_string());
    if let Some(arn) = &aws_role_arn {
        if let Err(r) = config::check_role_arn(arn) {
            p.add(&key("aws-role-arn"), r);
        } else if !has_aws && aws_known && !broken.aws_hint {
            p.add(&key("aws-role-arn"), config::ARN_WITHOUT_AWS);
        }
    }

    // Revocation.
    let revoke_on_shutdown = match pod.get("revoke-on-shutdown").copied() {
        None => !init_only,
        Some("true") if init_only => {
            p.add(
                &key("revoke-on-shutdown"),
                "init-only never revokes (the app still needs what it fetched); remove it or set \"false\"",
            );
            false
        }
        Some("true") => true,
        Some("false") => false,
        Some(v) => {
            p.add(
                &key("revoke-on-shutdown"),
                format!("must be \"true\" or \"false\", not \"{}\"", short(v)),
            );
            true
        }
    };

    if p.0.len() > before {
        return None;
    }
    Some(SidecarConfig {
        version: config::CONFIG_VERSION,
        namespace: namespace.to_string(),
        mode,
        role,
        auth,
        credentials_secret,
        refresh,
        on_change,
        files: specs,
        containers,
        mount_path,
        aws_role_arn,
        revoke_on_shutdown,
        operator: op.clone(),
    })
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Words that name operator settings: an annotation containing one is answered with why it is
/// refused rather than only with a near miss.
const OPERATOR_WORDS: &[&str] = &[
    "addr",
    "address",
    "url",
    "server",
    "host",
    "endpoint",
    "image",
    "uid",
    "gid",
    "user",
    "group",
    "tls",
    "ca",
    "cert",
    "skip",
    "verify",
    "insecure",
    "privileged",
    "resources",
    "cpu",
    "memory",
    "namespace",
    "audience",
    "port",
];

/// The reason for an unknown key, with the closest valid key.
fn unknown_key_reason(name: &str) -> String {
    let (best, dist) = closest_key(name);
    let operatorish = name
        .split(['-', '_', '.'])
        .any(|w| OPERATOR_WORDS.contains(&w.to_ascii_lowercase().as_str()));
    let threshold = (name.chars().count() / 3).max(2);
    if operatorish {
        format!(
            "unknown annotation; server addresses, CA and TLS settings, images, users and resources are operator settings and cannot be set by annotation; the closest valid key is \"{best}\""
        )
    } else if dist <= threshold {
        format!("unknown annotation; did you mean \"{best}\"?")
    } else {
        format!(
            "unknown annotation; Hush accepts only the keys of its annotation reference; the closest valid key is \"{best}\""
        )
    }
}

/// The valid key closest to `name` by edit distance, and that distance.
fn closest_key(name: &str) -> (String, usize) {
    let mut candidates: Vec<String> = POD_KEYS.iter().map(|k| k.to_string()).collect();
    for pre in FILE_PREFIXES {
        let stem = &pre[..pre.len() - 1];
        // Keep the user's file name when what precedes it looks like a per-file prefix.
        if let Some(i) = name.find(['-', '_', '.'])
            && levenshtein(&name[..i], stem) <= 2
        {
            candidates.push(format!("{pre}{}", &name[i + 1..]));
        }
        if let (Some(head), Some(rest)) = (name.get(..pre.len()), name.get(pre.len()..))
            && levenshtein(head, pre) <= 2
        {
            candidates.push(format!("{pre}{rest}"));
        }
    }
    let mut best = (String::new(), usize::MAX);
    for c in candidates {
        let d = levenshtein(name, &c);
        if d < best.1 {
            best = (c, d);
        }
    }
    (key(&best.0), best.1)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_key() {
        let table: Vec<&str> = DOCS.iter().map(|d| d.key).collect();
        for k in POD_KEYS {
            assert!(table.contains(&key(k).as_str()), "{k} missing from table");
        }
        for pre in FILE_PREFIXES {
            assert!(
                table.contains(&format!("hush.dev/{pre}<file>").as_str()),
                "{pre} missing"
            );
        }
        assert!(table.contains(&STATUS));
        assert_eq!(table.len(), POD_KEYS.len() + FILE_PREFIXES.len() + 1);
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest_key("refesh").0, "hush.dev/refresh");
        assert_eq!(closest_key("injet").0, "hush.dev/inject");
        assert_eq!(closest_key("secrets-db").0, "hush.dev/secret-db");
        assert_eq!(closest_key("secret_db").0, "hush.dev/secret-db");
        assert_eq!(closest_key("mountpath").0, "hush.dev/mount-path");
    }

    #[test]
    fn levenshtein_basics() {
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
    }
}
