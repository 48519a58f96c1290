//! The one error type of `hush_sidecar`. Messages name files, annotations and source kinds, never a
//! secret value or a token.

/// Everything that can go wrong in the sidecar library.
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
    /// The annotations, `HUSH_CONFIG` or the operator settings are invalid (the schema's own
    /// error, with its message unchanged).
    #[error(transparent)]
    Schema(#[from] hush_config::Error),
    /// A runtime setting outside the schema is invalid (an env var, a mounted credential).
    #[error("invalid config field {field}: {reason}")]
    Config { field: String, reason: String },
    /// Writing the secrets volume failed. When `kept_previous` is true (every failure before the
    /// `..data` swap, such as a full tmpfs) the previous set of files is intact.
    #[error("writing secret file {file} failed ({op}){}", kept_note(*.kept_previous))]
    Output {
        file: String,
        op: &'static str,
        kept_previous: bool,
        #[source]
        source: std::io::Error,
    },
    /// Rendering a file from its secret failed (the reason never contains a value).
    #[error("rendering secret file {file} failed: {reason}")]
    Render { file: String, reason: String },
    /// A call to a secret store failed. The reason names the operation and the server's message,
    /// never a value or a token.
    #[error("{store}: {reason} ({})", .class.as_str())]
    Store {
        store: &'static str,
        class: hush_config::ErrorClass,
        reason: String,
    },
    /// A deadline passed before the work finished.
    #[error("{what} did not finish within {} seconds{}", .after.as_secs(), .last.as_ref().map(|l| format!("; last error: {l}")).unwrap_or_default())]
    Deadline {
        what: &'static str,
        after: std::time::Duration,
        last: Option<String>,
    },
    /// The on-change notification failed.
    #[error("on-change notification failed: {reason}")]
    Notify { reason: String },
}

fn kept_note(kept: bool) -> &'static str {
    if kept {
        "; the previous files are unchanged"
    } else {
        ""
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
