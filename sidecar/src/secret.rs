//! Secret value types used everywhere in the sidecar. A value lives in a [`SecretBytes`] (a
//! `Zeroizing<Vec<u8>>` built from an exact-capacity buffer, so no reallocation leaves an unwiped
//! copy) from the moment it is parsed until the file is written; a multi-field secret (Vault KV
//! data, an AWS JSON secret) is a [`SecretFields`]. Neither type prints its contents: `Debug` shows
//! `[redacted]` (field names are not secret and are shown), and there is no `Display`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// One secret value, zeroized on drop.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps an already-zeroizing buffer without copying.
    pub fn new(buf: Zeroizing<Vec<u8>>) -> Self {
        SecretBytes(buf)
    }

    /// Copies `bytes` into a buffer of exactly that capacity.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut v = Vec::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        SecretBytes(Zeroizing::new(v))
    }

    /// Takes over a `String`'s buffer without copying; its whole capacity is wiped on drop.
    pub fn from_string(s: String) -> Self {
        SecretBytes(Zeroizing::new(s.into_bytes()))
    }

    /// Takes over a `Vec`'s buffer without copying; its whole capacity is wiped on drop.
    pub fn from_vec(v: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(v))
    }

    /// The bytes. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as UTF-8, if it is.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time comparison of the contents (lengths may differ in time).
    pub fn ct_eq(&self, other: &SecretBytes) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.as_slice().ct_eq(other.0.as_slice()))
    }

    /// Gives back the zeroizing buffer.
    pub fn into_inner(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl Clone for SecretBytes {
    fn clone(&self) -> Self {
        SecretBytes::from_slice(&self.0)
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Deserialises a JSON string (or bytes) straight into a zeroizing buffer. Other JSON values
/// (numbers, booleans, null, objects, arrays) become their compact JSON text, so a Vault KV field
/// holding a number still renders. Nested values pass through `serde_json::Value`, whose buffers
/// are not zeroized; plain strings never do.
impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretBytesVisitor)
    }
}

struct SecretBytesVisitor;

impl<'de> Visitor<'de> for SecretBytesVisitor {
    type Value = SecretBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretBytes, E> {
        Ok(SecretBytes::from_slice(v.as_bytes()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<SecretBytes, E> {
        Ok(SecretBytes::from_string(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<SecretBytes, E> {
        Ok(SecretBytes::from_slice(v))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<SecretBytes, E> {
        Ok(SecretBytes::from_vec(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<SecretBytes, E> {
        Ok(SecretBytes::from_slice(if v { b"true" } else { b"false" }))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SecretBytes, E> {
        Ok(SecretBytes::from_string(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SecretBytes, E> {
        Ok(SecretBytes::from_string(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<SecretBytes, E> {
        let text =
            serde_json::Number::from_f64(v).map_or_else(|| "null".to_string(), |n| n.to_string());
        Ok(SecretBytes::from_string(text))
    }

    fn visit_unit<E: de::Error>(self) -> Result<SecretBytes, E> {
        Ok(SecretBytes::from_slice(b"null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<SecretBytes, E> {
        self.visit_unit()
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretBytes, A::Error> {
        let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(SecretBytes::from_vec(
            serde_json::to_vec(&v).map_err(de::Error::custom)?,
        ))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<SecretBytes, A::Error> {
        let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(SecretBytes::from_vec(
            serde_json::to_vec(&v).map_err(de::Error::custom)?,
        ))
    }
}

/// The named fields of a multi-field secret, sorted by name. Field names are not secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretFields(BTreeMap<String, SecretBytes>);

impl SecretFields {
    /// An empty set.
    pub fn new() -> Self {
        SecretFields(BTreeMap::new())
    }

    /// Parses a JSON object (`{"user":"app","port":5432}`) into fields; non-string values keep
    /// their JSON text. The error says what is wrong with the shape, never a value.
    pub fn from_json_object(json: &[u8]) -> Result<SecretFields, String> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let fields = SecretFields::deserialize(&mut de)
            .map_err(|e| format!("not a JSON object of fields ({})", classify(&e)))?;
        de.end()
            .map_err(|e| format!("trailing data after the JSON object ({})", classify(&e)))?;
        Ok(fields)
    }

    /// Adds or replaces a field.
    pub fn insert(&mut self, name: impl Into<String>, value: SecretBytes) {
        self.0.insert(name.into(), value);
    }

    /// One field.
    pub fn get(&self, name: &str) -> Option<&SecretBytes> {
        self.0.get(name)
    }

    /// Removes and returns one field.
    pub fn remove(&mut self, name: &str) -> Option<SecretBytes> {
        self.0.remove(name)
    }

    /// Fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretBytes)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Field names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "[redacted]")))
            .finish()
    }
}

impl<'de> Deserialize<'de> for SecretFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, SecretBytes>::deserialize(d).map(SecretFields)
    }
}

impl FromIterator<(String, SecretBytes)> for SecretFields {
    fn from_iter<I: IntoIterator<Item = (String, SecretBytes)>>(iter: I) -> Self {
        SecretFields(iter.into_iter().collect())
    }
}

/// What a provider hands to the renderer: one value (a `#field`, an AWS string or binary secret,
/// a sealed value) or a set of fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretValue {
    /// A single value, written byte for byte by the raw format.
    Single(SecretBytes),
    /// Named fields (Vault data, a JSON secret).
    Fields(SecretFields),
}

/// A serde_json error category without its message (messages can quote input).
fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "wrong shape",
        serde_json::error::Category::Eof => "truncated",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretBytes::from_slice(b"hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let mut f = SecretFields::new();
        f.insert("password", s);
        let dbg = format!("{f:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("password"));
    }

    #[test]
    fn exact_capacity() {
        let s = SecretBytes::from_slice(b"abc");
        assert_eq!(s.into_inner().capacity(), 3);
    }

    #[test]
    fn json_object_fields() {
        let f = SecretFields::from_json_object(
            br#"{"user":"app","port":5432,"tls":true,"nested":{"a":[1,"x"]},"n":null,"esc":"a\"b\n"}"#,
        )
        .unwrap();
        assert_eq!(f.get("user").unwrap().expose(), b"app");
        assert_eq!(f.get("port").unwrap().expose(), b"5432");
        assert_eq!(f.get("tls").unwrap().expose(), b"true");
        assert_eq!(f.get("nested").unwrap().expose(), br#"{"a":[1,"x"]}"#);
        assert_eq!(f.get("n").unwrap().expose(), b"null");
        assert_eq!(f.get("esc").unwrap().expose(), b"a\"b\n");
        assert_eq!(
            f.names().collect::<Vec<_>>(),
            ["esc", "n", "nested", "port", "tls", "user"]
        );
    }

    #[test]
    fn json_errors_hide_values() {
        let e = SecretFields::from_json_object(br#"["canary-value"]"#).unwrap_err();
        assert!(!e.contains("canary"), "{e}");
        let e = SecretFields::from_json_object(br#"{"a":"canary-value"} x"#).unwrap_err();
        assert!(!e.contains("canary"), "{e}");
    }

    #[test]
    fn equality() {
        assert_eq!(
            SecretBytes::from_slice(b"a"),
            SecretBytes::from_string("a".into())
        );
        assert_ne!(
            SecretBytes::from_slice(b"a"),
            SecretBytes::from_slice(b"ab")
        );
    }
}
