//! `hush_sealer` is the `hush` CLI: seal, unseal, edit, re-key and key generation around the sealed
//! format, and `hush migrate` (vault-k8s annotations to Hush's, checked by `hush_config`'s
//! parser). The format itself (sealing and opening, identities, the bounded YAML parser, the one
//! error type) lives in the `hush_sealed_format` crate beside this one (`format/`), so that the
//! sidecar, which only opens values, links none of the CLI's dependencies (clap, clap_complete,
//! regex, signal-hook). The modules here are private; the crate root re-exports the format's
//! main entry points (`seal`, `unseal`, `open_value`, ...) beside the CLI's, and the format's
//! helpers stay in `hush_sealed_format`. See `FORMAT.md` beside this crate. `hush doctor`
//! (`doctor/`) is the CLI's read-only cluster check; it links kube-rs and the injector's annotation
//! parser (`hush_config`), which the sidecar's format crate does not.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod cli;
mod doctor;
mod edit;
mod fsio;
mod migrate;
mod rules;

pub use cli::{Cli, run};
pub use hush_sealed_format::{
    Error, Identity, META_KEY, Result, Scope, SealedConfigMap, Secret, SecretValue, open_value,
    parse_identity, seal, unseal,
};
pub use rules::Rules;
