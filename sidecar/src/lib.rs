//! `hush_sidecar` is the process that runs next to the app in every injected pod. It owns the one
//! schema of the product, [`SidecarConfig`](config), and the annotation parser that builds it; the
//! injector depends on this crate to validate annotations at admission time. At run time it logs in
//! to the secret stores, writes files atomically to the tmpfs and keeps them fresh.

pub mod annotations;
pub mod aws;
pub mod backoff;
pub mod config;
pub mod error;
pub mod format;
pub mod hardening;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod output;
pub mod provider;
pub mod refresh;
pub mod runtime;
pub mod sealed;
pub mod secret;
pub mod source;
pub mod vault;

pub use config::SidecarConfig;
pub use error::{AnnotationProblem, Error, Result};
