//! Helpers for the end-to-end tests: reading the test environment's exports (written by
//! `scripts/test-env`), talking to the real kube-apiserver, and failing with a clear message when a
//! server is missing instead of skipping silently.

pub mod cluster;
pub mod cmd;
pub mod env;
pub mod faults;
pub mod harness;
pub mod kube;
pub mod memscan;
pub mod operator;
pub mod pod_runner;
pub mod sidecar_pod;
