//! `hush_sidecar` is the process that runs next to the app in every injected pod. At run time it logs
//! in to the secret stores, writes files atomically to the tmpfs and keeps them fresh.
//!
//! The sidecar owns the one schema of the product, [`SidecarConfig`](hush_config::SidecarConfig), and the annotation
//! parser that builds it, but they live in two small crates beside this one so that the injector can
//! use them without linking the secret-store clients: `hush_config` (the schema and the parser,
//! `sidecar/config`) and `hush_contract` (the names both sides of the pod spec agree on, and the
//! Kubernetes naming rules, `sidecar/contract`). The modules are private: the crate root is the
//! API, which the binary, the integration tests and the benchmarks use.

mod audit;
mod aws;
mod error;
mod format;
mod hardening;
mod launch;
mod metrics;
mod notify;
mod output;
mod provider;
mod refresh;
mod runtime;
mod sealed;
mod secret;
mod vault;

pub use error::{Error, Result};
pub use format::{Input, Inputs, render, render_capped, render_with};
pub use hardening::install_panic_hook;
pub use metrics::{Metrics, STALE_AFTER, stale_after};
pub use output::{AtomicWriter, DATA_LINK, OutputFile, WriteOutcome};
pub use runtime::{Env, ProcessEnv, load_config, once, probe, run};
pub use secret::{SecretBytes, SecretFields, SecretValue};
