//! The one error type of the sealed format, which the `hush` CLI (`hush_sealer`) re-exports as its
//! own. Messages never carry a secret value: decryption failures are deliberately coarse (they never
//! say which check failed), binding failures name the object and key only, and YAML errors carry a
//! location, never a snippet of the input. Each message ends with what to do next, in the style of
//! rage's `err-*`/`rec-*` pairs.

/// Everything that can go wrong while sealing, unsealing or checking a sealed Secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("I/O error on {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// An input is larger than the cap we accept before parsing it.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes; {hint}")]
    InputTooLarge {
        what: String,
        size: usize,
        limit: usize,
        hint: &'static str,
    },

    /// YAML/JSON that cannot be parsed, or that breaks a parser budget. `detail` holds a location
    /// or the budget that was exceeded, never input text.
    #[error("{what}: {detail}")]
    Yaml { what: String, detail: String },

    /// The input Secret is not something we can seal.
    #[error("cannot seal this Secret: {reason}")]
    InvalidSecret { reason: String },

    /// A sealed ConfigMap is structurally wrong (checked without any identity).
    #[error("{object} is not a valid sealed secret: {reason}; re-seal it from the source Secret")]
    InvalidSealed { object: String, reason: String },

    /// The sealed data uses a format version this build does not know.
    #[error(
        "{object} uses sealed format {found}, but this hush understands v{supported} only; upgrade hush"
    )]
    UnsupportedVersion {
        object: String,
        found: String,
        supported: u32,
    },

    /// A value is bound to another namespace, name, key, scope or seal. Names the object and key,
    /// never the value.
    #[error(
        "{}{object} is not bound to this namespace/name: {reason}; it was moved, renamed or \
         replaced. Re-seal it for this namespace/name with `hush seal`",
        key_prefix(key)
    )]
    Binding {
        object: String,
        key: String,
        reason: String,
    },

    /// The MAC over the whole set did not verify: a key was added, dropped, renamed or changed, or
    /// the metadata was edited by hand.
    #[error(
        "{object} failed its integrity check: keys were added, dropped, renamed or modified outside \
         hush. Restore it from version control, or re-seal it from the source Secret"
    )]
    Integrity { object: String },

    /// Decryption failed. Coarse on purpose: wrong identity, damaged or truncated ciphertext all
    /// look the same.
    #[error(
        "cannot decrypt {what} of {object}: wrong identity, or the ciphertext is damaged. Check \
         that -i/HUSH_IDENTITY_FILE points at an identity this file was sealed to (`hush verify` \
         lists its recipients)"
    )]
    Decrypt { object: String, what: String },

    /// The requested key is not in the sealed set.
    #[error("{object} has no key `{key}` (it has: {available}); check the `sealed:` reference")]
    MissingKey {
        object: String,
        key: String,
        available: String,
    },

    /// age refused to encrypt.
    #[error("age encryption failed")]
    Encrypt(#[source] std::io::Error),

    /// The sealed manifest would be larger than a ConfigMap may be.
    #[error(
        "the sealed manifest would be {size} bytes, over the {limit}-byte (1 MiB) ConfigMap limit; \
         split the Secret into several, or keep large files out of Kubernetes"
    )]
    OutputTooLarge { size: usize, limit: usize },

    /// An identity file could not be used. Never quotes the file's content.
    #[error("invalid identity{source_name}: {reason}")]
    Identity { source_name: String, reason: String },

    /// A recipient string is not an age X25519 recipient. Recipients are public.
    #[error("invalid recipient `{recipient}`: {reason}")]
    Recipient { recipient: String, reason: String },

    /// No recipient was given and no creation rule matched.
    #[error("no recipients: {hint}")]
    NoRecipients { hint: String },

    /// `.hush.yaml` is wrong.
    #[error("creation rules in {path}: {reason}")]
    Rules { path: String, reason: String },

    /// The editor failed, or its result cannot be used.
    #[error("edit aborted: {reason}")]
    Editor { reason: String },

    /// A signal interrupted the command; plaintext was removed.
    #[error("interrupted by signal {signal}; temporary plaintext was removed")]
    Interrupted { signal: i32 },

    /// `hush doctor` could not read what it needs from the cluster (kubeconfig, apiserver, RBAC).
    #[error("{action}: {reason}")]
    Cluster { action: String, reason: String },

    /// Anything the user asked for that does not make sense.
    #[error("{message}")]
    Usage { message: String },
}

/// `key `k` of ` for a value, nothing for the whole set (the reserved key).
fn key_prefix(key: &str) -> String {
    if key == crate::format::META_KEY {
        String::new()
    } else {
        format!("key `{key}` of ")
    }
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// True for errors that retrying cannot fix (everything but I/O). The sidecar uses this to sort
    /// a `sealed:` failure into permanent or transient.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Error::Io { .. })
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
