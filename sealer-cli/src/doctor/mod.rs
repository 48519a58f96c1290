//! `hush doctor`: finds what the webhook cannot report itself. A pod created while the webhook was
//! down, excluded or failing open (`failurePolicy: Ignore`) runs without its sidecar and nothing
//! injects it later; a pod injected before an upgrade keeps its old sidecar; a webhook whose
//! caBundle no longer verifies its certificate, or whose Service has no ready endpoint, fails every
//! annotated pod; a `sealed:` reference to a missing ConfigMap, key or identity keeps a sidecar
//! from starting. Doctor reads (never writes) the cluster with the user's kubeconfig, runs pure
//! checks over what it read, prints every finding with the object and the fix, and exits 1 when
//! there is one. Three steps, one module each: `gather` (kube-rs reads, the TLS dial, `--repo`),
//! `checks` (pure `findings(&Snapshot) -> Report`) and `render` (table or JSON).

mod checks;
mod gather;
mod render;
mod snapshot;
mod tls;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{Error, Result};

/// Output format.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(crate) enum Output {
    /// A table for people.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

/// `hush doctor` arguments. Defaults match the Helm chart installed as release `hush` in
/// `hush-system`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The injector's MutatingWebhookConfiguration (the chart names it after the release).
    #[arg(long, value_name = "NAME", default_value = "hush")]
    webhook: String,
    /// Namespace of the injector's ConfigMap [default: the webhook Service's namespace].
    #[arg(long, value_name = "NS")]
    injector_namespace: Option<String>,
    /// The injector's ConfigMap (key config.yaml) [default: the webhook Service's name].
    #[arg(long, value_name = "NAME")]
    injector_config: Option<String>,
    /// Check the pods of this namespace [default: the kubeconfig context's namespace].
    #[arg(short, long, value_name = "NS", conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Check the pods of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Compare sealed ConfigMaps with the sealed files and `.hush.yaml` of this repository.
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
    /// Kubeconfig file [default: $KUBECONFIG, then ~/.kube/config, then in-cluster].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
}

fn cluster_error(action: &str, e: impl std::fmt::Display) -> Error {
    Error::Cluster {
        action: action.to_string(),
        reason: e.to_string(),
    }
}

/// Runs `hush doctor`. Returns 0 without findings, 1 with any.
pub(crate) fn run(args: DoctorArgs) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("the async runtime", e))?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: DoctorArgs) -> Result<u8> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| cluster_error("--kubeconfig", e))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| cluster_error("--kubeconfig", e))?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| cluster_error("loading the kubeconfig", e))?,
        None => kube::Config::infer().await.map_err(|e| {
            cluster_error(
                "finding a kubeconfig (set KUBECONFIG or pass --kubeconfig)",
                e,
            )
        })?,
    };
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(
            args.namespace
                .clone()
                .unwrap_or_else(|| config.default_namespace.clone()),
        )
    };
    let client =
        kube::Client::try_from(config).map_err(|e| cluster_error("creating the client", e))?;
    let target = gather::Target {
        webhook: args.webhook.clone(),
        injector_namespace: args.injector_namespace.clone(),
        injector_config: args.injector_config.clone(),
        namespace: namespace.clone(),
        repo: args.repo.clone(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let snapshot = gather::gather(&client, &target, now).await?;
    let report = checks::findings(&snapshot);
    let text = match args.output {
        Output::Table => render::table(&report, namespace.as_deref(), &args.webhook),
        Output::Json => render::json(&report, namespace.as_deref(), &args.webhook),
    };
    print!("{text}");
    Ok(if report.findings.is_empty() { 0 } else { 1 })
}
