//! `hush_injector` is the mutating (and validating) admission webhook. Its heart is a pure function
//! from a Pod and the operator's configuration to a JSON patch; the HTTPS server around it only
//! decodes AdmissionReviews, calls that function and encodes the answer. It never calls out while a
//! request is admitted: even self-managed TLS publishes its CA at start and in the background.

pub mod cli;
pub mod config;
pub mod error;
pub mod metrics;
pub mod mutate;
pub mod review;
pub mod self_managed;
pub mod server;
pub mod tls;

pub use config::InjectorConfig;
pub use error::{Error, Result};
pub use mutate::{Denial, DenialReason, mutate};
