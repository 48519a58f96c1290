//! `hush_sidecar` is the process that runs next to the app in every injected pod. At run time it logs
//! in to the secret stores, writes files atomically to the tmpfs and keeps them fresh.
//!
//! The sidecar owns the one schema of the product, [`SidecarConfig`](config), and the annotation
//! parser that builds it, but they live in two small crates beside this one so that the injector can
//! use them without linking the secret-store clients: `hush_config` (the schema and the parser,
//! `sidecar/config`) and `hush_contract` (the names both sides of the pod spec agree on, and the
//! Kubernetes naming rules, `sidecar/contract`). They are re-exported here under their old paths
//! ([`config`], [`annotations`], [`source`], [`backoff`], [`names`], [`contract`]).

pub mod aws;
pub mod error;
pub mod format;
pub mod hardening;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod provider;
pub mod refresh;
pub mod runtime;
pub mod sealed;
pub mod secret;
pub mod vault;

pub use error::{AnnotationProblem, Error, Result};
pub use hush_config::{SidecarConfig, annotations, backoff, config, source, template};
pub use hush_contract::{self as contract, names};
