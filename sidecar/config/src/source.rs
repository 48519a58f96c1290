//! Secret references: the `vault:`, `aws:` and `sealed:` URIs that a `hush.dev/secret-<file>`
//! annotation holds, parsed into a typed [`SourceRef`]. Values here come from tenants, so every
//! component is checked against a narrow character set before it can reach a URL, an AWS call or
//! the file system (docs/threat-model.md, "Hostile annotation values"). The same checks run again
//! when the sidecar reads its `HUSH_CONFIG`.
//!
//! A `vault:` reference with PKI parameters (`vault:pki/issue/web?common_name=web.example`) is a
//! certificate request, the one write a tenant may ask of Vault: its path must name a role under
//! `<mount>/issue/`, and its parameters come from a fixed allowlist ([`PKI_PARAMS`]), each checked
//! against its own narrow character set, so an annotation cannot become a generic POST.

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

/// Longest value of one PKI parameter (a list of alt names can be long).
pub(crate) const MAX_PKI_PARAM_LEN: usize = 1024;

/// The PKI issue parameters a reference may set, in their canonical order. Everything else of
/// `pki/issue/:role` (`format`, `other_sans`, `not_after`, `serial_number`, ...) is refused: the
/// sidecar always asks for PEM, and the rest belongs to the role the Vault operator wrote.
pub const PKI_PARAMS: &[&str] = &[
    "common_name",
    "alt_names",
    "ip_sans",
    "uri_sans",
    "ttl",
    "exclude_cn_from_sans",
    "private_key_format",
];

/// The fields of an issued certificate, as `#field` selects them and templates see them
/// (`data.certificate`, ...). `ca_chain` is the PEM blocks of the chain joined by newlines.
pub const PKI_FIELDS: &[&str] = &[
    "certificate",
    "private_key",
    "issuing_ca",
    "ca_chain",
    "serial_number",
    "expiration",
    "private_key_type",
];

/// The parameters of one PKI issue request (`vault:<mount>/issue/<role>?...`), already checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PkiIssue {
    /// `common_name`: the certificate's CN (required).
    pub common_name: String,
    /// `alt_names`: comma-separated DNS names or email addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_names: Option<String>,
    /// `ip_sans`: comma-separated IP addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_sans: Option<String>,
    /// `uri_sans`: comma-separated URIs (SPIFFE ids, for example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_sans: Option<String>,
    /// `ttl`: seconds, or a number with an `s`, `m` or `h` suffix; capped by the role's `max_ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// `exclude_cn_from_sans`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_cn_from_sans: Option<bool>,
    /// `private_key_format`: `der` (PKCS#1/SEC1 in PEM, the default) or `pkcs8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_format: Option<String>,
}

impl PkiIssue {
    /// The parameters as `(name, value)` pairs in canonical order, for the URI form and the
    /// request body.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("common_name", self.common_name.clone())];
        let opt = [
            ("alt_names", &self.alt_names),
            ("ip_sans", &self.ip_sans),
            ("uri_sans", &self.uri_sans),
            ("ttl", &self.ttl),
        ];
        for (k, v) in opt {
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        }
        if let Some(b) = self.exclude_cn_from_sans {
            out.push(("exclude_cn_from_sans", b.to_string()));
        }
        if let Some(f) = &self.private_key_format {
            out.push(("private_key_format", f.clone()));
        }
        out
    }

    /// Parses `a=b&c=d`. Unknown names, repeats and bad values are errors that say what is allowed.
    fn parse_query(q: &str) -> Result<PkiIssue, String> {
        let mut p = PkiIssue::default();
        let mut seen: Vec<&str> = Vec::new();
        let mut cn = None;
        for part in q.split('&') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!(
                    "the PKI parameter \"{}\" has no value; write name=value",
                    short(part)
                )
            })?;
            if seen.contains(&k) {
                return Err(format!("the PKI parameter {} is given twice", short(k)));
            }
            seen.push(k);
            match k {
                "common_name" => cn = Some(v.to_string()),
                "alt_names" => p.alt_names = Some(v.to_string()),
                "ip_sans" => p.ip_sans = Some(v.to_string()),
                "uri_sans" => p.uri_sans = Some(v.to_string()),
                "ttl" => p.ttl = Some(v.to_string()),
                "exclude_cn_from_sans" => {
                    p.exclude_cn_from_sans = Some(match v {
                        "true" => true,
                        "false" => false,
                        _ => return Err("exclude_cn_from_sans must be true or false".into()),
                    })
                }
                "private_key_format" => p.private_key_format = Some(v.to_string()),
                "format" if v == "pem" => {}
                "format" => {
                    return Err(format!(
                        "format=\"{}\" is not supported: Hush always asks for pem and writes PEM files",
                        short(v)
                    ));
                }
                other => {
                    return Err(format!(
                        "\"{}\" is not an allowed PKI parameter; a vault:<mount>/issue/<role> reference accepts only {} (the rest is set by the Vault role)",
                        short(other),
                        PKI_PARAMS.join(", ")
                    ));
                }
            }
        }
        p.common_name = cn.ok_or_else(|| {
            "a PKI issue reference needs ?common_name=<name> (the certificate's CN)".to_string()
        })?;
        p.validate()?;
        Ok(p)
    }

    /// Checks every parameter against its character set and bounds.
    pub fn validate(&self) -> Result<(), String> {
        let name_chars =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | '@');
        check_param("common_name", &self.common_name, name_chars)?;
        if let Some(v) = &self.alt_names {
            check_list("alt_names", v, name_chars)?;
        }
        if let Some(v) = &self.ip_sans {
            check_list("ip_sans", v, |c| {
                c.is_ascii_hexdigit() || matches!(c, '.' | ':')
            })?;
            if let Some(bad) = v
                .split(',')
                .find(|ip| ip.parse::<std::net::IpAddr>().is_err())
            {
                return Err(format!("ip_sans: \"{}\" is not an IP address", short(bad)));
            }
        }
        if let Some(v) = &self.uri_sans {
            check_list("uri_sans", v, |c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, '.' | '-' | '_' | '~' | ':' | '/' | '@' | '+' | '=')
            })?;
            if let Some(u) = v.split(',').find(|u| !u.contains(':')) {
                return Err(format!(
                    "uri_sans: \"{}\" is not a URI (it has no scheme, e.g. spiffe://...)",
                    short(u)
                ));
            }
        }
        if let Some(t) = &self.ttl {
            let digits = t.strip_suffix(['s', 'm', 'h']).unwrap_or(t);
            if digits.is_empty()
                || digits.len() > 9
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || digits.bytes().all(|b| b == b'0')
            {
                return Err(format!(
                    "ttl must be a positive whole number of seconds, optionally with an s, m or h suffix (e.g. 72h), not \"{}\"",
                    short(t)
                ));
            }
        }
        if let Some(f) = &self.private_key_format
            && f != "der"
            && f != "pkcs8"
        {
            return Err(format!(
                "private_key_format must be der or pkcs8, not \"{}\"",
                short(f)
            ));
        }
        Ok(())
    }
}

fn check_param(name: &str, v: &str, ok: impl Fn(char) -> bool) -> Result<(), String> {
    if v.is_empty() {
        return Err(format!("{name} is empty"));
    }
    if v.len() > MAX_PKI_PARAM_LEN {
        return Err(format!(
            "{name} is longer than {MAX_PKI_PARAM_LEN} characters"
        ));
    }
    if let Some(c) = v.chars().find(|c| !ok(*c)) {
        return Err(format!("{name} contains {}", describe_char(c)));
    }
    Ok(())
}

fn check_list(name: &str, v: &str, ok: impl Fn(char) -> bool) -> Result<(), String> {
    check_param(name, v, |c| c == ',' || ok(c))?;
    if v.split(',').any(str::is_empty) {
        return Err(format!(
            "{name} has an empty entry (',,' or a leading or trailing ',')"
        ));
    }
    Ok(())
}

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
    /// `vault:<mount>/issue/<role>[#field]?common_name=...[&...]`: a certificate issued by a PKI
    /// engine, re-issued at about 2/3 of its lifetime.
    Pki {
        /// The PKI mount, e.g. `pki` or `pki/int`; validated like a Vault path.
        mount: String,
        /// The role under `<mount>/issue/`.
        role: String,
        /// One of [`PKI_FIELDS`]; the file then holds that value only.
        field: Option<String>,
        /// The request parameters.
        issue: PkiIssue,
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
            if let Some(q) = query
                && !q.starts_with("version=")
            {
                return SourceRef::parse_pki(path, field, q);
            }
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

    /// A PKI issue reference: `path` must be `<mount>/issue/<role>`.
    fn parse_pki(path: &str, field: Option<&str>, query: &str) -> Result<SourceRef, String> {
        check_vault_path(path)?;
        let mut it = path.rsplitn(3, '/');
        let (role, issue, mount) = (it.next(), it.next(), it.next());
        let (Some(role), Some("issue"), Some(mount)) = (role, issue, mount) else {
            return Err(format!(
                "unknown query \"?{}\"; a vault: reference accepts ?version=N, or PKI issue parameters on a path <mount>/issue/<role> (vault:pki/issue/web?common_name=web.example.com)",
                short(query)
            ));
        };
        let parsed = SourceRef::Pki {
            mount: mount.to_string(),
            role: role.to_string(),
            field: field.map(str::to_string),
            issue: PkiIssue::parse_query(query)?,
        };
        parsed.validate()?;
        Ok(parsed)
    }

    /// Which store this reference points at.
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceRef::Vault { .. } | SourceRef::Pki { .. } => SourceKind::Vault,
            SourceRef::Aws { .. } => SourceKind::Aws,
            SourceRef::Sealed { .. } => SourceKind::Sealed,
        }
    }

    /// Whether the reference selects one value (`#field`, `#json-key`, or a sealed key) rather
    /// than a set of fields.
    pub fn selects_single_value(&self) -> bool {
        match self {
            SourceRef::Vault { field, .. } | SourceRef::Pki { field, .. } => field.is_some(),
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
            SourceRef::Pki {
                mount,
                role,
                field,
                issue,
            } => {
                check_vault_path(mount)?;
                check_vault_path(role)?;
                if role.contains('/') {
                    return Err("the PKI role must be one path segment".into());
                }
                if let Some(f) = field
                    && !PKI_FIELDS.contains(&f.as_str())
                {
                    return Err(format!(
                        "#{} is not a field of an issued certificate; use one of {}",
                        short(f),
                        PKI_FIELDS.join(", ")
                    ));
                }
                issue.validate()
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
            SourceRef::Pki {
                mount,
                role,
                field,
                issue,
            } => {
                write!(f, "vault:{mount}/issue/{role}")?;
                if let Some(x) = field {
                    write!(f, "#{x}")?;
                }
                for (i, (k, v)) in issue.pairs().iter().enumerate() {
                    write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
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
            "vault:pki/issue/web?common_name=web.example&ttl=30s",
            "vault:pki/issue/web#private_key?common_name=web.example&alt_names=a.example",
        ] {
            let r = SourceRef::parse(s).unwrap();
            assert_eq!(r.to_string(), s);
            assert_eq!(SourceRef::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn pki_refs() {
        let r = SourceRef::parse(
            "vault:pki/int/issue/web#certificate?common_name=web.example.com&alt_names=a.example.com,*.b.example.com&ip_sans=10.0.0.1,::1&uri_sans=spiffe://cluster.local/ns/a/sa/b&ttl=72h&exclude_cn_from_sans=false&private_key_format=pkcs8&format=pem",
        )
        .unwrap();
        let SourceRef::Pki {
            mount,
            role,
            field,
            issue,
        } = &r
        else {
            panic!("{r:?}");
        };
        assert_eq!((mount.as_str(), role.as_str()), ("pki/int", "web"));
        assert_eq!(field.as_deref(), Some("certificate"));
        assert_eq!(issue.common_name, "web.example.com");
        assert_eq!(issue.ttl.as_deref(), Some("72h"));
        assert_eq!(issue.private_key_format.as_deref(), Some("pkcs8"));
        assert_eq!(r.kind(), SourceKind::Vault);
        assert!(r.selects_single_value());
        // The canonical form drops format=pem and round-trips.
        assert!(!r.to_string().contains("format=pem"));
        assert_eq!(SourceRef::parse(&r.to_string()).unwrap(), r);
        // A KV path keeps ?version=N.
        assert!(matches!(
            SourceRef::parse("vault:secret/issue/x?version=2"),
            Ok(SourceRef::Vault { .. })
        ));
    }

    #[test]
    fn pki_refs_outside_the_allowlist_are_refused_with_reasons() {
        for (bad, want) in [
            (
                "vault:pki/issue/web?common_name=a&other_sans=x",
                "not an allowed PKI parameter",
            ),
            (
                "vault:pki/issue/web?common_name=a&not_after=x",
                "common_name, alt_names",
            ),
            (
                "vault:pki/issue/web?common_name=a&format=der",
                "always asks for pem",
            ),
            ("vault:pki/issue/web?alt_names=a", "needs ?common_name"),
            (
                "vault:pki/issue/web?common_name=a&common_name=b",
                "given twice",
            ),
            ("vault:pki/issue/web?common_name=a&ttl", "has no value"),
            ("vault:pki/issue/web?common_name=a&ttl=1d", "ttl must be"),
            ("vault:pki/issue/web?common_name=a&ttl=0", "ttl must be"),
            (
                "vault:pki/issue/web?common_name=a&ip_sans=1.2.3",
                "not an IP address",
            ),
            (
                "vault:pki/issue/web?common_name=a&uri_sans=nope",
                "not a URI",
            ),
            (
                "vault:pki/issue/web?common_name=a b",
                "common_name contains",
            ),
            (
                "vault:pki/issue/web?common_name=a&alt_names=x,,y",
                "empty entry",
            ),
            (
                "vault:pki/issue/web?common_name=a&private_key_format=pkcs1",
                "der or pkcs8",
            ),
            (
                "vault:pki/issue/web?common_name=a&exclude_cn_from_sans=yes",
                "true or false",
            ),
            (
                "vault:pki/issue/web#password?common_name=a",
                "not a field of an issued certificate",
            ),
            ("vault:pki/sign/web?common_name=a", "<mount>/issue/<role>"),
            ("vault:issue/web?common_name=a", "<mount>/issue/<role>"),
            ("vault:secret/app?common_name=a", "<mount>/issue/<role>"),
            ("vault:pki/../issue/web?common_name=a", "'..'"),
        ] {
            let e = SourceRef::parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn unknown_scheme() {
        let e = SourceRef::parse("http://evil/x").unwrap_err();
        assert!(e.contains("unknown source"), "{e}");
    }
}
