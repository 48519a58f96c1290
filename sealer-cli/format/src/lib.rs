//! `hush_sealed_format` owns the sealed-secret format: it turns a Kubernetes Secret into a
//! ConfigMap whose values are age ciphertexts bound to (format version, namespace, name, key,
//! scope), and back. The `hush` CLI (crate `hush-sealer`) and the sidecar's `sealed:` source both
//! go through this library, so there is exactly one implementation of the format and of its
//! checks. It is a crate of its own so that the sidecar links the format without the CLI's
//! dependencies. See `../FORMAT.md`.
//!
//! The sidecar calls [`parse_identity`] on the mounted `hush-identity` Secret and [`open_value`] on
//! the mounted sealed ConfigMap's data.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod error;
pub mod format;
pub mod keys;
mod parallel;
pub mod sealed;
pub mod secret;
pub mod yaml;

pub use error::{Error, Result};
pub use format::{META_KEY, Scope};
pub use keys::{Identity, parse_identity};
pub use sealed::{SealedConfigMap, open_value, seal, unseal};
pub use secret::{Secret, SecretValue};
