//! Secret references: the `vault:`, `aws:` and `sealed:` URIs that a `hush.dev/secret-<file>`
//! annotation holds, parsed into a typed [`SourceRef`]. Values here come from tenants, so every
//! component is checked against a narrow character set before it can reach a URL, an AWS call or
//! the file system (docs/threat-model.md, "Hostile annotation values"). The same checks run again
//! when the sidecar reads its `HUSH_CONFIG`.

use std::fmt;

use serde::{Deserialize, Serialize};

use hush_contract::names::{check_configmap_key, check_dns1123_subdomain, describe_char, short};

/// Longest Vault path accepted.
pub(crate) const MAX_VAULT_PATH_LEN: usize = 1024;
/// Largest `?version=N` accepted for a KV v2 secret.
pub(crate) const MAX_KV_VERSION: u64 = 100_000_000;
/// Longest `#field` / `#json-key` accepted.
pub(crate) const MAX_FIELD_LEN: usize = 256;
/// Longest AWS secret id (a name is at most 512 characters; an ARN adds its prefix and suffix).
pub(crate) const MAX_AWS_ID_LEN: usize = 2048;

/// Which secret store a reference points at. Used for metrics labels and to decide which volumes
/// and tokens the injector adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Vault or OpenBao.
    Vault,
    /// AWS Secrets Manager.
    Aws,
    /// A sealed ConfigMap decrypted in the pod.
    Sealed,
}

impl SourceKind {
    /// The label value used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Vault => "vault",
            SourceKind::Aws => "aws",
            SourceKind::Sealed => "sealed",
        }
    }
}

/// Which version of an AWS secret to read. AWSCURRENT is always asked for explicitly.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum AwsStage {
    /// `AWSCURRENT` (the default).
    #[default]
    Current,
    /// `AWSPREVIOUS`.
    Previous,
    /// A fixed version id: immutable, fetched once.
    VersionId(String),
    /// Any other staging label.
    Label(String),
}

impl AwsStage {
    /// The `VersionStage` to send, if this is a stage (not a version id).
    pub fn stage_label(&self) -> Option<&str> {
        match self {
            AwsStage::Current => Some("AWSCURRENT"),
            AwsStage::Previous => Some("AWSPREVIOUS"),
            AwsStage::Label(l) => Some(l),
            AwsStage::VersionId(_) => None,
        }
    }
}

/// One parsed secret reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "lowercase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum SourceRef {
    /// `vault:<path>[#field][?version=N]`: KV v1/v2 or any logical path such as
    /// `database/creds/app`.
    Vault {
        /// Path below the Vault API root, e.g. `secret/data/app` or `secret/app`; validated, no
        /// leading `/`.
        path: String,
        /// One field of the response data; the file then holds that value only.
        field: Option<String>,
        /// A fixed KV v2 version.
        version: Option<u64>,
    },
    /// `aws:<name-or-arn>[#json-key][?stage=...|version-id=...]`.
    Aws {
        /// Secret name or full ARN.
        id: String,
        /// One key of a JSON secret.
        json_key: Option<String>,
        /// Stage or version to read.
        #[serde(default)]
        stage: AwsStage,
    },
    /// `sealed:<configmap>/<key>`: the value is read from `SEALED_DIR/<configmap>/<key>`.
    Sealed {
        /// Name of the sealed ConfigMap in the pod's namespace.
        configmap: String,
        /// Data key inside it.
        key: String,
    },
}

impl SourceRef {
    /// Parses a reference from its URI form, returning a reason on failure.
    pub fn parse(s: &str) -> Result<SourceRef, String> {
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(format!("the reference contains {}", describe_char(c)));
        }
        let parsed = if let Some(rest) = s.strip_prefix("vault:") {
            let (path, field, query) = split_suffixes(rest)?;
            let version = match query {
                None => None,
                Some(q) => {
                    let v = q.strip_prefix("version=").ok_or_else(|| {
                        format!(
                            "unknown query \"?{}\"; a vault: reference accepts only ?version=N",
                            short(q)
                        )
                    })?;
                    Some(parse_bounded(v, "version", 1, MAX_KV_VERSION)?)
                }
            };
            SourceRef::Vault {
                path: path.to_string(),
                field: field.map(str::to_string),
                version,
            }
        } else if let Some(rest) = s.strip_prefix("aws:") {
            let (id, json_key, query) = split_suffixes(rest)?;
            let stage = match query {
                None => AwsStage::Current,
                Some(q) => {
                    if let Some(stage) = q.strip_prefix("stage=") {
                        match stage {
                            "AWSCURRENT" => AwsStage::Current,
                            "AWSPREVIOUS" => AwsStage::Previous,
                            other => AwsStage::Label(other.to_string()),
                        }
                    } else if let Some(id) = q.strip_prefix("version-id=") {
                        AwsStage::VersionId(id.to_string())
                    } else {
                        return Err(format!(
                            "unknown query \"?{}\"; an aws: reference accepts ?stage=<label> or ?version-id=<id>",
                            short(q)
                        ));
                    }
                }
            };
            SourceRef::Aws {
                id: id.to_string(),
                json_key: json_key.map(str::to_string),
                stage,
            }
        } else if let Some(rest) = s.strip_prefix("sealed:") {
            let (configmap, key) = rest.split_once('/').ok_or_else(|| {
                "a sealed: reference must be sealed:<configmap>/<key>".to_string()
            })?;
            SourceRef::Sealed {
                configmap: configmap.to_string(),
                key: key.to_string(),
            }
        } else {
            return Err(
                "unknown source; use vault:<path>, aws:<name-or-arn> or sealed:<configmap>/<key>"
                    .into(),
            );
        };
        parsed.validate()?;
        Ok(parsed)
    }

    /// Which store this reference points at.
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceRef::Vault { .. } => SourceKind::Vault,
            SourceRef::Aws { .. } => SourceKind::Aws,
            SourceRef::Sealed { .. } => SourceKind::Sealed,
        }
    }

    /// Whether the reference selects one value (`#field`, `#json-key`, or a sealed key) rather
    /// than a set of fields.
    pub fn selects_single_value(&self) -> bool {
        match self {
            SourceRef::Vault { field, .. } => field.is_some(),
            SourceRef::Aws { json_key, .. } => json_key.is_some(),
            SourceRef::Sealed { .. } => true,
        }
    }

    /// Checks every component. Used by [`SourceRef::parse`] and when re-validating a
    /// deserialised config.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SourceRef::Vault {
                path,
                field,
                version,
            } => {
                check_vault_path(path)?;
                if let Some(f) = field {
                    check_field(f, "#field")?;
                }
                if let Some(v) = version
                    && !(1..=MAX_KV_VERSION).contains(v)
                {
                    return Err(format!("version must be between 1 and {MAX_KV_VERSION}"));
                }
                Ok(())
            }
            SourceRef::Aws {
                id,
                json_key,
                stage,
            } => {
                check_aws_id(id)?;
                if let Some(k) = json_key {
                    check_field(k, "#json-key")?;
                }
                match stage {
                    AwsStage::Current | AwsStage::Previous => Ok(()),
                    AwsStage::Label(l) => check_aws_token(l, "stage", 256),
                    AwsStage::VersionId(v) => check_aws_token(v, "version-id", 64),
                }
            }
            SourceRef::Sealed { configmap, key } => {
                check_dns1123_subdomain(configmap)
                    .map_err(|r| format!("sealed ConfigMap name: {r}"))?;
                check_configmap_key(key)
            }
        }
    }
}

impl fmt::Display for SourceRef {
    /// The canonical URI form; it parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceRef::Vault {
                path,
                field,
                version,
            } => {
                write!(f, "vault:{path}")?;
                if let Some(x) = field {
                    write!(f, "#{x}")?;
                }
                if let Some(v) = version {
                    write!(f, "?version={v}")?;
                }
                Ok(())
            }
            SourceRef::Aws {
                id,
                json_key,
                stage,
            } => {
                write!(f, "aws:{id}")?;
                if let Some(k) = json_key {
                    write!(f, "#{k}")?;
                }
                match stage {
                    AwsStage::Current => Ok(()),
                    AwsStage::Previous => write!(f, "?stage=AWSPREVIOUS"),
                    AwsStage::Label(l) => write!(f, "?stage={l}"),
                    AwsStage::VersionId(v) => write!(f, "?version-id={v}"),
                }
            }
            SourceRef::Sealed { configmap, key } => write!(f, "sealed:{configmap}/{key}"),
        }
    }
}

/// Splits `<body>[#frag][?query]` (either order of the two suffixes), each at most once.
fn split_suffixes(s: &str) -> Result<(&str, Option<&str>, Option<&str>), String> {
    let first = s.find(['#', '?']).unwrap_or(s.len());
    let body = &s[..first];
    let mut rest = &s[first..];
    let mut frag = None;
    let mut query = None;
    while let Some(marker) = rest.chars().next() {
        let tail = &rest[1..];
        let end = tail.find(['#', '?']).unwrap_or(tail.len());
        let part = &tail[..end];
        let slot = if marker == '#' { &mut frag } else { &mut query };
        if slot.is_some() {
            return Err(format!("'{marker}' may appear only once in a reference"));
        }
        *slot = Some(part);
        rest = &tail[end..];
    }
    Ok((body, frag, query))
}

fn parse_bounded(s: &str, what: &str, min: u64, max: u64) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} must be a whole number"));
    }
    match s.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("{what} must be between {min} and {max}")),
    }
}

/// Vault path rules: relative, `/`-separated, no empty, `.` or `..` segment, no percent-encoding,
/// no `?`/`#`, and only `[A-Za-z0-9._@:+=,~-]` inside segments. Segments are percent-encoded one by
/// one by the provider when they go into a URL.
pub(crate) fn check_vault_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the Vault path is empty".into());
    }
    if path.len() > MAX_VAULT_PATH_LEN {
        return Err(format!(
            "the Vault path is longer than {MAX_VAULT_PATH_LEN} characters"
        ));
    }
    if path.starts_with('/') {
        return Err(
            "the Vault path must be relative (no leading '/'), e.g. secret/data/app".into(),
        );
    }
    if path.contains('%') {
        return Err("the Vault path must not contain percent-encoding ('%')".into());
    }
    for seg in path.split('/') {
        if seg.is_empty() {
            return Err("the Vault path has an empty segment ('//' or a trailing '/')".into());
        }
        if seg == "." || seg == ".." {
            return Err("the Vault path must not contain '.' or '..' segments".into());
        }
        if let Some(c) = seg.chars().find(|c| {
            !(c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-' | '@' | ':' | '+' | '=' | ',' | '~'))
        }) {
            return Err(format!("the Vault path contains {}", describe_char(c)));
        }
    }
    Ok(())
}

fn check_field(f: &str, what: &str) -> Result<(), String> {
    if f.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if f.len() > MAX_FIELD_LEN {
        return Err(format!("{what} is longer than {MAX_FIELD_LEN} characters"));
    }
    if let Some(c) = f.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':' | '+' | '/'))
    }) {
        return Err(format!("{what} contains {}", describe_char(c)));
    }
    Ok(())
}

fn check_aws_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the AWS secret name is empty".into());
    }
    if id.len() > MAX_AWS_ID_LEN {
        return Err(format!(
            "the AWS secret id is longer than {MAX_AWS_ID_LEN} characters"
        ));
    }
    let name = if let Some(arn) = id.strip_prefix("arn:") {
        // arn:<partition>:secretsmanager:<region>:<account>:secret:<name>
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0].starts_with("aws")
            && parts[0]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-')
            && parts[1] == "secretsmanager"
            && !parts[2].is_empty()
            && parts[2]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && parts[3].len() == 12
            && parts[3].bytes().all(|b| b.is_ascii_digit());
        if !ok || parts[4] != "secret" {
            return Err(
                "the AWS ARN must look like arn:aws:secretsmanager:<region>:<12-digit account>:secret:<name>"
                    .into(),
            );
        }
        parts[5]
    } else {
        id
    };
    if name.is_empty() || name.len() > 512 {
        return Err("the AWS secret name must be 1 to 512 characters long".into());
    }
    if let Some(c) = name.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '=' | '.' | '@' | '-'))
    }) {
        return Err(format!("the AWS secret name contains {}", describe_char(c)));
    }
    if name.split('/').any(|s| s == ".." || s == ".") {
        return Err("the AWS secret name must not contain '.' or '..' segments".into());
    }
    Ok(())
}

fn check_aws_token(v: &str, what: &str, max: usize) -> Result<(), String> {
    if v.is_empty() || v.len() > max {
        return Err(format!("{what} must be 1 to {max} characters long"));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '=' | '@')))
    {
        return Err(format!("{what} contains {}", describe_char(c)));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vault_refs() {
        assert_eq!(
            SourceRef::parse("vault:secret/data/app#password?version=3"),
            Ok(SourceRef::Vault {
                path: "secret/data/app".into(),
                field: Some("password".into()),
                version: Some(3)
            })
        );
        assert_eq!(
            SourceRef::parse("vault:secret/data/app?version=3#password"),
            SourceRef::parse("vault:secret/data/app#password?version=3")
        );
        assert_eq!(
            SourceRef::parse("vault:database/creds/app"),
            Ok(SourceRef::Vault {
                path: "database/creds/app".into(),
                field: None,
                version: None
            })
        );
        for bad in [
            "vault:",
            "vault:/secret/x",
            "vault:secret//x",
            "vault:secret/x/",
            "vault:secret/../x",
            "vault:secret/%2e%2e/x",
            "vault:secret/x?version=0",
            "vault:secret/x?version=999999999999",
            "vault:secret/x?v=1",
            "vault:secret/x#a#b",
            "vault:secret/x#",
            "vault:secret/x y",
            "vault:secret/x\n",
            "vault:secret\\x",
        ] {
            assert!(SourceRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn aws_refs() {
        assert_eq!(
            SourceRef::parse("aws:prod/db#password?stage=AWSPREVIOUS"),
            Ok(SourceRef::Aws {
                id: "prod/db".into(),
                json_key: Some("password".into()),
                stage: AwsStage::Previous
            })
        );
        let arn = "aws:arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf";
        assert!(SourceRef::parse(arn).is_ok());
        assert!(SourceRef::parse("aws:arn:aws:secretsmanager:eu-west-1:1234:secret:prod").is_err());
        assert!(SourceRef::parse("aws:x?version-id=EXAMPLE1-90ab-cdef").is_ok());
        assert!(SourceRef::parse("aws:x?stage=").is_err());
        assert!(SourceRef::parse("aws:x?foo=1").is_err());
        assert!(SourceRef::parse("aws:a b").is_err());
    }

    #[test]
    fn sealed_refs() {
        assert_eq!(
            SourceRef::parse("sealed:db-creds/password"),
            Ok(SourceRef::Sealed {
                configmap: "db-creds".into(),
                key: "password".into()
            })
        );
        for bad in [
            "sealed:db",
            "sealed:db/..x",
            "sealed:DB/x",
            "sealed:db/a/b",
            "sealed:/x",
        ] {
            assert!(SourceRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "vault:secret/data/app#password?version=3",
            "vault:kv/app",
            "aws:prod/db#k?stage=AWSPREVIOUS",
            "aws:prod/db?stage=mylabel",
            "aws:prod/db?version-id=abc-123",
            "aws:prod/db",
            "sealed:cm/key",
        ] {
            let r = SourceRef::parse(s).unwrap();
            assert_eq!(r.to_string(), s);
            assert_eq!(SourceRef::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn unknown_scheme() {
        let e = SourceRef::parse("http://evil/x").unwrap_err();
        assert!(e.contains("unknown source"), "{e}");
    }
}
