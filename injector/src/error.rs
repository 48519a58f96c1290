//! The one error type of `hush_injector`. Admission denials are not errors: they are ordinary
//! answers ([`crate::mutate::Denial`]). Errors here are what stops the server from starting or
//! serving: a bad config file (always naming the field), unreadable or invalid TLS material, a port
//! that cannot be bound, and, in self-managed TLS mode, the Kubernetes API calls that publish the CA
//! (made at start and in the background, never while a request is admitted).

/// Everything that can go wrong in the injector library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file (config, certificate) failed.
    #[error("I/O error on {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The configuration file is not valid YAML for the schema (unknown field, wrong type).
    #[error("config file {path} is invalid: {reason}")]
    ConfigFile { path: String, reason: String },

    /// One configuration field has a bad value.
    #[error("config field `{field}` is invalid: {reason}")]
    Config { field: String, reason: String },

    /// The TLS certificate or key cannot be used.
    #[error("TLS material is unusable: {reason}")]
    Tls { reason: String },

    /// Self-managed TLS could not make its CA or serving certificate.
    #[error("cannot make the self-managed certificate")]
    CertGen(#[source] rcgen::Error),

    /// Self-managed TLS found no Kubernetes API configuration (in-cluster or `KUBECONFIG`).
    #[error(
        "self-managed TLS needs the Kubernetes API, but no in-cluster config or KUBECONFIG was \
         found: run in a pod with a service-account token, or set KUBECONFIG"
    )]
    KubeConfig(#[source] kube::Error),

    /// A Kubernetes API call of self-managed TLS failed.
    #[error("{action} {kind} {name}")]
    Kube {
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },

    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
