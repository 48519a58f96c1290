//! The sealed format, version 1, as specified in `FORMAT.md`: the reserved `_hush` data key, the
//! one-line binding header that precedes each value inside its age ciphertext, the seal id, and the
//! MAC over the whole set. This module is pure (no I/O, no age calls) so that the specification and
//! the code can be read side by side; `seal` and `open` put it to work.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// Label put on every sealed ConfigMap, with value [`LABEL_VALUE`].
pub const LABEL: &str = "hush.dev/sealed";

/// Value of [`LABEL`] for format v1.
pub const LABEL_VALUE: &str = "v1";

/// The reserved data key that holds the metadata and the MAC. A Secret using it is refused.
pub const META_KEY: &str = "_hush";

/// Prefix of the binding header line inside each value's plaintext.
pub const HEADER_PREFIX: &str = "hush.dev/sealed:v1";

/// Size of the per-seal MAC key.
pub const MAC_KEY_LEN: usize = 32;

/// Kubernetes caps a ConfigMap at 1 MiB.
pub const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024;

/// Largest `_hush` document accepted before parsing.
pub const MAX_META_BYTES: usize = 256 * 1024;

/// Which names a sealed value is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Bound to this namespace and this name (the default).
    #[default]
    Strict,
    /// Bound to this namespace only: the ConfigMap may be renamed.
    Namespace,
}

impl Scope {
    /// The spelling used in the header, `_hush` and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::Namespace => "namespace",
        }
    }

    /// The name this scope binds: `Some(name)` for strict, `None` for namespace.
    pub fn bound_name(self, name: &str) -> Option<&str> {
        match self {
            Scope::Strict => Some(name),
            Scope::Namespace => None,
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "strict" => Ok(Scope::Strict),
            "namespace" => Ok(Scope::Namespace),
            other => Err(Error::Usage {
                message: format!("unknown scope `{other}`; use `strict` or `namespace`"),
            }),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Secret's non-secret fields, kept so that unseal gives back the original Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SecretMeta {
    /// The Secret `type` (`Opaque` when the input had none).
    #[serde(rename = "type")]
    pub type_: String,
    /// Labels of the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the Secret, without `kubectl.kubernetes.io/last-applied-configuration`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `immutable`, when the input set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// The content of the reserved `_hush` data key (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The scope the values are bound to.
    pub scope: Scope,
    /// Namespace the values are bound to (informative: the MAC uses the reader's namespace).
    pub namespace: String,
    /// Name the values are bound to, for strict scope only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sorted data keys, `_hush` excluded.
    pub keys: Vec<String>,
    /// Sorted age recipients every value is encrypted to (used by `hush rekey`).
    pub recipients: Vec<String>,
    /// The Secret's type, labels and annotations.
    pub secret: SecretMeta,
    /// The per-seal MAC key, age-encrypted to the same recipients: a binary age file as one line
    /// of standard base64.
    pub mac_key: String,
    /// base64 of HMAC-SHA256(mac key, [`mac_input`]).
    pub mac: String,
}

impl Meta {
    /// Parses a `_hush` document with its size cap. Unknown fields are refused.
    pub fn parse(text: &str, object: &str) -> Result<Self> {
        if text.len() > MAX_META_BYTES {
            return Err(Error::InvalidSealed {
                object: object.to_owned(),
                reason: format!("`{META_KEY}` is over {MAX_META_BYTES} bytes"),
            });
        }
        // Check the version first so that a newer format gets the right message.
        let probe: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::InvalidSealed {
                object: object.to_owned(),
                reason: format!(
                    "`{META_KEY}` is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        match probe.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => {
                return Err(Error::UnsupportedVersion {
                    object: object.to_owned(),
                    found: format!("v{v}"),
                    supported: VERSION,
                });
            }
            None => {
                return Err(Error::InvalidSealed {
                    object: object.to_owned(),
                    reason: format!("`{META_KEY}` has no numeric `version`"),
                });
            }
        }
        serde_json::from_value(probe).map_err(|e| {
            let text = e.to_string();
            let field = text.split('`').nth(1).unwrap_or("?").to_owned();
            Error::InvalidSealed {
                object: object.to_owned(),
                reason: format!(
                    "`{META_KEY}` has a missing, unknown or mistyped field (`{field}`)"
                ),
            }
        })
    }

    /// Serialises as pretty, ASCII-only JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let json = serde_json::to_string_pretty(self).unwrap_or_default();
        let mut out = crate::yaml::ascii_json(&json);
        out.push('\n');
        out
    }
}

/// Checks a namespace name (RFC 1123 label).
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    if hush_contract::names::check_dns1123_label(ns).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "namespace `{}` is not a valid namespace name (lowercase letters, digits and '-', at most 63)",
            ns.escape_debug()
        ))
    }
}

/// Checks an object name (RFC 1123 subdomain).
pub fn validate_name(name: &str) -> Result<(), String> {
    if hush_contract::names::check_dns1123_subdomain(name).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "name `{}` is not a valid object name (lowercase letters, digits, '-' and '.', at most 253)",
            name.escape_debug()
        ))
    }
}

/// Checks a data key: what Kubernetes accepts for Secret and ConfigMap keys, minus [`META_KEY`].
pub fn validate_key(key: &str) -> Result<(), String> {
    if hush_contract::names::check_configmap_key(key).is_err() {
        return Err(format!(
            "key `{}` is not a valid Secret key ([-._a-zA-Z0-9]+, not `.` or `..`)",
            key.escape_debug()
        ));
    }
    if key == META_KEY {
        return Err(format!(
            "key `{META_KEY}` is reserved by hush for its metadata; rename that key"
        ));
    }
    Ok(())
}

/// The seal id: the first 16 bytes of SHA-256("hush.dev/sealed v1 seal-id" || mac key), as hex.
/// Each value's header carries it, so values from another seal (with another MAC key) are refused.
pub fn seal_id(mac_key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"hush.dev/sealed v1 seal-id");
    h.update(mac_key);
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The binding header line (with its trailing `\n`) that precedes a value's bytes.
pub fn header_line(scope: Scope, namespace: &str, name: &str, key: &str, seal: &str) -> String {
    format!(
        "{HEADER_PREFIX} scope={} namespace={namespace} name={} key={key} seal={seal}\n",
        scope.as_str(),
        scope.bound_name(name).unwrap_or("*"),
    )
}

/// The stored text of a ciphertext as it enters the MAC: trailing whitespace removed, so that YAML
/// chomping (`|` vs `|-`) does not matter.
pub fn ciphertext_for_mac(stored: &str) -> &str {
    stored.trim_end()
}

fn push_lp(msg: &mut Vec<u8>, field: &[u8]) {
    msg.extend_from_slice(&(field.len() as u64).to_be_bytes());
    msg.extend_from_slice(field);
}

/// Builds the MAC input (FORMAT.md, "MAC"): length-prefixed fields, so no two different sets give
/// the same bytes. `ciphertexts` is every data key except `_hush`, with its stored value.
pub fn mac_input(
    scope: Scope,
    namespace: &str,
    name: &str,
    secret: &SecretMeta,
    recipients: &[String],
    mac_key_ciphertext: &str,
    ciphertexts: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut msg = Vec::new();
    push_lp(&mut msg, b"hush.dev/sealed v1 mac");
    push_lp(&mut msg, scope.as_str().as_bytes());
    push_lp(&mut msg, namespace.as_bytes());
    push_lp(&mut msg, scope.bound_name(name).unwrap_or("").as_bytes());
    push_lp(&mut msg, secret.type_.as_bytes());
    for map in [&secret.labels, &secret.annotations] {
        msg.extend_from_slice(&(map.len() as u64).to_be_bytes());
        for (k, v) in map {
            push_lp(&mut msg, k.as_bytes());
            push_lp(&mut msg, v.as_bytes());
        }
    }
    let immutable = match secret.immutable {
        None => "",
        Some(true) => "true",
        Some(false) => "false",
    };
    push_lp(&mut msg, immutable.as_bytes());
    msg.extend_from_slice(&(recipients.len() as u64).to_be_bytes());
    for r in recipients {
        push_lp(&mut msg, r.as_bytes());
    }
    push_lp(
        &mut msg,
        &Sha256::digest(ciphertext_for_mac(mac_key_ciphertext).as_bytes()),
    );
    msg.extend_from_slice(&(ciphertexts.len() as u64).to_be_bytes());
    for (k, v) in ciphertexts {
        push_lp(&mut msg, k.as_bytes());
        push_lp(&mut msg, &Sha256::digest(ciphertext_for_mac(v).as_bytes()));
    }
    msg
}

/// HMAC-SHA256 over `input` with `key`.
pub fn mac(key: &[u8], input: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(input);
    m.finalize().into_bytes().into()
}

/// Verifies `tag` against HMAC-SHA256(key, input) in constant time.
pub fn verify_mac(key: &[u8], input: &[u8], tag: &[u8]) -> bool {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(input);
    m.verify_slice(tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kubernetes_rules_and_reserve_hush() {
        for ok in ["a", "tls.crt", "A_b-c.d", ".env", "_hushx"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "..x", "a/b", "a b", "é", "_hush"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(validate_namespace("prod-1").is_ok());
        assert!(validate_namespace("Prod").is_err());
        assert!(validate_namespace("a.b").is_err());
        assert!(validate_name("db.creds-1").is_ok());
        assert!(validate_name("db..x").is_err());
        assert!(validate_name("x y").is_err());
    }

    #[test]
    fn header_binds_name_only_in_strict_scope() {
        assert_eq!(
            header_line(Scope::Strict, "prod", "db", "pw", "ab"),
            "hush.dev/sealed:v1 scope=strict namespace=prod name=db key=pw seal=ab\n"
        );
        assert_eq!(
            header_line(Scope::Namespace, "prod", "db", "pw", "ab"),
            "hush.dev/sealed:v1 scope=namespace namespace=prod name=* key=pw seal=ab\n"
        );
    }

    #[test]
    fn mac_input_changes_with_every_bound_field() {
        let meta = SecretMeta {
            type_: "Opaque".into(),
            ..Default::default()
        };
        let mut cts = BTreeMap::new();
        cts.insert("a".to_owned(), "ct-a".to_owned());
        cts.insert("b".to_owned(), "ct-b".to_owned());
        let r = vec!["age1x".to_owned()];
        let base = mac_input(Scope::Strict, "ns", "n", &meta, &r, "mk", &cts);
        let mut swapped = cts.clone();
        swapped.insert("a".into(), "ct-b".into());
        swapped.insert("b".into(), "ct-a".into());
        let mut fewer = cts.clone();
        fewer.remove("b");
        let mut t = meta.clone();
        t.type_ = "kubernetes.io/tls".into();
        let variants = [
            mac_input(Scope::Namespace, "ns", "n", &meta, &r, "mk", &cts),
            mac_input(Scope::Strict, "ns2", "n", &meta, &r, "mk", &cts),
            mac_input(Scope::Strict, "ns", "n2", &meta, &r, "mk", &cts),
            mac_input(Scope::Strict, "ns", "n", &t, &r, "mk", &cts),
            mac_input(Scope::Strict, "ns", "n", &meta, &[], "mk", &cts),
            mac_input(Scope::Strict, "ns", "n", &meta, &r, "mk2", &cts),
            mac_input(Scope::Strict, "ns", "n", &meta, &r, "mk", &swapped),
            mac_input(Scope::Strict, "ns", "n", &meta, &r, "mk", &fewer),
        ];
        for v in variants {
            assert_ne!(v, base);
        }
        // Namespace scope ignores the name, and trailing whitespace of a ciphertext is not bound.
        let mut ws = cts.clone();
        ws.insert("a".into(), "ct-a\n".into());
        assert_eq!(
            mac_input(Scope::Namespace, "ns", "n", &meta, &r, "mk", &cts),
            mac_input(Scope::Namespace, "ns", "other", &meta, &r, "mk\n", &ws)
        );
        let tag = mac(b"k", &base);
        assert!(verify_mac(b"k", &base, &tag));
        assert!(!verify_mac(b"k2", &base, &tag));
    }
}
