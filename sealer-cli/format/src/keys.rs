//! age X25519 identities and recipients: parsing identity files (the same text `age-keygen` writes
//! and the `hush-identity` Secret holds), parsing recipients and recipients files, and generating a
//! new identity with its `hush-identity` Secret manifest. Identity text is handled in zeroized
//! buffers and never appears in an error.

use std::str::FromStr;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::yaml::quote;
use crate::{Error, Result};

/// The per-namespace Secret holding the identity, and its key: part of the contract with the
/// injector (which mounts it) and the sidecar (which reads it).
pub use hush_contract::{IDENTITY_KEY, IDENTITY_SECRET};

/// Parses an identity file holding exactly one `AGE-SECRET-KEY-1...` line (comments and blank lines
/// allowed). This is what the sidecar calls on the mounted `hush-identity` Secret.
pub fn parse_identity(text: &str) -> Result<age::x25519::Identity> {
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
pub fn parse_identities(text: &str, source_name: &str) -> Result<Vec<age::x25519::Identity>> {
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
        out.push(id);
    }
    if out.is_empty() {
        return Err(err(
            "no AGE-SECRET-KEY-1 line found; create one with `hush keygen`".to_owned(),
        ));
    }
    Ok(out)
}

/// Reads and parses an identity file. The file content is zeroized after parsing.
pub fn read_identity_file(path: &std::path::Path) -> Result<Vec<age::x25519::Identity>> {
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
