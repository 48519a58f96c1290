//! `hush_injector` is the mutating (and validating) admission webhook. Its heart is a pure function
//! from a Pod and the operator's configuration to a JSON patch; the HTTPS server around it only
//! decodes AdmissionReviews, calls that function and encodes the answer. It never calls out while a
//! request is admitted: even self-managed TLS publishes its CA at start and in the background.

mod audit;
mod cli;
mod config;
mod error;
mod metrics;
mod mutate;
mod pod;
mod review;
mod self_managed;
mod server;
mod tls;

pub use cli::Args;
pub use config::{InjectorConfig, RawConfig, SelfManagedTls};
pub use error::{Error, Result};
pub use metrics::{Endpoint, Metrics, Publication};
pub use mutate::{Denial, DenialReason, MAX_ENV_STRING_BYTES, SIDECAR_NAME, mutate};
pub use review::{ReviewOut, review};
pub use server::{RunningServer, run};
pub use tls::ReloadingCert;
