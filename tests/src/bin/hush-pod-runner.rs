//! `hush-pod-runner`: the command-line face of the pod runner, for `scripts/demo`. It runs one
//! container of a pod stored in the real kube-apiserver as a local process, exactly as its spec
//! says (see `hush_tests::pod_runner`). With `--state` it records the host paths of the pod's
//! volumes, and `--shared-from` lets a second container (the app) use the same volumes, as the
//! kubelet shares a pod's volumes. Without `--wait` it runs until SIGTERM or SIGINT, then stops
//! the container with SIGTERM and cleans up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use hush_tests::{cluster, env::TestEnv, pod_runner};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

#[derive(Debug, Parser)]
#[command(
    name = "hush-pod-runner",
    about = "Run a container of a stored pod locally"
)]
struct Args {
    /// Namespace of the pod.
    #[arg(long)]
    namespace: String,
    /// Name of the pod.
    #[arg(long)]
    pod: String,
    /// Container (or init container) to run.
    #[arg(long)]
    container: String,
    /// Maps an image's program to a local binary: `hush-sidecar=target/release/hush-sidecar`.
    #[arg(long = "binary", value_name = "PROGRAM=PATH")]
    binaries: Vec<String>,
    /// Extra environment for the process: `K=V`.
    #[arg(long = "env", value_name = "K=V")]
    extra_env: Vec<String>,
    /// Writes the volumes' host paths (JSON) here once the container started.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Uses the volumes recorded in this state file (another container of the same pod).
    #[arg(long)]
    shared_from: Option<PathBuf>,
    /// Waits for the container to exit and exits with its status.
    #[arg(long)]
    wait: bool,
    /// With `--wait`: prints the files of this volume (name, mode, content) before cleaning up.
    /// For demos with demo values only.
    #[arg(long, value_name = "VOLUME")]
    show: Option<String>,
}

fn show_volume(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o7777;
        let content = std::fs::read(&path)?;
        println!(
            "{name} (mode {mode:o}): {}",
            String::from_utf8_lossy(&content)
        );
    }
    Ok(())
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("{what} {s:?} is not NAME=VALUE"))
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = TestEnv::try_load()
        .map_err(|m| anyhow::anyhow!("{m} is not set: run scripts/test-env up"))?;
    let client = cluster::client(&env).await;
    let pod = Api::<Pod>::namespaced(client.clone(), &args.namespace)
        .get(&args.pod)
        .await
        .with_context(|| format!("read pod {}/{}", args.namespace, args.pod))?;
    let shared_volumes = match &args.shared_from {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))?
        }
        None => BTreeMap::new(),
    };
    let spec = pod_runner::RunSpec {
        container: args.container.clone(),
        binaries: pairs(&args.binaries, "--binary")?
            .into_iter()
            .map(|(k, v)| (k, PathBuf::from(v)))
            .collect(),
        extra_env: pairs(&args.extra_env, "--env")?,
        shared_volumes,
        ..Default::default()
    };
    let mut running = pod_runner::run_container(&client, &pod, spec).await;
    if let Some(p) = &args.state {
        std::fs::write(p, serde_json::to_vec_pretty(&running.volumes)?)
            .with_context(|| format!("write {}", p.display()))?;
    }
    if args.wait {
        let status = running
            .wait_timeout(Duration::from_secs(120))
            .context("the container did not exit within 120 s")?;
        print!("{}", running.logs());
        if let Some(volume) = &args.show {
            let dir = running
                .volumes
                .get(volume)
                .with_context(|| format!("the pod has no volume {volume}"))?;
            show_volume(dir)?;
        }
        if !status.success() {
            bail!("container {} exited with {status}", args.container);
        }
        return Ok(());
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let status = running.stop();
    eprintln!("container {} stopped: {status}", args.container);
    Ok(())
}
