//! `hush_config` is the one schema of Hush: [`SidecarConfig`], the typed and validated description
//! of what one pod needs, [`OperatorSettings`], and the `hush.dev/*`
//! annotation parser that builds them. The injector validates annotations with it at admission; the
//! sidecar re-validates its `HUSH_CONFIG` with it at start.
//!
//! It is a crate of its own, beside `hush_sidecar`, so
//! that the injector links the parser without the sidecar's runtime: no AWS SDK, no vaultrs, no
//! reqwest or hyper client. A cargo feature on `hush-sidecar` would not do: in a workspace build,
//! features are unified, so any member enabling the runtime would put it back into the injector's
//! binary. Everything here is pure (no IO) and bounded, except [`audit::layer`], which writes the
//! audit records both programs emit to the writer their `main` gives it. [`Backoff`] is here
//! because the injector's certificate renewal shares the sidecar's retry and renewal timing. The
//! modules are private and the crate root is the API, except [`annotations`] (the table and the
//! parser), [`template`] (the template sandbox), [`backoff`] (retry timing) and [`audit`] (the
//! audit trail's shared schema name, target and layer), which are namespaces of functions and
//! constants.

pub mod annotations;
pub mod audit;
pub mod backoff;
mod config;
mod error;
mod source;
pub mod template;

pub use backoff::{Backoff, ErrorClass, jitter, renew_after};
pub use config::{
    AwsSettings, CONFIG_ENV, CONFIG_VERSION, EnvSpec, FieldProblem, FileSpec, Format, Mode, NO_AWS,
    NO_VAULT, OnChange, OperatorSettings, SidecarConfig, Signal, VaultAuth, VaultSettings,
    check_role_name, limits,
};
pub use error::{AnnotationProblem, Error, Result};
pub use source::{AwsStage, PKI_FIELDS, PKI_PARAMS, PkiIssue, SourceKind, SourceRef};
