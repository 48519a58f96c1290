//! `hush`: thin entry point; all logic lives in the `hush_sealer` library (`hush_sealer::run`).

use std::process::ExitCode;

use clap::Parser;

/// Every block `hush` frees is wiped first: the YAML parser's owned scalars, base64 buffers and
/// age's chunks hold plaintext we cannot wrap in `Zeroizing` ourselves (README, Hardening).
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUSH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = hush_sealer::Cli::parse();
    match hush_sealer::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(1)
        }
    }
}
