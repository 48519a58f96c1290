//! The one error type of `hush_config`: what is wrong with a pod's annotations (every problem at
//! once, each naming its annotation), with one field of a `SidecarConfig` or of the operator
//! settings, or with the `HUSH_CONFIG` JSON as a whole. Messages name annotations and fields, never a
//! secret value. The sidecar wraps it unchanged in its own error.

/// Everything that can be wrong with a config or with the annotations that build it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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
