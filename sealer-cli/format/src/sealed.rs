//! Sealing and opening: turns a [`Secret`] into a sealed ConfigMap (format v1, see `FORMAT.md`) and
//! back, and checks a sealed set. [`open_value`] is the entry point of the sidecar's `sealed:`
//! source: it checks the structure and the binding to the caller's namespace and name, verifies the
//! MAC over the whole set, then decrypts one value through age's streaming decryptor into a
//! pre-sized zeroized buffer and checks the value's own binding header.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::format::{
    self, HEADER_PREFIX, LABEL, LABEL_VALUE, MAC_KEY_LEN, MAX_CONFIGMAP_BYTES, META_KEY, Meta,
    Scope, SecretMeta, VERSION,
};
use crate::keys::parse_recipient;
use crate::parallel;
use crate::secret::{Secret, SecretValue};
use crate::yaml::{self, quote, scalar};
use crate::{Error, Result};

/// Largest single stored value we try to decrypt: a ConfigMap is at most 1 MiB.
const MAX_VALUE_BYTES: usize = 2 * MAX_CONFIGMAP_BYTES;

/// Start of every armored age ciphertext.
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";

/// A sealed ConfigMap: the manifest `hush seal` writes and GitOps applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedConfigMap {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels` (includes `hush.dev/sealed`).
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations` (kept as found, not used by hush).
    pub annotations: BTreeMap<String, String>,
    /// `data`: `_hush` plus one armored age ciphertext per key.
    pub data: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfigMap {
    api_version: String,
    kind: String,
    metadata: RawMeta,
    #[serde(default)]
    data: Option<BTreeMap<String, String>>,
    #[serde(default)]
    binary_data: Option<BTreeMap<String, String>>,
    #[serde(default)]
    immutable: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Describes an object for messages: `ConfigMap prod/db`.
pub fn object_name(namespace: &str, name: &str) -> String {
    format!("sealed ConfigMap {namespace}/{name}")
}

impl SealedConfigMap {
    /// Parses a sealed ConfigMap manifest and checks it is one (label, kind, no binaryData). The
    /// cryptographic checks happen in [`check_structure`] and [`open_set`].
    pub fn parse(text: &str, what: &str) -> Result<Self> {
        let raw: RawConfigMap = yaml::parse_manifest(
            text,
            what,
            "ConfigMap",
            || "hush reads sealed ConfigMaps written by `hush seal`",
            |raw: &RawConfigMap| raw.api_version == "v1" && raw.kind == "ConfigMap",
        )?;
        let ns = raw.metadata.namespace.clone().unwrap_or_default();
        let object = object_name(&ns, &raw.metadata.name);
        let invalid = |reason: String| Error::InvalidSealed {
            object: object.clone(),
            reason,
        };
        if raw.api_version != "v1" || raw.kind != "ConfigMap" {
            return Err(Error::InvalidSealed {
                object: what.to_owned(),
                reason: format!(
                    "expected apiVersion v1, kind ConfigMap, found {} {}",
                    raw.api_version.escape_debug(),
                    raw.kind.escape_debug()
                ),
            });
        }
        let _ = raw.immutable;
        let labels = raw.metadata.labels.unwrap_or_default();
        match labels.get(LABEL).map(String::as_str) {
            Some(LABEL_VALUE) => {}
            Some(other) => {
                return Err(Error::UnsupportedVersion {
                    object,
                    found: other.escape_debug().to_string(),
                    supported: VERSION,
                });
            }
            None => return Err(invalid(format!("it has no `{LABEL}` label"))),
        }
        if raw.metadata.namespace.is_none() {
            return Err(invalid("metadata.namespace is missing".into()));
        }
        format::validate_namespace(&ns).map_err(&invalid)?;
        format::validate_name(&raw.metadata.name).map_err(&invalid)?;
        if raw.binary_data.is_some_and(|b| !b.is_empty()) {
            return Err(invalid("it has binaryData, which hush never writes".into()));
        }
        Ok(SealedConfigMap {
            namespace: ns,
            name: raw.metadata.name,
            labels,
            annotations: {
                // Never carried into a re-sealed file: it holds a stale copy of the object.
                let mut a = raw.metadata.annotations.unwrap_or_default();
                a.remove(crate::secret::LAST_APPLIED);
                a
            },
            data: raw.data.unwrap_or_default(),
        })
    }

    /// `sealed ConfigMap ns/name`, for messages.
    pub fn object(&self) -> String {
        object_name(&self.namespace, &self.name)
    }

    /// Renders the manifest. Deterministic for a given content.
    pub fn to_yaml(&self) -> String {
        // A literal block indents each line of at most 64 characters by 4 spaces.
        let mut out = String::with_capacity(
            self.data
                .iter()
                .map(|(k, v)| 2 * k.len() + v.len() + v.len() / 16 + 64)
                .sum::<usize>()
                + 512,
        );
        out.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata:\n");
        out.push_str(&format!("  name: {}\n", scalar(&self.name)));
        out.push_str(&format!("  namespace: {}\n", scalar(&self.namespace)));
        for (field, map) in [("labels", &self.labels), ("annotations", &self.annotations)] {
            if !map.is_empty() {
                out.push_str(&format!("  {field}:\n"));
                for (k, v) in map {
                    out.push_str(&format!("    {}: {}\n", scalar(k), quote(v)));
                }
            }
        }
        out.push_str("data:\n");
        for (k, v) in &self.data {
            out.push_str(&format!("  {}: ", scalar(k)));
            if !yaml::push_literal_block(&mut out, v, 4) {
                out.push_str(&quote(v));
                out.push('\n');
            }
        }
        out
    }

    /// Renders the manifest, failing if it is over the 1 MiB ConfigMap limit.
    pub fn to_yaml_checked(&self) -> Result<String> {
        let text = self.to_yaml();
        if text.len() > MAX_CONFIGMAP_BYTES {
            return Err(Error::OutputTooLarge {
                size: text.len(),
                limit: MAX_CONFIGMAP_BYTES,
            });
        }
        Ok(text)
    }
}

/// Normalises a recipient list: each parsed, sorted, deduplicated. At least one is required.
pub fn normalise_recipients(recipients: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(recipients.len());
    for r in recipients {
        out.push(parse_recipient(r)?.to_string());
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(Error::NoRecipients {
            hint: "pass -r age1... or -R FILE, or add a creation rule to .hush.yaml".into(),
        });
    }
    Ok(out)
}

/// Encrypts `data` to `recipients` as a binary age file, returned as one line of base64 (the form
/// of `mac_key` in `_hush`).
fn encrypt_base64(recipients: &[age::x25519::Recipient], data: &[u8]) -> Result<String> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| Error::Encrypt(std::io::Error::other(e.to_string())))?;
    let mut out = Vec::with_capacity(data.len() + 256 * recipients.len());
    let mut w = encryptor.wrap_output(&mut out).map_err(Error::Encrypt)?;
    w.write_all(data).map_err(Error::Encrypt)?;
    w.finish().map_err(Error::Encrypt)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// Decrypts a one-line base64 binary age file (`mac_key`), like [`decrypt_armored`].
fn decrypt_base64(text: &str, identities: &[crate::keys::Identity]) -> Option<Zeroizing<Vec<u8>>> {
    if text.len() > format::MAX_META_BYTES {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    decrypt_reader(&bytes[..], bytes.len(), identities)
}

/// Encrypts the concatenation of `parts` to `recipients`, ASCII-armored.
fn encrypt_armored(recipients: &[age::x25519::Recipient], parts: &[&[u8]]) -> Result<String> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| Error::Encrypt(std::io::Error::other(e.to_string())))?;
    // The armored size, so the buffer never grows (a grown buffer is copied and the old one
    // wiped): the binary file is the plaintext, 16 bytes per 64 KiB chunk and a header of about
    // 200 bytes per recipient; armor writes 48 of its bytes per 65-byte line, plus two markers.
    let size: usize = parts.iter().map(|p| p.len()).sum();
    let binary = size + (size / 65536 + 1) * 16 + 128 + 256 * recipients.len();
    let mut out = Vec::with_capacity(binary.div_ceil(48) * 65 + 128);
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(Error::Encrypt)?;
    let mut w = encryptor.wrap_output(armor).map_err(Error::Encrypt)?;
    for p in parts {
        w.write_all(p).map_err(Error::Encrypt)?;
    }
    w.finish()
        .and_then(|a| a.finish())
        .map_err(Error::Encrypt)?;
    String::from_utf8(out).map_err(|_| Error::Encrypt(std::io::Error::other("armor is ASCII")))
}

/// Decrypts an armored age ciphertext through the streaming decryptor into a zeroized buffer sized
/// up front (the plaintext is never longer than the armored text). `None` on any failure: callers
/// turn it into a coarse [`Error::Decrypt`].
fn decrypt_armored(text: &str, identities: &[crate::keys::Identity]) -> Option<Zeroizing<Vec<u8>>> {
    if text.len() > MAX_VALUE_BYTES || !text.trim_start().starts_with(ARMOR_BEGIN) {
        return None;
    }
    let reader = age::armor::ArmoredReader::new(text.as_bytes());
    decrypt_reader(reader, text.len(), identities)
}

/// Streams a decryption into a zeroized buffer of `cap` bytes (an upper bound of the plaintext).
fn decrypt_reader<R: std::io::BufRead>(
    reader: R,
    cap: usize,
    identities: &[crate::keys::Identity],
) -> Option<Zeroizing<Vec<u8>>> {
    let decryptor = age::Decryptor::new_buffered(reader).ok()?;
    let mut stream = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .ok()?;
    let mut buf = Zeroizing::new(vec![0u8; cap]);
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            let mut probe = Zeroizing::new([0u8; 1]);
            match stream.read(&mut probe[..]) {
                Ok(0) => break,
                _ => return None,
            }
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(filled);
    Some(buf)
}

/// The per-seal secret state: the MAC key and its ciphertext. Kept across `hush edit` so unchanged
/// values keep their ciphertexts; replaced by `rekey` and `rotate`.
pub struct SealState {
    mac_key: Zeroizing<[u8; MAC_KEY_LEN]>,
    mac_key_ciphertext: String,
    /// `format::seal_id(mac_key)`, which every value's header carries: computed once per seal.
    id: String,
}

impl SealState {
    fn fresh(recipients: &[age::x25519::Recipient]) -> Result<Self> {
        let mut mac_key = Zeroizing::new([0u8; MAC_KEY_LEN]);
        getrandom::getrandom(&mut mac_key[..])
            .map_err(|e| Error::Encrypt(std::io::Error::other(e.to_string())))?;
        let mac_key_ciphertext = encrypt_base64(recipients, &mac_key[..])?;
        Ok(SealState::new(mac_key, mac_key_ciphertext))
    }

    fn new(mac_key: Zeroizing<[u8; MAC_KEY_LEN]>, mac_key_ciphertext: String) -> Self {
        let id = format::seal_id(&mac_key[..]);
        SealState {
            mac_key,
            mac_key_ciphertext,
            id,
        }
    }
}

/// Everything needed to write one sealed object.
struct Plan<'a> {
    namespace: &'a str,
    name: &'a str,
    scope: Scope,
    secret: SecretMeta,
    labels: BTreeMap<String, String>,
    recipients: Vec<String>,
}

impl Plan<'_> {
    fn header(&self, key: &str, state: &SealState) -> String {
        format::header_line(self.scope, self.namespace, self.name, key, &state.id)
    }

    fn encrypt_value(
        &self,
        key: &str,
        value: &[u8],
        state: &SealState,
        recipients: &[age::x25519::Recipient],
    ) -> Result<String> {
        let header = self.header(key, state);
        encrypt_armored(recipients, &[header.as_bytes(), value])
    }

    /// Computes the MAC and assembles the ConfigMap; fails over the size limit.
    fn finish(
        self,
        state: &SealState,
        ciphertexts: BTreeMap<String, String>,
    ) -> Result<SealedConfigMap> {
        let cm = self.assemble(state, ciphertexts);
        cm.to_yaml_checked()?;
        Ok(cm)
    }

    /// Computes the MAC and assembles the ConfigMap.
    fn assemble(self, state: &SealState, ciphertexts: BTreeMap<String, String>) -> SealedConfigMap {
        let input = format::mac_input(
            self.scope,
            self.namespace,
            self.name,
            &self.secret,
            &self.recipients,
            &state.mac_key_ciphertext,
            &ciphertexts,
        );
        let tag = format::mac(&state.mac_key[..], &input);
        let meta = Meta {
            version: VERSION,
            scope: self.scope,
            namespace: self.namespace.to_owned(),
            name: self.scope.bound_name(self.name).map(str::to_owned),
            keys: ciphertexts.keys().cloned().collect(),
            recipients: self.recipients,
            secret: self.secret,
            mac_key: state.mac_key_ciphertext.clone(),
            mac: base64::engine::general_purpose::STANDARD.encode(tag),
        };
        let mut data = ciphertexts;
        data.insert(META_KEY.to_owned(), meta.to_json());
        let mut labels = self.labels;
        labels.insert(LABEL.to_owned(), LABEL_VALUE.to_owned());
        SealedConfigMap {
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            labels,
            annotations: BTreeMap::new(),
            data,
        }
    }
}

/// Resolves the namespace: the Secret's own, or `fallback`; they must agree when both are given.
pub fn resolve_namespace(secret: &Secret, fallback: Option<&str>) -> Result<String> {
    match (secret.namespace.as_deref(), fallback) {
        (Some(a), Some(b)) if a != b => Err(Error::Usage {
            message: format!(
                "the Secret says namespace {a} but --namespace says {b}; remove one of them"
            ),
        }),
        (Some(a), _) => Ok(a.to_owned()),
        (None, Some(b)) => {
            format::validate_namespace(b).map_err(|reason| Error::Usage { message: reason })?;
            Ok(b.to_owned())
        }
        (None, None) => Err(Error::Usage {
            message: "the Secret has no metadata.namespace; add one or pass --namespace NS".into(),
        }),
    }
}

/// Seals `secret` into namespace `namespace` for `recipients` with a fresh MAC key.
pub fn seal(
    secret: &Secret,
    namespace: &str,
    scope: Scope,
    recipients: &[String],
) -> Result<SealedConfigMap> {
    let cm = seal_without_size_limit(secret, namespace, scope, recipients)?;
    cm.to_yaml_checked()?;
    Ok(cm)
}

/// Like [`seal`] but without the 1 MiB check: for benchmarks and for sealed files kept outside
/// Kubernetes. The API server refuses an oversized result.
pub fn seal_without_size_limit(
    secret: &Secret,
    namespace: &str,
    scope: Scope,
    recipients: &[String],
) -> Result<SealedConfigMap> {
    let recipients = normalise_recipients(recipients)?;
    let parsed: Vec<age::x25519::Recipient> = recipients
        .iter()
        .map(|r| parse_recipient(r))
        .collect::<Result<_>>()?;
    format::validate_namespace(namespace).map_err(|reason| Error::InvalidSecret { reason })?;
    let state = SealState::fresh(&parsed)?;
    let mut labels = secret.meta.labels.clone();
    labels.remove(LABEL);
    let plan = Plan {
        namespace,
        name: &secret.name,
        scope,
        secret: secret.meta.clone(),
        labels,
        recipients,
    };
    let values: Vec<(&String, &SecretValue)> = secret.values.iter().collect();
    for (k, _) in &values {
        format::validate_key(k).map_err(|reason| Error::InvalidSecret { reason })?;
    }
    let sealed = parallel::try_map(&values, |(k, v)| {
        plan.encrypt_value(k, v.expose(), &state, &parsed)
    })?;
    let ciphertexts = values
        .iter()
        .map(|(k, _)| (*k).clone())
        .zip(sealed)
        .collect();
    Ok(plan.assemble(&state, ciphertexts))
}

/// Checks everything that can be checked without an identity: `_hush` parses, has our version,
/// names this namespace (and name, in strict scope), lists exactly the data keys, and every value
/// looks like an armored age file. `key` names the key the caller wants, for binding errors.
pub fn check_structure(
    data: &BTreeMap<String, String>,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Meta> {
    let object = object_name(namespace, name);
    let invalid = |reason: String| Error::InvalidSealed {
        object: object.clone(),
        reason,
    };
    let meta_text = data
        .get(META_KEY)
        .ok_or_else(|| invalid(format!("it has no `{META_KEY}` key")))?;
    let meta = Meta::parse(meta_text, &object)?;
    let bound = |reason: String| Error::Binding {
        object: object.clone(),
        key: key.to_owned(),
        reason,
    };
    if meta.namespace != namespace {
        return Err(bound(format!(
            "it was sealed for namespace {}",
            meta.namespace.escape_debug()
        )));
    }
    match (meta.scope, meta.name.as_deref()) {
        (Scope::Strict, Some(n)) if n == name => {}
        (Scope::Strict, Some(n)) => {
            return Err(bound(format!(
                "it was sealed for {}/{} (strict scope)",
                meta.namespace,
                n.escape_debug()
            )));
        }
        (Scope::Strict, None) => return Err(invalid("strict scope but no `name`".into())),
        (Scope::Namespace, None) => {}
        (Scope::Namespace, Some(_)) => {
            return Err(invalid("namespace scope must not record a `name`".into()));
        }
    }
    let actual: Vec<&String> = data.keys().filter(|k| *k != META_KEY).collect();
    if actual.len() != meta.keys.len() || actual.iter().zip(&meta.keys).any(|(a, b)| *a != b) {
        let added: Vec<&str> = actual
            .iter()
            .filter(|k| !meta.keys.contains(k))
            .map(|k| k.as_str())
            .collect();
        let missing: Vec<&str> = meta
            .keys
            .iter()
            .filter(|k| !actual.contains(k))
            .map(String::as_str)
            .collect();
        return Err(Error::Integrity {
            object: format!(
                "{object} (unexpected keys: [{}]; missing keys: [{}])",
                added.join(", "),
                missing.join(", ")
            ),
        });
    }
    for (k, v) in data {
        if k == META_KEY {
            continue;
        }
        format::validate_key(k).map_err(&invalid)?;
        if !v.trim_start().starts_with(ARMOR_BEGIN) {
            return Err(invalid(format!(
                "the value of key `{k}` is not an armored age ciphertext"
            )));
        }
    }
    if meta.recipients.is_empty() {
        return Err(invalid("it lists no recipients".into()));
    }
    for r in &meta.recipients {
        parse_recipient(r)?;
    }
    let tag = base64::engine::general_purpose::STANDARD
        .decode(&meta.mac)
        .map_err(|_| invalid("its MAC is not base64".into()))?;
    if tag.len() != 32 {
        return Err(invalid("its MAC is not 32 bytes".into()));
    }
    if base64::engine::general_purpose::STANDARD
        .decode(meta.mac_key.trim())
        .is_err()
    {
        return Err(invalid("its MAC key is not base64".into()));
    }
    Ok(meta)
}

/// Parses the age header of every ciphertext (no identity needed): catches truncation or damage
/// early, for `hush verify` without `-i`.
pub fn check_ciphertext_headers(data: &BTreeMap<String, String>, object: &str) -> Result<()> {
    for (k, v) in data {
        let ok = if k == META_KEY {
            let mac_key = Meta::parse(v, object)?.mac_key;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(mac_key.trim())
                .unwrap_or_default();
            age::Decryptor::new_buffered(&bytes[..]).is_ok()
        } else {
            age::Decryptor::new_buffered(age::armor::ArmoredReader::new(v.as_bytes())).is_ok()
        };
        if !ok {
            return Err(Error::InvalidSealed {
                object: object.to_owned(),
                reason: format!("the age header of key `{k}` is damaged or truncated"),
            });
        }
    }
    Ok(())
}

/// A sealed set whose structure, binding and MAC have been checked; values can now be decrypted.
pub struct Opened<'a> {
    data: &'a BTreeMap<String, String>,
    /// The checked metadata.
    pub meta: Meta,
    namespace: String,
    name: String,
    state: SealState,
}

/// Checks structure and binding, decrypts the MAC key with `identities` and verifies the MAC over
/// the whole set.
pub fn open_set<'a>(
    data: &'a BTreeMap<String, String>,
    namespace: &str,
    name: &str,
    key_for_errors: &str,
    identities: &[crate::keys::Identity],
) -> Result<Opened<'a>> {
    let meta = check_structure(data, namespace, name, key_for_errors)?;
    let object = object_name(namespace, name);
    let key_bytes = decrypt_base64(&meta.mac_key, identities).ok_or_else(|| Error::Decrypt {
        object: object.clone(),
        what: "the MAC key".into(),
    })?;
    if key_bytes.len() != MAC_KEY_LEN {
        return Err(Error::Decrypt {
            object,
            what: "the MAC key".into(),
        });
    }
    let mut mac_key = Zeroizing::new([0u8; MAC_KEY_LEN]);
    mac_key.copy_from_slice(&key_bytes);
    let ciphertexts: BTreeMap<String, String> = data
        .iter()
        .filter(|(k, _)| *k != META_KEY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let input = format::mac_input(
        meta.scope,
        namespace,
        name,
        &meta.secret,
        &meta.recipients,
        &meta.mac_key,
        &ciphertexts,
    );
    let tag = base64::engine::general_purpose::STANDARD
        .decode(&meta.mac)
        .unwrap_or_default();
    if !format::verify_mac(&mac_key[..], &input, &tag) {
        return Err(Error::Integrity { object });
    }
    let mac_key_ciphertext = meta.mac_key.clone();
    Ok(Opened {
        data,
        meta,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        state: SealState::new(mac_key, mac_key_ciphertext),
    })
}

impl Opened<'_> {
    fn object(&self) -> String {
        object_name(&self.namespace, &self.name)
    }

    /// Decrypts the value of `key` and checks its binding header; returns the value bytes only.
    pub fn value(
        &self,
        key: &str,
        identities: &[crate::keys::Identity],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let object = self.object();
        if key == META_KEY {
            return Err(Error::Usage {
                message: format!("`{META_KEY}` is hush's metadata, not a value"),
            });
        }
        let stored = self.data.get(key).ok_or_else(|| Error::MissingKey {
            object: object.clone(),
            key: key.to_owned(),
            available: self.meta.keys.join(", "),
        })?;
        let mut buf = decrypt_armored(stored, identities).ok_or_else(|| Error::Decrypt {
            object: object.clone(),
            what: format!("key `{key}`"),
        })?;
        let expected = format::header_line(
            self.meta.scope,
            &self.namespace,
            &self.name,
            key,
            &self.state.id,
        );
        if !buf.starts_with(expected.as_bytes()) {
            let reason = if buf.starts_with(HEADER_PREFIX.as_bytes()) {
                format!(
                    "its sealed header names another scope, namespace, name, key or seal (expected \
                     scope={} namespace={} name={} key={key} of this seal)",
                    self.meta.scope,
                    self.namespace,
                    self.meta.scope.bound_name(&self.name).unwrap_or("*")
                )
            } else {
                "it has no hush header (it was encrypted outside hush)".to_owned()
            };
            return Err(Error::Binding {
                object,
                key: key.to_owned(),
                reason,
            });
        }
        let header_len = expected.len();
        let len = buf.len();
        buf.copy_within(header_len.., 0);
        buf.truncate(len - header_len);
        Ok(buf)
    }

    /// Decrypts every value into a [`Secret`] named after this object.
    pub fn unseal(&self, identities: &[crate::keys::Identity]) -> Result<Secret> {
        let opened = parallel::try_map(&self.meta.keys, |key| self.value(key, identities))?;
        let values = self
            .meta
            .keys
            .iter()
            .cloned()
            .zip(opened.into_iter().map(SecretValue::new))
            .collect();
        Ok(Secret {
            name: self.name.clone(),
            namespace: Some(self.namespace.clone()),
            meta: self.meta.secret.clone(),
            values,
        })
    }

    /// Re-seals `secret` (same namespace, name, scope and recipients) reusing this seal's MAC key:
    /// values equal to the current ones keep their ciphertext, so a git diff shows only what
    /// changed. Used by `hush edit`.
    pub fn reseal_changed(
        &self,
        old: &Secret,
        secret: &Secret,
        labels: &BTreeMap<String, String>,
    ) -> Result<SealedConfigMap> {
        if secret.name != self.name || secret.namespace.as_deref() != Some(&self.namespace) {
            return Err(Error::Editor {
                reason: "the name and namespace cannot change in `hush edit`; use `hush unseal` \
                         and `hush seal` to copy a Secret elsewhere"
                    .into(),
            });
        }
        let parsed: Vec<age::x25519::Recipient> = self
            .meta
            .recipients
            .iter()
            .map(|r| parse_recipient(r))
            .collect::<Result<_>>()?;
        let plan = Plan {
            namespace: &self.namespace,
            name: &self.name,
            scope: self.meta.scope,
            secret: secret.meta.clone(),
            labels: labels.clone(),
            recipients: self.meta.recipients.clone(),
        };
        let values: Vec<(&String, &SecretValue)> = secret.values.iter().collect();
        for (k, _) in &values {
            format::validate_key(k).map_err(|reason| Error::InvalidSecret { reason })?;
        }
        let sealed = parallel::try_map(&values, |(k, v)| {
            let unchanged = old.values.get(*k).is_some_and(|o| o == *v);
            match (unchanged, self.data.get(*k)) {
                (true, Some(ct)) => Ok(ct.clone()),
                _ => plan.encrypt_value(k, v.expose(), &self.state, &parsed),
            }
        })?;
        let ciphertexts = values
            .iter()
            .map(|(k, _)| (*k).clone())
            .zip(sealed)
            .collect();
        plan.finish(&self.state, ciphertexts)
    }
}

/// The sidecar's entry point. Verifies the MAC over the whole set `data` (the ConfigMap's data as
/// mounted) for `namespace`/`name`, then decrypts the value of `key` through age's streaming
/// decryptor into a pre-sized zeroized buffer and checks its binding header.
///
/// Errors name the object and key, never the value; decryption failures are coarse.
pub fn open_value(
    data: &BTreeMap<String, String>,
    namespace: &str,
    name: &str,
    key: &str,
    identity: &crate::keys::Identity,
) -> Result<Zeroizing<Vec<u8>>> {
    let ids = std::slice::from_ref(identity);
    open_set(data, namespace, name, key, ids)?.value(key, ids)
}

/// Unseals a whole sealed ConfigMap into its Secret.
pub fn unseal(cm: &SealedConfigMap, identities: &[crate::keys::Identity]) -> Result<Secret> {
    open_set(&cm.data, &cm.namespace, &cm.name, META_KEY, identities)?.unseal(identities)
}

/// Re-seals `cm` for `recipients` with a fresh MAC key, keeping its values, scope, labels and
/// metadata. Used by `hush rekey` and `hush rotate`.
pub fn reseal(
    cm: &SealedConfigMap,
    identities: &[crate::keys::Identity],
    recipients: &[String],
) -> Result<SealedConfigMap> {
    let opened = open_set(&cm.data, &cm.namespace, &cm.name, META_KEY, identities)?;
    let secret = opened.unseal(identities)?;
    let mut out = seal(&secret, &cm.namespace, opened.meta.scope, recipients)?;
    out.labels = cm.labels.clone();
    out.annotations = cm.annotations.clone();
    out.to_yaml_checked()?;
    Ok(out)
}
