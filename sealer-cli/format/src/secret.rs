//! The plaintext side: a Kubernetes Secret read from YAML or JSON (both `data`, base64, and
//! `stringData`) into zeroized buffers, and rendered back as YAML by `unseal` and `edit`. Parsing
//! keeps only what the sealed format preserves (name, namespace, labels, annotations, type,
//! immutable) and drops server-populated metadata and `managedFields`; the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation is stripped because it holds the
//! whole Secret in clear text.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use crate::format::{SecretMeta, validate_key, validate_name, validate_namespace};
use crate::yaml::{self, quote, scalar};
use crate::{Error, Result};

/// The annotation `kubectl apply` uses to keep the whole last-applied object, Secret values included.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One secret value. Zeroized on drop; its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps bytes.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        SecretValue(bytes)
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A plaintext Secret as hush sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, if the manifest had one.
    pub namespace: Option<String>,
    /// Type, labels, annotations, immutable.
    pub meta: SecretMeta,
    /// Values by key.
    pub values: BTreeMap<String, SecretValue>,
}

struct B64Value(Zeroizing<Vec<u8>>);

impl<'de> Deserialize<'de> for B64Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = B64Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<B64Value, E> {
                // Go's decoder (and so the API server) ignores line breaks in base64.
                let compact: Zeroizing<Vec<u8>>;
                let text = if s.as_bytes().contains(&b'\n') || s.as_bytes().contains(&b'\r') {
                    compact =
                        Zeroizing::new(s.bytes().filter(|b| *b != b'\n' && *b != b'\r').collect());
                    &compact[..]
                } else {
                    s.as_bytes()
                };
                let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
                base64::engine::general_purpose::STANDARD
                    .decode_vec(text, &mut out)
                    .map_err(|_| E::custom("a value under `data` is not valid base64"))?;
                Ok(B64Value(out))
            }
        }
        d.deserialize_str(V)
    }
}

struct StrValue(Zeroizing<Vec<u8>>);

impl<'de> Deserialize<'de> for StrValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StrValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<StrValue, E> {
                Ok(StrValue(Zeroizing::new(s.as_bytes().to_vec())))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSecret {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: Option<RawMeta>,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    data: Option<BTreeMap<String, B64Value>>,
    #[serde(default)]
    string_data: Option<BTreeMap<String, StrValue>>,
    #[serde(default)]
    immutable: Option<bool>,
}

/// Metadata: unknown fields (uid, resourceVersion, managedFields, ...) are ignored on purpose.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

impl Secret {
    /// Parses a Secret manifest (YAML or JSON). `what` names the input in errors.
    pub fn parse(text: &str, what: &str) -> Result<Self> {
        let raw: RawSecret = yaml::parse_manifest(
            text,
            what,
            "Secret",
            || {
                if text.contains(crate::format::LABEL) {
                    "this looks like a sealed file already: use `hush unseal`, `hush edit` or `hush rekey`"
                } else {
                    ""
                }
            },
            |raw: &RawSecret| raw.api_version == "v1" && raw.kind == "Secret",
        )?;
        let invalid = |reason: String| Error::InvalidSecret { reason };
        if raw.api_version != "v1" || raw.kind != "Secret" {
            return Err(invalid(format!(
                "expected apiVersion v1, kind Secret, found {} {}",
                raw.api_version.escape_debug(),
                raw.kind.escape_debug()
            )));
        }
        let metadata = raw.metadata.unwrap_or_default();
        let name = metadata
            .name
            .ok_or_else(|| invalid("metadata.name is missing".into()))?;
        validate_name(&name).map_err(invalid)?;
        if let Some(ns) = &metadata.namespace {
            validate_namespace(ns).map_err(invalid)?;
        }
        let mut annotations = metadata.annotations.unwrap_or_default();
        annotations.remove(LAST_APPLIED);
        let mut values = BTreeMap::new();
        for (k, v) in raw.data.unwrap_or_default() {
            validate_key(&k).map_err(invalid)?;
            values.insert(k, SecretValue(v.0));
        }
        // As in Kubernetes, stringData wins over data for the same key.
        for (k, v) in raw.string_data.unwrap_or_default() {
            validate_key(&k).map_err(invalid)?;
            values.insert(k, SecretValue(v.0));
        }
        Ok(Secret {
            name,
            namespace: metadata.namespace,
            meta: SecretMeta {
                type_: raw.type_.unwrap_or_else(|| "Opaque".to_owned()),
                labels: metadata.labels.unwrap_or_default(),
                annotations,
                immutable: raw.immutable,
            },
            values,
        })
    }

    /// Renders the Secret as YAML. With `editable`, UTF-8 values that fit a YAML literal block go
    /// under `stringData` so a person can edit them; everything else goes under `data` as base64.
    /// Either way the bytes round-trip exactly. The result is zeroized on drop.
    pub fn to_yaml(&self, editable: bool) -> Zeroizing<String> {
        // Sized up front so that growing never leaves unwiped copies of values behind, and no
        // larger: every byte of capacity is wiped again when it is freed. A key is at most 253
        // bytes and quoting at most doubles it; base64 is 4 bytes per 3; a literal block adds at
        // most 4 spaces and a newline per line, so 3 bytes per value byte bound it.
        let data_size: usize = self
            .values
            .iter()
            .map(|(k, v)| 2 * k.len() + v.expose().len().div_ceil(3) * 4 + 16)
            .sum();
        let string_size: usize = if editable {
            self.values
                .iter()
                .map(|(k, v)| 2 * k.len() + v.expose().len() * 3 + 16)
                .sum()
        } else {
            0
        };
        let mut out = Zeroizing::new(String::with_capacity(data_size + string_size + 4096));
        out.push_str("apiVersion: v1\nkind: Secret\nmetadata:\n");
        out.push_str(&format!("  name: {}\n", scalar(&self.name)));
        if let Some(ns) = &self.namespace {
            out.push_str(&format!("  namespace: {}\n", scalar(ns)));
        }
        for (field, map) in [
            ("labels", &self.meta.labels),
            ("annotations", &self.meta.annotations),
        ] {
            if !map.is_empty() {
                out.push_str(&format!("  {field}:\n"));
                for (k, v) in map {
                    out.push_str(&format!("    {}: {}\n", scalar(k), quote(v)));
                }
            }
        }
        out.push_str(&format!("type: {}\n", scalar(&self.meta.type_)));
        if let Some(i) = self.meta.immutable {
            out.push_str(&format!("immutable: {i}\n"));
        }
        let mut data = Zeroizing::new(String::with_capacity(data_size));
        let mut string_data = Zeroizing::new(String::with_capacity(string_size));
        for (k, v) in &self.values {
            let text = if editable {
                std::str::from_utf8(v.expose()).ok()
            } else {
                None
            };
            if let Some(text) = text {
                let mut entry =
                    Zeroizing::new(String::with_capacity(k.len() + 3 * text.len() + 64));
                entry.push_str(&format!("  {}: ", scalar(k)));
                if yaml::push_literal_block(&mut entry, text, 4) {
                    string_data.push_str(&entry);
                    continue;
                }
                if text.is_empty() {
                    string_data.push_str(&format!("  {}: \"\"\n", scalar(k)));
                    continue;
                }
            }
            data.push_str(&format!("  {}: \"", scalar(k)));
            base64::engine::general_purpose::STANDARD.encode_string(v.expose(), &mut data);
            data.push_str("\"\n");
        }
        if !data.is_empty() || string_data.is_empty() {
            out.push_str("data:");
            if data.is_empty() {
                out.push_str(" {}\n");
            } else {
                out.push('\n');
                out.push_str(&data);
            }
        }
        if !string_data.is_empty() {
            out.push_str("stringData:\n");
            out.push_str(&string_data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(s: &[u8]) -> SecretValue {
        SecretValue(Zeroizing::new(s.to_vec()))
    }

    #[test]
    fn data_and_string_data_merge_with_string_data_winning() {
        let s = Secret::parse(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\n  \
             annotations:\n    kubectl.kubernetes.io/last-applied-configuration: '{\"leak\":1}'\n    \
             keep: me\n  managedFields: [{manager: x}]\n  uid: abc\ndata:\n  a: aGk=\n  b: eA==\n\
             stringData:\n  b: y\n",
            "t",
        )
        .unwrap();
        assert_eq!(s.values["a"], val(b"hi"));
        assert_eq!(s.values["b"], val(b"y"));
        assert_eq!(s.meta.type_, "Opaque");
        assert_eq!(s.meta.annotations.len(), 1);
        assert_eq!(s.meta.annotations["keep"], "me");
    }

    #[test]
    fn json_input_is_accepted() {
        let s = Secret::parse(
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"},"type":"kubernetes.io/tls","data":{"tls.key":"AAEC"}}"#,
            "t",
        )
        .unwrap();
        assert_eq!(s.values["tls.key"], val(&[0, 1, 2]));
        assert_eq!(s.meta.type_, "kubernetes.io/tls");
    }

    #[test]
    fn reserved_and_invalid_keys_and_bad_base64_are_refused_without_values() {
        for doc in [
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {_hush: canary-value}\n",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {\"a/b\": canary-value}\n",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata: {a: canary-value!}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: canary-value}\n",
        ] {
            let err = Secret::parse(doc, "t").unwrap_err().to_string();
            assert!(!err.contains("canary"), "{err}");
        }
    }

    #[test]
    fn rendering_round_trips() {
        let mut values = BTreeMap::new();
        values.insert("bin".into(), val(&[0, 255, 10, 13]));
        values.insert("text".into(), val(b"line1\nline2\n"));
        values.insert("empty".into(), val(b""));
        values.insert("spaced".into(), val(b" x"));
        let s = Secret {
            name: "db".into(),
            namespace: Some("prod".into()),
            meta: SecretMeta {
                type_: "Opaque".into(),
                labels: [("app".to_owned(), "é".to_owned())].into(),
                annotations: BTreeMap::new(),
                immutable: Some(true),
            },
            values,
        };
        for editable in [false, true] {
            let back = Secret::parse(&s.to_yaml(editable), "t").unwrap();
            assert_eq!(back, s);
        }
    }
}
