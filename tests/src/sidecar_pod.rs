//! The sidecar as it runs in a real pod, for the sidecar end-to-end tests: a typed
//! [`SidecarConfig`] becomes the pod's `hush.dev/*` annotations, the injector's pure `mutate`
//! turns the annotated pod into the injected one (native sidecar, tmpfs, projected tokens, the
//! credentials Secret volume, the AWS web-identity env), the pod is stored in the real
//! kube-apiserver, and the pod runner runs the `hush-sidecar` container from the stored spec as UID
//! 65532 with no capabilities. The test's typed config replaces the injector's `HUSH_CONFIG` so a
//! test can point the sidecar at a proxy or lower the operator's minimum refresh; everything else
//! (identity, volumes, tokens, paths) is what the injector produced. One copy here, used by the
//! Vault and AWS suites, instead of a root-run binary with re-rooted paths in each.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use hush_config::{Mode, OnChange, SidecarConfig, VaultAuth};
use hush_injector::{InjectorConfig, RawConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::env::{TestEnv, unique_name};
use crate::harness::{free_port, sidecar_bin};
use crate::pod_runner::{RunSpec, RunningContainer, run_container};

/// Generous upper bound for anything that should happen "soon"; tests never assert speed.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The injected container's name.
pub const CONTAINER: &str = "hush-sidecar";

/// Polls `f` every 50 ms until it returns `Some`, for at most [`PATIENCE`].
pub async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plain HTTP/1.1 GET on loopback; returns the whole response (head and body).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    out
}

/// The `hush.dev/*` annotations that express `cfg`'s shape (sources, formats, modes, auth), so
/// the injector builds the same volumes and env a user's pod would get.
pub fn annotations(cfg: &SidecarConfig) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([("hush.dev/inject".to_string(), "true".to_string())]);
    if let Some(role) = &cfg.role {
        a.insert("hush.dev/role".into(), role.clone());
    }
    match cfg.auth {
        VaultAuth::Kubernetes => {}
        VaultAuth::AppRole => {
            a.insert("hush.dev/vault-auth".into(), "approle".into());
        }
        VaultAuth::Token => {
            a.insert("hush.dev/vault-auth".into(), "token".into());
        }
    }
    if let Some(s) = &cfg.credentials_secret {
        a.insert("hush.dev/vault-auth-secret".into(), s.clone());
    }
    if cfg.mode == Mode::InitOnly {
        a.insert("hush.dev/mode".into(), "init-only".into());
    }
    if let Some(arn) = &cfg.aws_role_arn {
        a.insert("hush.dev/aws-role-arn".into(), arn.clone());
    }
    // `http:` and `none` change nothing in the pod; `signal:` shares the process namespace and
    // runs the sidecar as the app's user.
    if let OnChange::Signal { signal, process } = &cfg.on_change {
        a.insert(
            "hush.dev/on-change".into(),
            format!("signal:{}:{process}", signal.name()),
        );
    }
    for f in &cfg.files {
        if let Some(source) = &f.source {
            a.insert(format!("hush.dev/secret-{}", f.name), source.to_string());
        }
        match &f.template {
            Some(t) => {
                a.insert(format!("hush.dev/template-{}", f.name), t.clone());
            }
            None => {
                a.insert(
                    format!("hush.dev/format-{}", f.name),
                    f.format.as_str().into(),
                );
            }
        }
        a.insert(
            format!("hush.dev/mode-{}", f.name),
            format!("{:04o}", f.mode),
        );
    }
    a
}

/// The operator's injector config for these tests: the real OpenBao and moto, and the typed
/// config's role allowed in its namespace.
fn injector_config(env: &TestEnv, cfg: &SidecarConfig) -> InjectorConfig {
    let roles = match &cfg.role {
        Some(r) => format!("allowedRoles:\n  {}: [{r}]\n", cfg.namespace),
        None => String::new(),
    };
    let signals = if matches!(cfg.on_change, OnChange::Signal { .. }) {
        "podSecurity:\n  allowShareProcessNamespace: true\n"
    } else {
        ""
    };
    let yaml = format!(
        "{}{roles}{signals}",
        crate::operator::injector_yaml(env, crate::operator::Stores::BOTH)
    );
    RawConfig::from_yaml(&yaml, "sidecar_pod")
        .and_then(RawConfig::build)
        .unwrap_or_else(|e| panic!("injector config: {e}"))
}

/// The app container's user (the pod's `runAsUser`).
pub const APP_UID: u32 = 1000;

/// The annotated app pod before injection: one non-root app container (UID [`APP_UID`]) that
/// would read the files.
fn app_pod(name: &str, ns: &str, sa: &str, annotations: BTreeMap<String, String>) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": ns, "annotations": annotations },
        "spec": {
            "schedulingGates": [{ "name": "hush.dev/admission-only" }],
            "serviceAccountName": sa,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 1000,
                "seccompProfile": { "type": "RuntimeDefault" }
            },
            "containers": [{
                "name": "app",
                "image": "registry.example/app:1",
                "command": ["/bin/sh", "-c", "sleep 3600"],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": { "drop": ["ALL"] }
                }
            }]
        }
    }))
    .expect("a valid pod")
}

/// What to run.
pub struct Launch<'a> {
    pub env: &'a TestEnv,
    pub client: &'a Client,
    pub namespace: &'a str,
    /// The pod's ServiceAccount (it must exist).
    pub service_account: &'a str,
    pub cfg: &'a SidecarConfig,
    /// `run`, `once`, `check-config` ...
    pub command: &'a str,
    /// Env set after the spec's (e.g. `HUSH_LOG`, static AWS test keys).
    pub extra_env: Vec<(String, String)>,
}

/// An injected pod stored in the apiserver, with its sidecar running through the pod runner.
pub struct SidecarPod {
    pub run: RunningContainer,
    pub pod: Pod,
    pub metrics: SocketAddr,
    client: Client,
}

impl std::fmt::Debug for SidecarPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarPod")
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl SidecarPod {
    /// Injects, stores and starts the sidecar of a pod built from `l.cfg`.
    pub async fn start(l: Launch<'_>) -> SidecarPod {
        assert_eq!(
            l.cfg.namespace, l.namespace,
            "the typed config must name the pod's namespace"
        );
        let name = unique_name("sc");
        let pod = app_pod(&name, l.namespace, l.service_account, annotations(l.cfg));
        let patch = hush_injector::mutate(&pod, &injector_config(l.env, l.cfg), l.namespace)
            .unwrap_or_else(|d| panic!("the injector denied the test pod: {d:?}"));
        let mut value = serde_json::to_value(&pod).expect("pod to JSON");
        json_patch::patch(&mut value, &patch).expect("the injector's patch applies");
        let injected: Pod = serde_json::from_value(value).expect("patched pod");
        let stored = Api::<Pod>::namespaced(l.client.clone(), l.namespace)
            .create(&PostParams::default(), &injected)
            .await
            .unwrap_or_else(|e| panic!("the apiserver refused the injected pod: {e}"));
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("loopback address");
        let mut extra_env = BTreeMap::from([
            ("HUSH_CONFIG".to_string(), l.cfg.to_json()),
            (
                hush_contract::env::METRICS_ADDR.to_string(),
                metrics.to_string(),
            ),
        ]);
        extra_env.extend(l.extra_env);
        let run = run_container(
            l.client,
            &stored,
            RunSpec {
                container: CONTAINER.into(),
                binaries: [(CONTAINER.to_string(), sidecar_bin())].into(),
                extra_env,
                args_override: Some(vec![l.command.to_string()]),
                ..RunSpec::default()
            },
        )
        .await;
        SidecarPod {
            run,
            pod: stored,
            metrics,
            client: l.client.clone(),
        }
    }

    /// The host directory of the secrets tmpfs.
    pub fn secrets(&self) -> PathBuf {
        self.run.volume_path("hush-secrets").to_path_buf()
    }

    /// A secret file's bytes, if it exists.
    pub fn read(&self, file: &str) -> Option<Vec<u8>> {
        std::fs::read(self.secrets().join(file)).ok()
    }

    /// A secret file as text, if it exists.
    pub fn read_string(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.secrets().join(file)).ok()
    }

    /// The projected token the pod runner minted for the sidecar (the `hush-token` volume).
    pub fn vault_token_file(&self) -> PathBuf {
        self.run.volume_path("hush-token").join("token")
    }

    /// The sidecar's pid (the runner `exec`s down to it).
    pub fn pid(&self) -> u32 {
        self.run.child.id()
    }

    /// Sends `sig` to the sidecar.
    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("a live pid");
        rustix::process::kill_process(pid, sig).expect("signal the sidecar");
    }

    /// Everything the sidecar printed so far.
    pub fn logs(&self) -> String {
        self.run.logs()
    }

    /// Waits for the sidecar to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.run.wait_timeout(Duration::ZERO) {
                return st;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "hush-sidecar did not exit; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as the kubelet sends, then the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        self.wait_exit().await
    }

    /// Waits for the started marker the startup probe looks for.
    pub async fn started(&mut self) {
        let marker = self.run.volume_path("hush-state").join("started");
        let start = Instant::now();
        while !marker.exists() {
            if let Some(st) = self.run.wait_timeout(Duration::ZERO) {
                panic!(
                    "hush-sidecar exited with {st} before starting; logs:\n{}",
                    self.logs()
                );
            }
            assert!(
                start.elapsed() < PATIENCE,
                "not started; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the container's startup probe (`hush-sidecar probe`) from the stored spec, on this
    /// pod's volumes, as the kubelet would; true when it exits 0.
    pub async fn probe(&self) -> bool {
        probe_on(&self.client, &self.pod, self.run.volumes.clone()).await
    }

    /// The sidecar's `/metrics` body.
    pub fn metrics_text(&self) -> String {
        http_get(self.metrics, "/metrics")
    }

    /// The sidecar's whole `/healthz` response (status line and body).
    pub fn healthz(&self) -> String {
        http_get(self.metrics, "/healthz")
    }
}

/// Runs `hush-sidecar probe` from `pod`'s stored spec with the given (shared) volumes; empty
/// volumes give the probe a fresh, never-started pod.
pub async fn probe_on(client: &Client, pod: &Pod, volumes: BTreeMap<String, PathBuf>) -> bool {
    let mut p = run_container(
        client,
        pod,
        RunSpec {
            container: CONTAINER.into(),
            binaries: [(CONTAINER.to_string(), sidecar_bin())].into(),
            args_override: Some(vec!["probe".into()]),
            shared_volumes: volumes,
            ..RunSpec::default()
        },
    )
    .await;
    let st = p
        .wait_timeout(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the probe did not exit: {}", p.logs()));
    st.success()
}
