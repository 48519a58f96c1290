//! `hush_sealer` is the `hush` CLI: seal, unseal, edit, re-key and key generation around the sealed
//! format. The format itself (sealing and opening, identities, the bounded YAML parser, the one
//! error type) lives in the `hush_sealed_format` crate beside this one (`format/`), so that the
//! sidecar, which only opens values, links none of the CLI's dependencies (clap, clap_complete,
//! regex, signal-hook). This crate re-exports that library under its old paths, so
//! `hush_sealer::open_value` and `hush_sealer::format::META_KEY` still name the one
//! implementation. See `FORMAT.md` beside this crate.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cli;
pub mod edit;
pub mod fsio;
pub mod rules;

pub use hush_sealed_format::{
    Error, META_KEY, Result, Scope, SealedConfigMap, Secret, SecretValue, open_value,
    parse_identity, seal, unseal,
};
pub use hush_sealed_format::{error, format, keys, sealed, secret, yaml};
