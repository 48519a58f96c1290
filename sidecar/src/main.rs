//! `hush-sidecar`: thin entry point. It parses the subcommand, installs the tracing subscriber and
//! calls into the `hush_sidecar` library; all logic lives there.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hush_contract::subcommand;
use hush_sidecar::ProcessEnv;

/// Every block the sidecar frees is wiped before the C allocator gets it back, so the copies of a
/// value that libraries make and drop (hyper's and rustls's buffers, rustify's body copy,
/// serde_json's scratch, MiniJinja's strings, the AWS SDK's) do not outlive their use in freed
/// heap memory. Our own buffers are `Zeroizing` anyway; this covers the ones we cannot reach
/// (README, Hardening; docs/dependencies.md has the cost).
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

/// Fetches secrets for one pod and keeps them fresh on a tmpfs.
#[derive(Parser)]
#[command(name = hush_contract::SIDECAR_BINARY, version, about)]
struct Cli {
    /// Log as JSON lines.
    #[arg(long, env = "HUSH_LOG_JSON", global = true)]
    log_json: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `debug` or `trace`. The default hides
    /// the HTTP libraries' own error events, which repeat what the sidecar reports.
    #[arg(
        long,
        env = hush_contract::env::LOG,
        global = true,
        default_value = "info,rustify=off,vaultrs=off"
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

/// The names are the contract's: the injector writes them into the pod spec.
#[derive(Subcommand)]
enum Command {
    /// Native sidecar: fetch, write, mark started, refresh until SIGTERM.
    #[command(name = subcommand::RUN)]
    Run,
    /// Init container: fetch, write, exit.
    #[command(name = subcommand::ONCE)]
    Once,
    /// Startup probe: exit 0 once the first fetch has been written.
    #[command(name = subcommand::PROBE)]
    Probe,
    /// Parse and validate HUSH_CONFIG, then exit 0, or 1 with the error.
    #[command(name = subcommand::CHECK_CONFIG)]
    CheckConfig,
}

/// Logs go to stderr (filtered by `filter`, plain or JSON); audit records go to stdout, one JSON
/// line each, past the log filter (docs/audit.md).
fn init_tracing(json: bool, filter: &str) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs = if json {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(hush_config::audit::hide(filter)))
        .with(hush_config::audit::layer(std::io::stdout))
        .init();
}

fn main() -> ExitCode {
    hush_sidecar::install_panic_hook();
    let cli = Cli::parse();
    let env = ProcessEnv;
    // The probe runs every few seconds in every pod: no logging setup, no config parse.
    if let Command::Probe = cli.command {
        return ExitCode::from(u8::try_from(hush_sidecar::probe(&env)).unwrap_or(1));
    }
    let logs = !matches!(cli.command, Command::CheckConfig);
    if logs {
        init_tracing(cli.log_json, &cli.log);
    }
    let res = match cli.command {
        Command::Run => hush_sidecar::run(&env),
        Command::Once => hush_sidecar::once(&env),
        Command::CheckConfig => hush_sidecar::load_config(&env).map(|c| {
            println!(
                "HUSH_CONFIG is valid: {} file(s), mode {:?}",
                c.files.len(),
                c.mode
            );
        }),
        Command::Probe => Ok(()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let report = anyhow::Error::new(e);
            if logs {
                tracing::error!(error = format!("{report:#}"), "hush-sidecar failed");
            }
            // Also plain on stderr: it is what `kubectl logs` and a terminated container's
            // message show first.
            eprintln!("hush-sidecar: {report:#}");
            ExitCode::FAILURE
        }
    }
}
