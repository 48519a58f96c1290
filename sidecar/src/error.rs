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
    /// One or more `hush.dev/*` annotations are invalid; all problems are listed.
    #[error("{}", AnnotationProblem::join(.0))]
    Annotations(Vec<AnnotationProblem>),
    /// A field of `HUSH_CONFIG` or of the operator settings is invalid.
    #[error("invalid config field {field}: {reason}")]
    Config { field: String, reason: String },
    /// `HUSH_CONFIG` has a version this sidecar does not speak.
    #[error(
        "HUSH_CONFIG has version {found}, but this hush-sidecar supports version {supported}; deploy the sidecar image of the injector's release"
    )]
    ConfigVersion { found: String, supported: u32 },
    /// `HUSH_CONFIG` is not valid JSON for the schema.
    #[error("HUSH_CONFIG is not a valid config")]
    ConfigJson(#[source] serde_json::Error),
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
        class: crate::backoff::ErrorClass,
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

/// One invalid annotation and the rule it broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationProblem {
    /// The full annotation key, e.g. `hush.dev/refresh`.
    pub annotation: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl AnnotationProblem {
    fn join(problems: &[AnnotationProblem]) -> String {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl std::fmt::Display for AnnotationProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "annotation \"{}\": {}", self.annotation, self.reason)
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
