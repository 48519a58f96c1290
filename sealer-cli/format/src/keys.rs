//! age X25519 identities and recipients: parsing identity files (the same text `age-keygen` writes
//! and the `hush-identity` Secret holds), parsing recipients and recipients files, and generating a
//! new identity with its `hush-identity` Secret manifest. Identity text is handled in zeroized
//! buffers and never appears in an error.

use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::yaml::quote;
use crate::{Error, Result};

/// The per-namespace Secret holding the identity, and its key: part of the contract with the
/// injector (which mounts it) and the sidecar (which reads it).
pub use hush_contract::{IDENTITY_KEY, IDENTITY_SECRET};

/// The age stanza tag and HKDF label of X25519 recipients (c2sp.org/age, "X25519 recipient type").
const X25519_TAG: &str = "X25519";
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";

/// An age X25519 identity whose public key is computed once, when it is parsed.
///
/// age's own `x25519::Identity` derives its public key again for every stanza it unwraps (the
/// HKDF salt needs it): a scalar multiplication per value, about a sixth of an unseal. This type
/// unwraps X25519 stanzas exactly as age 0.12 does (the same checks on the stanza, the same
/// all-zero shared secret refusal, the same HKDF and ChaCha20-Poly1305 from `age-core`), with the
/// public key kept; `keys.rs`'s tests check it against age's identity and the interop tests
/// against the `age` CLI. The secret scalar is zeroized on drop (x25519-dalek).
pub struct Identity {
    /// age's identity, kept for [`Identity::to_public`] and for what age does with it.
    age: age::x25519::Identity,
    secret: StaticSecret,
    public: PublicKey,
}

impl Identity {
    /// The identity's recipient (`age1...`).
    pub fn to_public(&self) -> age::x25519::Recipient {
        self.age.to_public()
    }
}

impl From<age::x25519::Identity> for Identity {
    fn from(age: age::x25519::Identity) -> Identity {
        let text = age.to_string();
        let mut bytes = Zeroizing::new([0u8; 32]);
        // age produced this text from 32 bytes: decoding it back cannot fail.
        let decoded = age_core::primitives::bech32_decode(
            text.expose_secret(),
            |_| (),
            |_| Ok(()),
            |_, data| {
                let mut n = 0;
                for (slot, b) in bytes.iter_mut().zip(data) {
                    *slot = b;
                    n += 1;
                }
                if n == 32 { Ok(()) } else { Err(()) }
            },
        );
        debug_assert!(decoded.is_ok(), "age writes 32-byte identities");
        let secret = StaticSecret::from(*bytes);
        let public = PublicKey::from(&secret);
        Identity {
            age,
            secret,
            public,
        }
    }
}

impl age::Identity for Identity {
    fn unwrap_stanza(
        &self,
        stanza: &Stanza,
    ) -> Option<std::result::Result<FileKey, age::DecryptError>> {
        if stanza.tag != X25519_TAG {
            return None;
        }
        let invalid = Some(Err(age::DecryptError::InvalidHeader));
        // A canonical stanza: one argument, 32 bytes in unpadded base64, and a 32-byte body.
        let [arg] = &stanza.args[..] else {
            return invalid;
        };
        // One byte of room: base64's size estimate for 43 characters is 33 bytes.
        let mut buf = [0u8; 33];
        let mut share = [0u8; 32];
        match base64::engine::general_purpose::STANDARD_NO_PAD.decode_slice(arg, &mut buf) {
            Ok(32) => share.copy_from_slice(&buf[..32]),
            _ => return invalid,
        }
        let Ok(body) = <&[u8; FILE_KEY_BYTES + 16]>::try_from(&stanza.body[..]) else {
            return invalid;
        };
        let epk = PublicKey::from(share);
        let shared = self.secret.diffie_hellman(&epk);
        if bool::from(shared.as_bytes().ct_eq(&[0u8; 32])) {
            return invalid;
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(epk.as_bytes());
        salt[32..].copy_from_slice(self.public.as_bytes());
        let key = Zeroizing::new(age_core::primitives::hkdf(
            &salt,
            X25519_LABEL,
            shared.as_bytes(),
        ));
        // Not ours (another recipient's stanza) is not an error: age tries the next stanza.
        let plain =
            Zeroizing::new(age_core::primitives::aead_decrypt(&key, FILE_KEY_BYTES, body).ok()?);
        Some(Ok(FileKey::init_with_mut(|k| k.copy_from_slice(&plain))))
    }
}

/// Parses an identity file holding exactly one `AGE-SECRET-KEY-1...` line (comments and blank lines
/// allowed). This is what the sidecar calls on the mounted `hush-identity` Secret.
pub fn parse_identity(text: &str) -> Result<Identity> {
    let mut ids = parse_identities(text, "")?;
    if ids.len() != 1 {
        return Err(Error::Identity {
            source_name: String::new(),
            reason: format!(
                "expected exactly one AGE-SECRET-KEY-1 line, found {}",
                ids.len()
            ),
        });
    }
    Ok(ids.remove(0))
}

/// Parses an identity file with one or more identities. `source_name` (a path) is used in errors.
pub fn parse_identities(text: &str, source_name: &str) -> Result<Vec<Identity>> {
    let err = |reason: String| Error::Identity {
        source_name: if source_name.is_empty() {
            String::new()
        } else {
            format!(" in {source_name}")
        },
        reason,
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("AGE-PLUGIN-") {
            return Err(err(format!(
                "line {}: plugin identities are not supported; use an X25519 identity from `hush keygen`",
                i + 1
            )));
        }
        if !line.starts_with("AGE-SECRET-KEY-1") {
            return Err(err(format!(
                "line {} is not an age X25519 identity (AGE-SECRET-KEY-1...); is this the right file?",
                i + 1
            )));
        }
        let copy = Zeroizing::new(line.to_owned());
        let id = age::x25519::Identity::from_str(&copy)
            .map_err(|_| err(format!("line {} is a malformed age identity", i + 1)))?;
        out.push(Identity::from(id));
    }
    if out.is_empty() {
        return Err(err(
            "no AGE-SECRET-KEY-1 line found; create one with `hush keygen`".to_owned(),
        ));
    }
    Ok(out)
}

/// Reads and parses an identity file. The file content is zeroized after parsing.
pub fn read_identity_file(path: &std::path::Path) -> Result<Vec<Identity>> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    crate::yaml::check_size(bytes.len(), &path.display().to_string())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::Identity {
        source_name: format!(" in {}", path.display()),
        reason: "not UTF-8 text; is this an identity file?".into(),
    })?;
    // A mounted hush-identity Secret file or a keygen file both work; so does a Secret manifest.
    parse_identities(strip_manifest(text), &path.display().to_string())
}

/// If `text` is the `hush-identity` Secret manifest written by `hush keygen --namespace`, returns
/// the identity block inside it; otherwise returns `text`.
fn strip_manifest(text: &str) -> &str {
    if let Some(start) = text.find("AGE-SECRET-KEY-1")
        && text.contains("kind: Secret")
    {
        let end = text[start..].find('\n').map_or(text.len(), |e| start + e);
        return &text[start..end];
    }
    text
}

/// Parses one `age1...` recipient.
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient> {
    let s = s.trim();
    age::x25519::Recipient::from_str(s).map_err(|_| Error::Recipient {
        recipient: s.escape_debug().to_string(),
        reason:
            "not an age X25519 recipient (age1...); ssh and plugin recipients are not supported"
                .into(),
    })
}

/// Parses a recipients file: one `age1...` per line, comments and blank lines allowed.
pub fn parse_recipients_file(text: &str, path: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        parse_recipient(line).map_err(|e| match e {
            Error::Recipient { recipient, reason } => Error::Recipient {
                recipient,
                reason: format!("{reason} (in {path})"),
            },
            other => other,
        })?;
        out.push(line.to_owned());
    }
    Ok(out)
}

/// A freshly generated identity, rendered for the user.
pub struct Generated {
    /// The public recipient (`age1...`).
    pub recipient: String,
    /// The identity file text (zeroized on drop).
    pub identity_file: Zeroizing<String>,
}

/// Generates a new X25519 identity.
pub fn generate() -> Generated {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let secret = id.to_string();
    let mut identity_file = Zeroizing::new(format!("# public key: {recipient}\n"));
    identity_file.push_str(secret.expose_secret());
    identity_file.push('\n');
    Generated {
        recipient,
        identity_file,
    }
}

/// The `hush-identity` Secret manifest for `namespace`, holding `generated`'s identity under the
/// key `identity` and its public key in an annotation.
pub fn identity_manifest(namespace: &str, generated: &Generated) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    out.push_str(&format!(
        "# hush identity for namespace {namespace}; public key: {r}\n\
         # Apply it (kubectl apply -f FILE), add the public key to .hush.yaml, and keep this file out of Git.\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: {IDENTITY_SECRET}\n  namespace: {ns}\n  \
         labels:\n    hush.dev/identity: \"true\"\n  annotations:\n    hush.dev/recipient: {rq}\n\
         type: Opaque\nstringData:\n  {IDENTITY_KEY}: |\n",
        r = generated.recipient,
        ns = quote(namespace),
        rq = quote(&generated.recipient),
    ));
    for line in generated.identity_file.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn generated_identity_parses_back() {
        let g = generate();
        let id = parse_identity(&g.identity_file).unwrap();
        assert_eq!(id.to_public().to_string(), g.recipient);
    }

    #[test]
    fn identity_manifest_is_a_secret_holding_the_identity() {
        let g = generate();
        let m = identity_manifest("prod", &g);
        let s = Secret::parse(&m, "t").unwrap();
        assert_eq!(s.name, IDENTITY_SECRET);
        assert_eq!(s.namespace.as_deref(), Some("prod"));
        let text = std::str::from_utf8(s.values[IDENTITY_KEY].expose()).unwrap();
        assert_eq!(
            parse_identity(text).unwrap().to_public().to_string(),
            g.recipient
        );
        assert_eq!(parse_identities(strip_manifest(&m), "m").unwrap().len(), 1);
    }

    /// A stanza wrapping `file_key` to `recipient`, written by age itself.
    fn stanza_for(recipient: &age::x25519::Recipient, file_key: [u8; 16]) -> Stanza {
        let key = FileKey::init_with_mut(|k| *k = file_key);
        let (mut stanzas, _) = age::Recipient::wrap_file_key(recipient, &key).unwrap();
        stanzas.remove(0)
    }

    fn copy(s: &Stanza) -> Stanza {
        Stanza {
            tag: s.tag.clone(),
            args: s.args.clone(),
            body: s.body.clone(),
        }
    }

    fn unwrap(id: &dyn age::Identity, stanza: &Stanza) -> Option<Result<[u8; 16], String>> {
        id.unwrap_stanza(stanza)
            .map(|r| r.map(|k| *k.expose_secret()).map_err(|e| e.to_string()))
    }

    #[test]
    fn the_cached_identity_unwraps_exactly_what_age_unwraps() {
        let age_id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let ours = Identity::from(age_id.clone());
        assert_eq!(ours.to_public().to_string(), age_id.to_public().to_string());
        let good = stanza_for(&age_id.to_public(), [7; 16]);
        let foreign = stanza_for(&other.to_public(), [7; 16]);
        let mut bad_body = copy(&good);
        bad_body.body[3] ^= 1;
        let mut short_body = copy(&good);
        short_body.body.pop();
        let mut padded = copy(&good);
        padded.args[0].push('=');
        let mut two_args = copy(&good);
        two_args.args.push(good.args[0].clone());
        let mut low_order = copy(&good);
        // The all-zero point gives an all-zero shared secret, which age refuses.
        low_order.args[0] = "A".repeat(43);
        let mut other_tag = copy(&good);
        other_tag.tag = "scrypt".into();
        let cases = [
            (&good, Some(Ok([7; 16]))),
            (&foreign, None),
            (&bad_body, None),
            (&short_body, Some(Err(()))),
            (&padded, Some(Err(()))),
            (&two_args, Some(Err(()))),
            (&low_order, Some(Err(()))),
            (&other_tag, None),
        ];
        for (i, (stanza, want)) in cases.into_iter().enumerate() {
            let got = unwrap(&ours, stanza);
            assert_eq!(got, unwrap(&age_id, stanza), "case {i}: differs from age");
            assert_eq!(got.map(|r| r.map_err(|_| ())), want, "case {i}");
        }
    }

    #[test]
    fn identity_errors_never_quote_the_file() {
        for text in [
            "",
            "# only a comment\n",
            "AGE-SECRET-KEY-1CANARY\n",
            "canary\n",
        ] {
            let err = parse_identity(text).err().unwrap().to_string();
            assert!(!err.to_lowercase().contains("canary"), "{err}");
        }
    }
}
