//! `hush_config` is the one schema of Hush: [`SidecarConfig`], the typed and validated description
//! of what one pod needs, [`OperatorSettings`](config::OperatorSettings), and the `hush.dev/*`
//! annotation parser that builds them. The injector validates annotations with it at admission; the
//! sidecar re-validates its `HUSH_CONFIG` with it at start.
//!
//! It is a crate of its own, beside `hush_sidecar` (which re-exports it under its old paths), so
//! that the injector links the parser without the sidecar's runtime: no AWS SDK, no vaultrs, no
//! reqwest or hyper client. A cargo feature on `hush-sidecar` would not do: in a workspace build,
//! features are unified, so any member enabling the runtime would put it back into the injector's
//! binary. Everything here is pure (no IO) and bounded. [`backoff`] is here for the same reason: the
//! injector's certificate renewal shares the sidecar's retry and renewal timing.

pub mod annotations;
pub mod backoff;
pub mod config;
pub mod error;
pub mod source;
pub mod template;

pub use config::SidecarConfig;
pub use error::{AnnotationProblem, Error, Result};
pub use hush_contract::{self as contract, names};
