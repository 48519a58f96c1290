//! `hush_bench` holds what the benchmark programs in `src/bin/` share: a TLS-terminating counting
//! proxy, HTTPS load drivers, writers of the sidecar's typed config, an OpenBao admin client, process
//! measurements from `/proc`, callgrind runs, and the Markdown of the results tables. It is a
//! binary-support crate, never linked by Hush itself, so errors are `anyhow` throughout: every
//! failure ends a benchmark run with a message saying what to start or fix. The method (floors,
//! peers, CPU pinning, callgrind) is in `docs/benchmarks.md`.

pub mod callgrind;
pub mod configs;
pub mod load;
pub mod proc;
pub mod proxy;
pub mod report;
pub mod review;
pub mod run;
pub mod tls;
pub mod vault;
