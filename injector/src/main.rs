//! `hush-injector`: thin entry point. Parses flags, installs the tracing subscriber and hands the
//! validated config to the library, which serves until SIGTERM and then drains.

use anyhow::Context as _;
use clap::Parser as _;
use hush_injector::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let cfg = args
        .load()
        .and_then(|raw| raw.build())
        .context("invalid configuration")?;
    hush_injector::run(cfg)
        .await
        .context("hush-injector failed")?;
    Ok(())
}
