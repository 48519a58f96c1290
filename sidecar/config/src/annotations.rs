//! The annotation parser: the user-facing API of Hush. It turns a pod's `hush.dev/*` annotations
//! (plus the operator's settings) into a validated [`SidecarConfig`], reporting every problem at
//! once, each naming the annotation and the rule it broke. The injector calls it at `/mutate` and
//! at `/validate`, so it is pure (no IO) and bounded.
//!
//! Everything about one annotation is one row of [`reference_table`]: its key, whether it is set
//! once per pod or once per file, its documentation (the README table is generated from it), the
//! parser of its value and the [`SidecarConfig`] field that value sets. [`check`] is a loop over the
//! rows; the unknown-key suggestions and the tests read the same rows. A row's parser only turns
//! one value into one field. Every rule between fields (refresh within the operator's bounds,
//! nothing to notify in init-only mode, no `aws-role-arn` without an `aws:` source, ...) is
//! written once, in [`SidecarConfig::problems`], and its problems come back here under the
//! annotation whose row sets the field, so `kubectl apply` and `hush-sidecar check-config` give the
//! same words. Only rules about the annotations themselves stay here: unknown or malformed keys, a
//! per-file option without its `secret-`, and options that mean nothing in init-only mode.

use std::collections::BTreeMap;

use crate::config::{
    self, ANNOTATION_PREFIX, FileSpec, Format, INJECT, Mode, OperatorSettings, SidecarConfig,
    Unparsed, VaultAuth, limits,
};
use crate::error::{AnnotationProblem, Error, Result};
use crate::source::SourceRef;
use hush_contract::names::{check_file_name, short};

/// How often an annotation may appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `hush.dev/inject`: opts the pod in.
    OptIn,
    /// Once per pod.
    Pod,
    /// Once per file: the key is a prefix followed by the file name.
    PerFile,
    /// Written by the injector; the parser ignores it.
    Injector,
}

/// A pod-level row's parser: sets its field from the annotation value, or says what is wrong.
type PodParser = fn(&str, &mut SidecarConfig) -> std::result::Result<(), String>;
/// A per-file row's parser: sets its part of one file.
type FileParser = fn(&str, &mut FileDraft) -> std::result::Result<(), String>;

/// How a row's value reaches the config.
#[derive(Clone, Copy, Debug)]
enum Parse {
    /// Not parsed here (`inject` decides whether to parse at all; `status` is ignored).
    None,
    Pod(PodParser),
    File(FileParser),
}

/// One annotation: its documentation, its parser and the config field it sets.
#[derive(Clone, Copy, Debug)]
pub struct Annotation {
    /// The annotation key; per-file keys end in `<file>`.
    pub key: &'static str,
    /// Once per pod, once per file, ...
    pub scope: Scope,
    /// Accepted values.
    pub values: &'static str,
    /// The default when absent.
    pub default: &'static str,
    /// What it does.
    pub description: &'static str,
    /// The field it sets, as `HUSH_CONFIG` names it: a [`SidecarConfig`] field for pod-level rows
    /// (`refreshSeconds`), a [`FileSpec`] field for per-file rows (`format`). Problems that
    /// [`SidecarConfig::problems`] reports on that field are reported under this annotation.
    pub field: &'static str,
    parse: Parse,
    /// The value may span lines (templates).
    multiline: bool,
    /// Sets the field when the annotation is absent and its default depends on rows above it.
    unset: Option<fn(&mut SidecarConfig)>,
    /// Why the annotation is refused on an init-only pod, when it means nothing there.
    not_with_init_only: Option<&'static str>,
    /// Per-file: the field of another per-file row whose presence makes this one pointless.
    overridden_by: Option<&'static str>,
    /// Parsed, and its problems listed, before the other pod-level rows, which may depend on it
    /// (the mode).
    first: bool,
}

impl Annotation {
    /// The key after `hush.dev/`; for per-file rows, the prefix before the file name (`secret-`).
    pub fn name(&self) -> &'static str {
        let k = self.key.strip_prefix(ANNOTATION_PREFIX).unwrap_or(self.key);
        k.strip_suffix("<file>").unwrap_or(k)
    }

    /// Whether a pod-level row means nothing on an init-only pod.
    pub fn sidecar_mode_only(&self) -> bool {
        self.not_with_init_only.is_some()
    }
}

/// A row with everything but its identity left empty.
const ROW: Annotation = Annotation {
    key: "",
    scope: Scope::Pod,
    values: "",
    default: "",
    description: "",
    field: "",
    parse: Parse::None,
    multiline: false,
    unset: None,
    not_with_init_only: None,
    overridden_by: None,
    first: false,
};

/// Most `hush.dev/*` annotations looked at on one pod.
const MAX_HUSH_ANNOTATIONS: usize = 4 * limits::MAX_FILES + 16;

/// The field of the per-file row that names the secret (`secret-<file>`).
const SOURCE: &str = "source";
/// The field of the per-file row that holds a template (`template-<file>`).
const TEMPLATE: &str = "template";

const TABLE: &[Annotation] = &[
    Annotation {
        key: "hush.dev/inject",
        scope: Scope::OptIn,
        values: "`true` | `false`",
        default: "`false`",
        description: "Opts the pod in. Any other `hush.dev/` annotation without `inject` is an error; `false` switches Hush off.",
        ..ROW
    },
    Annotation {
        key: "hush.dev/secret-<file>",
        scope: Scope::PerFile,
        values: "`vault:<path>[#field][?version=N]`, `vault:<mount>/issue/<role>[#field]?common_name=<cn>[&alt_names=...&ip_sans=...&uri_sans=...&ttl=...&exclude_cn_from_sans=...&private_key_format=der|pkcs8]`, `aws:<name-or-arn>[#json-key][?stage=<label>|?version-id=<id>]`, `sealed:<configmap>/<key>`",
        default: "(every file needs one, except a template-only file)",
        description: "One file per annotation. `<file>` is `[A-Za-z0-9._-]`, starts and ends with a letter or digit, and the whole key after `hush.dev/` is at most 63 characters (file names up to 56), so there are no subdirectories. Vault paths are relative with no `..`, empty segments or `%`; `version` is 1 to 100000000. A PKI issue reference takes only the parameters listed (any other is refused) and `#field` is one of `certificate`, `private_key`, `issuing_ca`, `ca_chain`, `serial_number`, `expiration`, `private_key_type`. AWS stage defaults to `AWSCURRENT`.",
        field: SOURCE,
        parse: Parse::File(|v, f| {
            f.source = Some(SourceRef::parse(v)?);
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/template-<file>",
        scope: Scope::PerFile,
        values: "a MiniJinja template (may span lines, at most 32 KiB)",
        default: "(none)",
        description: "Renders the file with a sandboxed template: `data` holds the secret's fields, `value` the single value, and `files[\"<other>\"]` (or `files.<other>`) another file of the pod: its secret's fields (or single value), or the text of a template-only file. Written out literally; unknown names, self-reads and cycles are refused. Without `secret-<file>` the file is template-only and must read another file. All files are rendered from one refresh. Undefined names are errors; no file, env or network access; output capped at the operator's file size.",
        field: TEMPLATE,
        parse: Parse::File(|v, f| {
            f.template = Some(v.to_string());
            Ok(())
        }),
        multiline: true,
        ..ROW
    },
    Annotation {
        key: "hush.dev/format-<file>",
        scope: Scope::PerFile,
        values: "`raw` | `json` | `env` | `yaml` | `pem`",
        default: "`raw`",
        description: "`raw` writes the one value byte for byte (a secret with several fields needs `#field`); `json`, `env` and `yaml` write all fields; `pem` writes a PKI certificate (`vault:<mount>/issue/<role>?...`, no `#field`) as one bundle: certificate, chain, private key. Not combined with `template-<file>`.",
        field: "format",
        parse: Parse::File(|v, f| {
            let format = Format::parse(v).ok_or_else(|| {
                format!("must be raw, json, env, yaml or pem, not \"{}\"", short(v))
            })?;
            f.format = Some(format);
            Ok(())
        }),
        overridden_by: Some("template"),
        ..ROW
    },
    Annotation {
        key: "hush.dev/mode-<file>",
        scope: Scope::PerFile,
        values: "octal `0400` to `0644`, never executable or group/world-writable",
        default: "`0440` with the pod's fsGroup, else `0444`",
        description: "File permissions. The sidecar has no capabilities and cannot chown, so group access comes from the pod's `fsGroup`.",
        field: "mode",
        parse: Parse::File(|v, f| {
            f.mode = Some(config::parse_mode(v)?);
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/role",
        values: "Vault role name `[A-Za-z0-9._-]`",
        default: "(required for `kubernetes` auth)",
        description: "The Vault role to log in as. Must be on the operator's allowlist for the namespace, if one is set.",
        field: "role",
        parse: Parse::Pod(|v, c| {
            c.role = Some(v.to_string());
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/vault-namespace",
        values: "Vault Enterprise / OpenBao namespace path, e.g. `team-a` or `org/team-a`",
        default: "(the operator's `vault.namespace`, else the root namespace)",
        description: "The namespace every Vault request of this pod goes to, login included. Must be on the operator's `vault.allowedNamespaces`.",
        field: "vaultNamespace",
        parse: Parse::Pod(|v, c| {
            c.vault_namespace = Some(v.to_string());
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/vault-auth",
        values: "`kubernetes` | `approle` | `token`",
        default: "`kubernetes`",
        description: "How the sidecar logs in to Vault. `kubernetes` uses a projected service-account token that only the sidecar mounts.",
        field: "auth",
        parse: Parse::Pod(|v, c| {
            c.auth = match v {
                "kubernetes" => VaultAuth::Kubernetes,
                "approle" => VaultAuth::AppRole,
                "token" => VaultAuth::Token,
                _ => {
                    return Err(format!(
                        "must be kubernetes, approle or token, not \"{}\"",
                        short(v)
                    ));
                }
            };
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/vault-auth-secret",
        values: "Secret name",
        default: "(required for `approle` and `token`)",
        description: "A Secret in the pod's namespace, mounted into the sidecar only, holding `role_id` and `secret_id` (approle) or `token` (token).",
        field: "credentialsSecret",
        parse: Parse::Pod(|v, c| {
            c.credentials_secret = Some(v.to_string());
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/refresh",
        values: "duration: `30s`, `5m`, `1h`, `1h30m`",
        default: "operator setting (`5m`)",
        description: "How often the sidecar checks for changes. Bounded by the operator (by default 10s to 24h). Not used with `init-only`.",
        field: "refreshSeconds",
        parse: Parse::Pod(|v, c| {
            c.refresh = config::parse_duration(v)?;
            Ok(())
        }),
        not_with_init_only: Some("init-only fetches once, so refresh does not apply; remove it"),
        ..ROW
    },
    Annotation {
        key: "hush.dev/on-change",
        values: "`none` | `http:<url>` (or the bare `http://` URL) | `signal:<SIG>:<process>`",
        default: "`none`",
        description: "Notification per consistent update, at least once (a failed POST or signal is retried with backoff, 1 s doubling to 60 s, until delivered or superseded by a newer update), never for an unchanged refresh. `http:` is a POST to loopback only (`http://127.0.0.1:<port>/...`, `http://[::1]:<port>/...`, `http://localhost:<port>/...`). `signal:` (HUP, USR1, USR2, TERM, INT, QUIT) needs the operator to allow `shareProcessNamespace`. Not used with `init-only`.",
        field: "onChange",
        parse: Parse::Pod(|v, c| {
            c.on_change = config::parse_on_change(v, &c.operator)?;
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/mode",
        values: "`sidecar` | `init-only`",
        default: "`sidecar`",
        description: "`sidecar` keeps files fresh as a native sidecar; `init-only` (for Jobs) fetches once in an init container and never revokes.",
        field: "mode",
        parse: Parse::Pod(|v, c| {
            c.mode = match v {
                "sidecar" => Mode::Sidecar,
                "init-only" => Mode::InitOnly,
                _ => {
                    return Err(format!(
                        "must be sidecar or init-only, not \"{}\"",
                        short(v)
                    ));
                }
            };
            Ok(())
        }),
        first: true,
        ..ROW
    },
    Annotation {
        key: "hush.dev/containers",
        values: "comma-separated container names",
        default: "all app and later init containers",
        description: "Narrows which containers get the read-only secrets mount.",
        field: "containers",
        parse: Parse::Pod(|v, c| {
            c.containers = Some(v.split(',').map(|c| c.trim().to_string()).collect());
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/env",
        values: "`NAME=<file>[,NAME=<file>...]`; `NAME` is `[A-Za-z_][A-Za-z0-9_]*`, `<file>` one of the pod's `secret-<file>` files",
        default: "(none)",
        description: "Puts the content of a secret file into an environment variable of the containers that get the mount, with no value in the pod spec: they start through a small launcher that reads the tmpfs and `exec`s their `command` (which must be set). Pick a field with the file's `#field`. The value is read once at start; a running process keeps it until it restarts. Readable in `/proc/<pid>/environ` by the app's user ([docs/env.md](docs/env.md)).",
        field: "env",
        parse: Parse::Pod(|v, c| {
            c.env = config::parse_env(v)?;
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/mount-path",
        values: "absolute path",
        default: "`/var/run/secrets/hush`",
        description: "Where the app containers see the files. Normalised, not `/`, not under `/hush`, and not over the service-account token.",
        field: "mountPath",
        parse: Parse::Pod(|v, c| {
            c.mount_path = v.to_string();
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/aws-role-arn",
        values: "`arn:aws:iam::<12-digit account>:role/<name>`",
        default: "(none: the SDK's default chain)",
        description: "IAM role for web identity. IAM's trust policy, not Hush, decides whether this pod's service account may assume it. Only with `aws:` sources.",
        field: "awsRoleArn",
        parse: Parse::Pod(|v, c| {
            c.aws_role_arn = Some(v.to_string());
            Ok(())
        }),
        ..ROW
    },
    Annotation {
        key: "hush.dev/revoke-on-shutdown",
        values: "`true` | `false`",
        default: "`true`",
        description: "Revoke Vault leases and the token on SIGTERM, and PKI certificates too when the operator sets `vault.revokeCertificates`. `init-only` never revokes (the app still needs what it fetched).",
        field: "revokeOnShutdown",
        parse: Parse::Pod(|v, c| {
            c.revoke_on_shutdown = match v {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(format!(
                        "must be \"true\" or \"false\", not \"{}\"",
                        short(v)
                    ));
                }
            };
            Ok(())
        }),
        unset: Some(|c| c.revoke_on_shutdown = c.mode != Mode::InitOnly),
        ..ROW
    },
    Annotation {
        key: "hush.dev/status",
        scope: Scope::Injector,
        values: "(written by the injector)",
        default: "(none)",
        description: "Set by the injector on injected pods; ignored by the parser and never trusted without the sidecar present.",
        ..ROW
    },
];

/// The reference table of every annotation, in the README's order.
pub fn reference_table() -> &'static [Annotation] {
    TABLE
}

/// The README's "Annotations" table, exactly.
pub fn reference_table_markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out =
        String::from("| Annotation | Values | Default | Description |\n|---|---|---|---|\n");
    for d in TABLE {
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

/// The rows set once per pod that the parser reads (`inject` included, `status` not), in order.
pub fn pod_rows() -> impl Iterator<Item = (usize, &'static Annotation)> {
    TABLE
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a.scope, Scope::OptIn | Scope::Pod))
}

/// The per-file rows, in order.
pub fn file_rows() -> impl Iterator<Item = (usize, &'static Annotation)> {
    TABLE
        .iter()
        .enumerate()
        .filter(|(_, a)| a.scope == Scope::PerFile)
}

/// The row of an annotation name (after `hush.dev/`), and the file name of a per-file key.
fn lookup(name: &str) -> Option<(usize, &'static Annotation, Option<&str>)> {
    if let Some(row) = TABLE
        .iter()
        .enumerate()
        .find(|(_, a)| a.scope != Scope::PerFile && a.name() == name)
    {
        return Some((row.0, row.1, None));
    }
    file_rows().find_map(|(i, a)| name.strip_prefix(a.name()).map(|file| (i, a, Some(file))))
}

/// The per-file row whose field is `field`.
fn file_row(field: &str) -> Option<(usize, &'static Annotation)> {
    file_rows().find(|(_, a)| a.field == field)
}

/// The per-file row that names the secret (`secret-<file>`); every file needs one.
fn source_row() -> (usize, &'static Annotation) {
    file_row(SOURCE).expect("the table has a per-file row for the source (checked by a unit test)")
}

/// The per-file row of the template (`template-<file>`): a file may have it instead of a secret.
fn template_row() -> (usize, &'static Annotation) {
    file_row(TEMPLATE)
        .expect("the table has a per-file row for the template (checked by a unit test)")
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
    let mut pod: BTreeMap<usize, (&str, &str)> = BTreeMap::new();
    let mut files: BTreeMap<&str, FileAnnotations<'_>> = BTreeMap::new();
    let mut seen = 0usize;
    // Secret annotations that failed before parsing, and the stores they were meant for, so that
    // one bad reference does not cascade into "role is unused" and "a secret is required".
    let mut broken = BrokenSecrets::default();
    let source_prefix = source_row().1.name();

    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        let row = lookup(name);
        if row.is_some_and(|(_, a, _)| a.scope == Scope::Injector) {
            continue;
        }
        seen += 1;
        if name.starts_with(source_prefix) {
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
        let multiline = row.is_some_and(|(_, a, _)| a.multiline);
        if !multiline && value.chars().any(|c| c == '\n' || c == '\r') {
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
            p.add(
                key,
                format!("contains {}", hush_contract::names::describe_char(c)),
            );
            continue;
        }
        match row {
            Some((i, _, None)) => {
                pod.insert(i, (key.as_str(), value.as_str()));
            }
            Some((i, _, Some(file))) => {
                if let Err(reason) = check_file_name(file) {
                    p.add(
                        key,
                        format!("invalid file name \"{}\": {reason}", short(file)),
                    );
                    continue;
                }
                files
                    .entry(file)
                    .or_default()
                    .0
                    .insert(i, (key.as_str(), value.as_str()));
            }
            None => {
                p.add(key, unknown_key_reason(name));
                if ["vault:", "aws:", "sealed:"]
                    .iter()
                    .any(|s| value.starts_with(s))
                {
                    // Most likely a misspelt secret- key: don't cascade.
                    broken.note(value);
                    broken.any_invalid = true;
                }
            }
        }
    }
    let source_key = key(source_prefix);
    broken.any_invalid |= p.0.iter().any(|x| x.annotation.starts_with(&source_key));

    match pod.values().find(|(k, _)| *k == INJECT).map(|(_, v)| *v) {
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
    let cfg = build(&pod, &files, namespace, operator, &broken, &mut p);
    p.finish()?;
    // `build` reported `cfg.problems_given(&unparsed)`, and with no problem found every annotation
    // parsed, so `unparsed` holds nothing that silences a rule (its store hints follow from the
    // parsed files): that was `cfg.problems()`, the rule set `SidecarConfig::validate` applies
    // (besides the constant version and the operator settings checked above). Running it again
    // cost about 4% of an admission; debug builds (the tests, the annotation proptests) still do.
    debug_assert!(
        cfg.validate().is_ok(),
        "a config built without problems passes its own validation"
    );
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

/// The per-file annotations of one file: (key, value) by row.
#[derive(Default)]
struct FileAnnotations<'a>(BTreeMap<usize, (&'a str, &'a str)>);

/// One file while its annotations are parsed.
#[derive(Default)]
struct FileDraft {
    source: Option<SourceRef>,
    template: Option<String>,
    format: Option<Format>,
    mode: Option<u32>,
}

/// Where a problem sorts: the pod's namespace, then file by file, then the files as a whole, then
/// the pod-level rows (the `first` ones, then the others in table order).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Namespace,
    File(String, usize),
    Files,
    Pod(bool, usize),
}

impl Rank {
    fn pod(i: usize) -> Rank {
        Rank::Pod(!TABLE[i].first, i)
    }
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

/// The full key of an annotation name.
pub fn key(name: &str) -> String {
    format!("{ANNOTATION_PREFIX}{name}")
}

/// The annotation that sets a field named by [`SidecarConfig::problems`], and where its problem
/// sorts. Fields no annotation sets (the namespace, the list of files) belong to `inject`.
fn annotation_of(field: &str) -> (Rank, String) {
    if field == "namespace" {
        return (Rank::Namespace, INJECT.to_string());
    }
    if let Some((file, part)) = field
        .strip_prefix("files[")
        .and_then(|rest| rest.split_once("]."))
        && let Some((i, row)) = file_row(part)
    {
        return (
            Rank::File(file.to_string(), i),
            key(&format!("{}{file}", row.name())),
        );
    }
    match pod_rows().find(|(_, a)| a.field == field) {
        Some((i, row)) => (Rank::pod(i), row.key.to_string()),
        None => (Rank::Files, INJECT.to_string()),
    }
}

/// Builds the config from classified annotations: each row parses its value into the draft, then
/// the draft's own [`SidecarConfig::problems`] are reported under the annotations that set the
/// fields. Problems go to `p`, sorted as [`Rank`] says.
fn build(
    pod: &BTreeMap<usize, (&str, &str)>,
    files: &BTreeMap<&str, FileAnnotations<'_>>,
    namespace: &str,
    op: &OperatorSettings,
    broken: &BrokenSecrets,
    p: &mut Problems,
) -> SidecarConfig {
    let mut found: Vec<(Rank, AnnotationProblem)> = Vec::new();
    let mut add = |rank: Rank, annotation: &str, reason: String| {
        found.push((
            rank,
            AnnotationProblem {
                annotation: annotation.to_string(),
                reason,
            },
        ));
    };
    let mut unparsed = Unparsed {
        files_incomplete: broken.any_invalid,
        vault_hint: broken.vault_hint,
        aws_hint: broken.aws_hint,
        ..Unparsed::default()
    };
    let mut cfg = SidecarConfig::defaults(namespace, op);

    // Files, one by one: the secret first; without it, the file's other options are orphans.
    let (si, source_row) = source_row();
    for (name, fa) in files {
        let file_key = |row: &Annotation| key(&format!("{}{name}", row.name()));
        let (template_i, _) = template_row();
        let template_only = !fa.0.contains_key(&si) && fa.0.contains_key(&template_i);
        let secret = fa.0.get(&si);
        if secret.is_none() && !template_only {
            for (i, (k, _)) in &fa.0 {
                add(
                    Rank::File((*name).to_string(), *i),
                    k,
                    format!(
                        "there is no {} (or {}) for this file; add it or remove this annotation",
                        file_key(source_row),
                        file_key(&TABLE[template_i])
                    ),
                );
            }
            continue;
        }
        let mut d = FileDraft::default();
        if let Some((skey, svalue)) = secret
            && let Err(r) = parse_file(source_row, svalue, &mut d)
        {
            add(Rank::File((*name).to_string(), si), skey, r);
            unparsed.files_incomplete = true;
            continue;
        }
        for (i, (k, v)) in fa.0.iter().filter(|(i, _)| **i != si) {
            let row = &TABLE[*i];
            let rank = Rank::File((*name).to_string(), *i);
            if let Some((other, other_row)) = row.overridden_by.and_then(file_row)
                && fa.0.contains_key(&other)
            {
                add(
                    rank,
                    k,
                    format!(
                        "{} decides the output; remove this annotation",
                        file_key(other_row)
                    ),
                );
                continue;
            }
            if let Err(r) = parse_file(row, v, &mut d) {
                add(rank, k, r);
                unparsed
                    .fields
                    .insert(format!("files[{name}].{}", row.field));
            }
        }
        let format = match (&d.template, d.format) {
            (Some(_), _) => Format::Template,
            (None, f) => f.unwrap_or(Format::Raw),
        };
        if d.source.is_some() || d.template.is_some() {
            cfg.files.push(FileSpec {
                name: (*name).to_string(),
                source: d.source,
                format,
                template: d.template,
                mode: d.mode.unwrap_or_else(|| op.default_file_mode()),
            });
        }
    }

    // Pod-level rows: the `first` ones, the others in table order, and last those that mean
    // nothing in init-only mode, once the mode is known.
    let mut rows: Vec<_> = pod_rows().collect();
    rows.sort_by_key(|(i, a)| (a.sidecar_mode_only(), Rank::pod(*i)));
    for (i, row) in rows {
        let Parse::Pod(parse) = row.parse else {
            continue;
        };
        let Some((k, v)) = pod.get(&i) else {
            if let Some(unset) = row.unset {
                unset(&mut cfg);
            }
            continue;
        };
        if let Some(reason) = row.not_with_init_only
            && cfg.mode == Mode::InitOnly
        {
            add(Rank::pod(i), k, reason.to_string());
            continue;
        }
        if let Err(r) = parse(v, &mut cfg) {
            add(Rank::pod(i), k, r);
            unparsed.fields.insert(row.field.to_string());
            if let Some(unset) = row.unset {
                unset(&mut cfg);
            }
        }
    }

    for problem in cfg.problems_given(&unparsed) {
        let (rank, annotation) = annotation_of(&problem.field);
        add(rank, &annotation, problem.reason);
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    p.0.extend(found.into_iter().map(|(_, problem)| problem));
    cfg
}

fn parse_file(row: &Annotation, value: &str, d: &mut FileDraft) -> std::result::Result<(), String> {
    match row.parse {
        Parse::File(parse) => parse(value, d),
        Parse::Pod(_) | Parse::None => Ok(()),
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
    let mut candidates: Vec<String> = pod_rows().map(|(_, a)| a.name().to_string()).collect();
    for pre in file_rows().map(|(_, a)| a.name()) {
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
    fn rows_are_consistent() {
        // Optional lists are left out of the JSON when empty, so give them one entry.
        let cfg = SidecarConfig {
            env: vec![crate::EnvSpec {
                name: "A".into(),
                file: "a".into(),
            }],
            ..SidecarConfig::defaults("ns", &OperatorSettings::default())
        };
        let json: serde_json::Value = serde_json::from_str(&cfg.to_json()).unwrap();
        for (i, row) in TABLE.iter().enumerate() {
            assert!(row.key.starts_with(ANNOTATION_PREFIX), "{}", row.key);
            assert_eq!(
                row.key.ends_with("<file>"),
                row.scope == Scope::PerFile,
                "{}",
                row.key
            );
            match (row.scope, row.parse) {
                (Scope::Pod, Parse::Pod(_)) => {
                    // The field a pod-level row sets is a field of HUSH_CONFIG.
                    assert!(json.get(row.field).is_some(), "{}: {}", row.key, row.field);
                }
                (Scope::PerFile, Parse::File(_)) => assert!(!row.field.is_empty()),
                (Scope::OptIn | Scope::Injector, Parse::None) => {}
                _ => panic!("{}: scope and parser disagree", row.key),
            }
            // Keys are unique.
            assert!(TABLE[..i].iter().all(|r| r.key != row.key), "{}", row.key);
        }
        assert_eq!(TABLE.iter().filter(|r| r.scope == Scope::OptIn).count(), 1);
        assert_eq!(key(TABLE[0].name()), INJECT);
        assert!(TABLE.iter().any(|r| r.key == hush_contract::STATUS));
        assert!(file_row(SOURCE).is_some());
        assert!(file_row(TEMPLATE).is_some());
        // The secret comes first among the per-file rows: the others need it.
        assert_eq!(file_rows().next().map(|(_, a)| a.field), Some(SOURCE));
    }

    #[test]
    fn fields_map_back_to_their_annotation() {
        assert_eq!(annotation_of("refreshSeconds").1, "hush.dev/refresh");
        assert_eq!(annotation_of("files[db].format").1, "hush.dev/format-db");
        assert_eq!(annotation_of("files[a.b].source").1, "hush.dev/secret-a.b");
        assert_eq!(
            annotation_of("credentialsSecret").1,
            "hush.dev/vault-auth-secret"
        );
        assert_eq!(annotation_of("namespace").1, INJECT);
        assert_eq!(annotation_of("files").1, INJECT);
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
