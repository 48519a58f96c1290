//! `hush-injector`: thin entry point. Parses flags, installs the tracing subscriber and hands the
//! validated config to the library, which serves until SIGTERM and then drains.

use anyhow::Context as _;
use clap::Parser as _;
use hush_injector::Args;

/// Logs go to stderr (`RUST_LOG`, plain or JSON); audit records go to stdout, one JSON line each,
/// past the log filter (docs/audit.md).
fn init_tracing(json: bool) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);
    let cfg = args
        .load()
        .and_then(|raw| raw.build())
        .context("invalid configuration")?;
    hush_injector::run(cfg)
        .await
        .context("hush-injector failed")?;
    Ok(())
}
