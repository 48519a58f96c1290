//! End-to-end tests of `hush-sidecar`'s AWS Secrets Manager source against the real moto server
//! (Secrets Manager and STS) and the real kube-apiserver. Each test stores an injected pod in the
//! apiserver (its typed `SidecarConfig` as annotations, through the injector's own `mutate`) and
//! runs the pod's `hush-sidecar` container from the stored spec with the pod runner: UID 65532, no
//! capabilities, the files on a real tmpfs, and for web identity the `sts.amazonaws.com` token the
//! runner mints by TokenRequest with the env the injector adds. The tests check what a user relies
//! on: files byte for byte, rotation with one notification, the last good file kept when a secret
//! disappears, web identity through STS, and the number of API calls a refresh costs.
//!
//! A small loopback TCP proxy sits between the sidecar and moto where calls are counted: it reads
//! the `x-amz-target` header of every request on the wire, so the counts do not depend on the
//! sidecar's own bookkeeping.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use hush_config::{FileSpec, Format, OnChange, OperatorSettings, SidecarConfig, SourceRef};
use hush_tests::env::{TestEnv, unique_name};
use hush_tests::harness::{metric, notification_listener};
use hush_tests::sidecar_pod::{Launch, SidecarPod, http_get, wait_for};
use hush_tests::{cluster, operator};

/// The refresh interval of these tests (the operator minimum is lowered to allow it).
const REFRESH: Duration = Duration::from_secs(5);

/// A test's moto client and names, a namespace with the ServiceAccount `app`, and a scratch dir
/// (the sidecar's HOME, so no profile of this machine can interfere).
struct Fixture {
    env: TestEnv,
    client: kube::Client,
    ns: String,
    sm: Client,
    prefix: String,
    root: PathBuf,
}

impl Fixture {
    async fn new() -> Fixture {
        let env = TestEnv::load();
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(env.aws_region.clone()))
            .endpoint_url(&env.aws_endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .load()
            .await;
        let root = std::env::temp_dir().join(unique_name("hush-aws-e2e"));
        std::fs::create_dir_all(&root).unwrap();
        let client = cluster::client(&env).await;
        let ns = cluster::namespace(&client, "aws", false).await;
        cluster::service_account(&client, &ns, "app").await;
        Fixture {
            client,
            ns,
            sm: Client::new(&conf),
            prefix: unique_name("aws"),
            env,
            root,
        }
    }

    fn name(&self, n: &str) -> String {
        format!("{}/{n}", self.prefix)
    }

    async fn create_string(&self, n: &str, value: &str) -> String {
        self.sm
            .create_secret()
            .name(self.name(n))
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateSecret {n}: {e:?}"))
            .version_id
            .expect("a version id")
    }

    async fn create_binary(&self, n: &str, value: &[u8]) {
        self.sm
            .create_secret()
            .name(self.name(n))
            .secret_binary(Blob::new(value.to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateSecret {n}: {e:?}"));
    }

    async fn put_string(&self, n: &str, value: &str) -> String {
        self.sm
            .put_secret_value()
            .secret_id(self.name(n))
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutSecretValue {n}: {e:?}"))
            .version_id
            .expect("a version id")
    }

    fn operator(&self, endpoint: &str) -> OperatorSettings {
        OperatorSettings {
            aws: Some(operator::aws_settings(&self.env, endpoint)),
            min_refresh: REFRESH,
            ..OperatorSettings::default()
        }
    }

    fn config(&self, files: Vec<FileSpec>, endpoint: &str, on_change: OnChange) -> SidecarConfig {
        let mut files = files;
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let cfg = SidecarConfig {
            refresh: REFRESH,
            on_change,
            files,
            ..SidecarConfig::defaults(&self.ns, &self.operator(endpoint))
        };
        cfg.validate().expect("the test config is valid");
        cfg
    }

    /// Stores the injected pod for `cfg` and runs its sidecar (`run` or `once`) with the pod
    /// runner, with `env` added to the container's env.
    async fn start(&self, cfg: &SidecarConfig, cmd: &str, env: &[(String, String)]) -> SidecarPod {
        let mut extra_env = vec![(
            "HUSH_LOG".to_string(),
            "info,hush_sidecar=debug".to_string(),
        )];
        extra_env.extend(env.iter().cloned());
        SidecarPod::start(Launch {
            env: &self.env,
            client: &self.client,
            namespace: &self.ns,
            service_account: "app",
            cfg,
            command: cmd,
            extra_env,
        })
        .await
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn file(name: &str, source: &str, format: Format) -> FileSpec {
    FileSpec {
        name: name.into(),
        source: Some(SourceRef::parse(source).unwrap_or_else(|e| panic!("{source}: {e}"))),
        format,
        template: None,
        mode: 0o444,
    }
}

/// The environment of a sidecar that uses the SDK's default chain with moto's static test keys.
/// No profile or IMDS can interfere: HOME is the test's root and IMDS is disabled.
fn static_keys(fx: &Fixture) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
    ]
    .into_iter()
    .chain(isolated(fx))
    .collect()
}

fn isolated(fx: &Fixture) -> Vec<(String, String)> {
    vec![
        ("HOME".into(), fx.root.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        (
            "AWS_CONFIG_FILE".into(),
            fx.root.join("no-aws-config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            fx.root.join("no-aws-credentials").display().to_string(),
        ),
    ]
}

/// A loopback HTTP/1.1 proxy in front of moto that records every Secrets Manager operation sent
/// through it (from the `x-amz-target` header), and can answer every request with a throttling
/// error instead of forwarding it.
struct CallLog {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<(SystemTime, String)>>>,
    throttle: Arc<AtomicBool>,
}

const THROTTLED: &str = "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}";

impl CallLog {
    fn start(upstream: &str) -> CallLog {
        let target: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("moto endpoint is http://<ip>:<port>");
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let calls: Arc<Mutex<Vec<(SystemTime, String)>>> = Arc::default();
        let throttle = Arc::new(AtomicBool::new(false));
        let (c, th) = (calls.clone(), throttle.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(down) = conn else { continue };
                let Ok(up) = TcpStream::connect(target) else {
                    continue;
                };
                let (c, th) = (c.clone(), th.clone());
                let (mut down2, mut up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || forward_requests(down, up, &c, &th));
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up2, &mut down2);
                    let _ = down2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CallLog {
            addr,
            calls,
            throttle,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_throttle(&self, on: bool) {
        self.throttle.store(on, Ordering::SeqCst);
    }

    fn count(&self, op: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, o)| o == op)
            .count()
    }

    fn snapshot(&self) -> Vec<(SystemTime, String)> {
        self.calls.lock().unwrap().clone()
    }
}

/// Reads whole requests (headers plus `content-length` body) from the client, records their
/// operation, and forwards them, or answers them with a throttling error.
fn forward_requests(
    mut down: TcpStream,
    mut up: TcpStream,
    calls: &Mutex<Vec<(SystemTime, String)>>,
    throttle: &AtomicBool,
) {
    const TARGET: &str = "x-amz-target: secretsmanager.";
    let mut buf = [0u8; 16384];
    let mut pending: Vec<u8> = Vec::new();
    'conn: loop {
        let n = match down.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(head_end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = head_end + 4 + len;
            if pending.len() < total {
                break;
            }
            let op = head.lines().find_map(|l| l.strip_prefix(TARGET)).map(|op| {
                // Restore the operation's case from the raw bytes.
                let raw = String::from_utf8_lossy(&pending[..head_end]).to_string();
                raw.lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with(TARGET)
                            .then(|| l[TARGET.len()..].trim().to_string())
                    })
                    .unwrap_or_else(|| op.to_string())
            });
            if let Some(op) = &op {
                calls.lock().unwrap().push((SystemTime::now(), op.clone()));
            }
            let request: Vec<u8> = pending.drain(..total).collect();
            if op.is_some() && throttle.load(Ordering::SeqCst) {
                let resp = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-errortype: ThrottlingException\r\ncontent-length: {}\r\n\r\n{THROTTLED}",
                    THROTTLED.len()
                );
                if down.write_all(resp.as_bytes()).is_err() {
                    break 'conn;
                }
            } else if up.write_all(&request).is_err() {
                break 'conn;
            }
        }
    }
    let _ = up.shutdown(std::net::Shutdown::Write);
}

#[tokio::test]
async fn string_binary_and_json_secrets_become_files_byte_for_byte() {
    let fx = Fixture::new().await;
    let text = "line one\nüñíçødé \u{1F512}\r\ntrailing space \n";
    let binary: Vec<u8> = (0..=255u8).chain([0, 0, 255, 10, 13]).collect();
    let doc =
        "{\n  \"username\": \"app\",\n  \"password\": \"p@ss\\\"w0rd\",\n  \"port\": 5432\n}\n";
    fx.create_string("text", text).await;
    fx.create_binary("binary", &binary).await;
    fx.create_string("db", doc).await;
    fx.create_string("doc", doc).await;
    let v1 = fx.create_string("rotated", "version-one").await;
    fx.put_string("rotated", "version-two").await;

    let ep = fx.env.aws_endpoint.clone();
    let cfg = fx.config(
        vec![
            file("text", &format!("aws:{}", fx.name("text")), Format::Raw),
            file("binary", &format!("aws:{}", fx.name("binary")), Format::Raw),
            file(
                "db-password",
                &format!("aws:{}#password", fx.name("db")),
                Format::Raw,
            ),
            file(
                "db-port",
                &format!("aws:{}#port", fx.name("db")),
                Format::Raw,
            ),
            file("db-json", &format!("aws:{}", fx.name("db")), Format::Json),
            file("doc", &format!("aws:{}", fx.name("doc")), Format::Raw),
            file(
                "doc-user",
                &format!("aws:{}#username", fx.name("doc")),
                Format::Raw,
            ),
            file(
                "current",
                &format!("aws:{}", fx.name("rotated")),
                Format::Raw,
            ),
            file(
                "previous",
                &format!("aws:{}?stage=AWSPREVIOUS", fx.name("rotated")),
                Format::Raw,
            ),
            file(
                "pinned",
                &format!("aws:{}?version-id={v1}", fx.name("rotated")),
                Format::Raw,
            ),
        ],
        &ep,
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "once", &static_keys(&fx)).await;
    let st = sc.wait_exit().await;
    assert!(st.success(), "once failed: {st}; logs:\n{}", sc.logs());

    assert_eq!(sc.read("text").unwrap(), text.as_bytes());
    assert_eq!(sc.read("binary").unwrap(), binary);
    assert_eq!(sc.read("db-password").unwrap(), b"p@ss\"w0rd");
    assert_eq!(sc.read("db-port").unwrap(), b"5432");
    // The json format renders every top-level field of the JSON secret.
    let all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&sc.read("db-json").unwrap()).expect("the json file is JSON");
    assert_eq!(
        all.keys().map(String::as_str).collect::<Vec<_>>(),
        ["password", "port", "username"]
    );
    assert_eq!(all["password"], "p@ss\"w0rd");
    assert_eq!(all["username"], "app");
    assert!(
        all["port"] == "5432" || all["port"] == 5432,
        "{:?}",
        all["port"]
    );
    assert_eq!(sc.read("current").unwrap(), b"version-two");
    assert_eq!(sc.read("previous").unwrap(), b"version-one");
    assert_eq!(sc.read("pinned").unwrap(), b"version-one");
    // A raw file of a JSON secret is the document byte for byte, and #json-key still works on it.
    assert_eq!(sc.read("doc").unwrap(), doc.as_bytes());
    assert_eq!(sc.read("doc-user").unwrap(), b"app");
    let logs = sc.logs();
    for canary in ["p@ss", "version-one", "version-two", "trailing space"] {
        assert!(
            !logs.contains(canary),
            "a value leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn rotation_updates_the_file_within_one_interval_with_one_notification() {
    let fx = Fixture::new().await;
    fx.create_string("rotating", "before-rotation").await;
    fx.create_string("steady", "never-changes").await;
    let calls = CallLog::start(&fx.env.aws_endpoint);
    let (url, notified) = notification_listener().await;
    let cfg = fx.config(
        vec![
            file(
                "rotating",
                &format!("aws:{}", fx.name("rotating")),
                Format::Raw,
            ),
            file("steady", &format!("aws:{}", fx.name("steady")), Format::Raw),
        ],
        &calls.endpoint(),
        OnChange::Http { url },
    );
    let mut sc = fx.start(&cfg, "run", &static_keys(&fx)).await;
    sc.started().await;
    assert_eq!(sc.read("rotating").unwrap(), b"before-rotation");
    assert_eq!(
        notified.load(Ordering::SeqCst),
        0,
        "no notification for the first write"
    );

    // Let one unchanged cycle pass: it must not notify.
    let b0 = calls.count("BatchGetSecretValue");
    wait_for("an unchanged refresh cycle", || {
        (calls.count("BatchGetSecretValue") > b0).then_some(())
    })
    .await;

    // Rotation as moto allows it (RotateSecret needs a Lambda): a new AWSCURRENT version.
    let checks_before_put = calls.count("BatchGetSecretValue");
    fx.put_string("rotating", "after-rotation").await;
    wait_for("the rotated value on disk", || {
        (sc.read("rotating").as_deref() == Some(b"after-rotation".as_slice())).then_some(())
    })
    .await;
    let written_at = std::fs::metadata(sc.secrets().join("rotating"))
        .unwrap()
        .modified()
        .unwrap();
    // Wait for the next two checks, so any extra write or notification would have happened.
    wait_for("two more refresh cycles", || {
        (calls.count("BatchGetSecretValue") >= checks_before_put + 2).then_some(())
    })
    .await;
    let checks: Vec<SystemTime> = calls
        .snapshot()
        .into_iter()
        .filter(|(_, op)| op == "BatchGetSecretValue")
        .map(|(t, _)| t)
        .collect();
    // Within one interval: the file was written before the second check after the put.
    assert!(
        written_at < checks[checks_before_put + 1],
        "the rotated value was written only after a second refresh cycle"
    );
    assert_eq!(
        notified.load(Ordering::SeqCst),
        1,
        "one rotation must give exactly one notification; logs:\n{}",
        sc.logs()
    );
    assert_eq!(sc.read("steady").unwrap(), b"never-changes");
    // The first fetch and the changed value both came with batch calls: no GetSecretValue.
    assert_eq!(calls.count("GetSecretValue"), 0);
    let m = sc.metrics_text();
    assert_eq!(
        metric(&m, r#"hush_sidecar_file_updates_total{file="rotating"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"hush_sidecar_file_updates_total{file="steady"}"#),
        None,
        "{m}"
    );
}

#[tokio::test]
async fn a_deleted_secret_keeps_the_last_good_file_and_reports_the_error() {
    let fx = Fixture::new().await;
    fx.create_string("gone", "last-good-gone").await;
    fx.create_string("scheduled", "last-good-scheduled").await;
    fx.create_string("kept", "still-here").await;
    let cfg = fx.config(
        vec![
            file("gone", &format!("aws:{}", fx.name("gone")), Format::Raw),
            file(
                "scheduled",
                &format!("aws:{}", fx.name("scheduled")),
                Format::Raw,
            ),
            file("kept", &format!("aws:{}", fx.name("kept")), Format::Raw),
        ],
        &fx.env.aws_endpoint,
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "run", &static_keys(&fx)).await;
    sc.started().await;

    fx.sm
        .delete_secret()
        .secret_id(fx.name("gone"))
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("ForceDeleteWithoutRecovery");
    fx.sm
        .delete_secret()
        .secret_id(fx.name("scheduled"))
        .recovery_window_in_days(7)
        .send()
        .await
        .expect("scheduled deletion");

    let text = wait_for("both errors in /metrics", || {
        let m = sc.metrics_text();
        let gone = metric(
            &m,
            r#"hush_sidecar_errors_total{source="aws",file="gone",class="permanent"}"#,
        );
        let sched = metric(
            &m,
            r#"hush_sidecar_errors_total{source="aws",file="scheduled",class="permanent"}"#,
        );
        (gone.is_some_and(|v| v >= 1.0) && sched.is_some_and(|v| v >= 1.0)).then_some(m)
    })
    .await;
    assert_eq!(metric(&text, "hush_sidecar_healthy "), Some(0.0), "{text}");
    assert_eq!(
        metric(
            &text,
            r#"hush_sidecar_errors_total{source="aws",file="kept""#
        ),
        None,
        "{text}"
    );
    assert_eq!(sc.read("gone").unwrap(), b"last-good-gone");
    assert_eq!(sc.read("scheduled").unwrap(), b"last-good-scheduled");
    assert_eq!(sc.read("kept").unwrap(), b"still-here");
    let logs = sc.logs();
    assert!(
        logs.contains("ResourceNotFoundException") && logs.contains(&fx.name("gone")),
        "the log names the missing secret:\n{logs}"
    );
    assert!(
        logs.contains("scheduled for deletion") && logs.contains(&fx.name("scheduled")),
        "the log reports the scheduled deletion:\n{logs}"
    );
    assert!(
        !logs.contains("last-good"),
        "a value leaked into the logs:\n{logs}"
    );
}

#[tokio::test]
async fn web_identity_assumes_the_role_at_sts_with_a_projected_token() {
    let fx = Fixture::new().await;
    fx.create_string("irsa", "via-web-identity").await;
    // The injector adds the projected token for the `sts.amazonaws.com` audience, and
    // AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (from hush.dev/aws-role-arn); the pod runner
    // mints that token from the real kube-apiserver by TokenRequest. moto's
    // AssumeRoleWithWebIdentity accepts any token, so this proves the wiring (token file, role,
    // endpoint override reaching STS), not IAM's trust policy.
    let role = "arn:aws:iam::123456789012:role/hush-e2e-irsa";
    let session = unique_name("hush-irsa").replace('-', "_");
    let mut cfg = fx.config(
        vec![file(
            "irsa",
            &format!("aws:{}", fx.name("irsa")),
            Format::Raw,
        )],
        &fx.env.aws_endpoint,
        OnChange::None,
    );
    cfg.aws_role_arn = Some(role.to_string());
    cfg.validate().unwrap();
    // No static keys anywhere: the only way to sign the Secrets Manager call is the web identity.
    // The session name is made unique (over the injector's `hush-sidecar`) to find it in moto.
    let mut env = isolated(&fx);
    env.push(("AWS_ROLE_SESSION_NAME".into(), session.clone()));
    let mut sc = fx.start(&cfg, "once", &env).await;
    let st = sc.wait_exit().await;
    assert!(st.success(), "once failed: {st}; logs:\n{}", sc.logs());
    assert_eq!(sc.read("irsa").unwrap(), b"via-web-identity");
    assert_eq!(
        sc.run.env.get("AWS_ROLE_ARN").map(String::as_str),
        Some(role),
        "the injector passed the role from hush.dev/aws-role-arn"
    );
    let jwt = std::fs::read_to_string(sc.run.volume_path("hush-aws-token").join("token")).unwrap();
    assert!(jwt.len() > 100, "the projected token for STS");

    // moto's STS recorded the assumed role with our session name: the call went to the endpoint
    // override, not to sts.amazonaws.com.
    let data = http_get(
        fx.env
            .aws_endpoint
            .trim_start_matches("http://")
            .parse()
            .unwrap(),
        "/moto-api/data.json",
    );
    let body = data.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        body.contains(&format!("assumed-role/hush-e2e-irsa/{session}")),
        "moto's STS has no session {session}; logs:\n{}",
        sc.logs()
    );
    assert!(
        !sc.logs().contains(jwt.trim()),
        "the token leaked into the logs"
    );
}

#[tokio::test]
async fn a_refresh_of_25_unchanged_secrets_costs_at_most_2_calls() {
    let fx = Fixture::new().await;
    let mut files = Vec::new();
    for i in 0..25 {
        let n = format!("s{i:02}");
        fx.create_string(&n, &format!("value-{i}")).await;
        files.push(file(&n, &format!("aws:{}", fx.name(&n)), Format::Raw));
    }
    let calls = CallLog::start(&fx.env.aws_endpoint);
    let cfg = fx.config(files, &calls.endpoint(), OnChange::None);
    let mut sc = fx.start(&cfg, "run", &static_keys(&fx)).await;
    sc.started().await;
    let start = calls.snapshot().len();
    let first = calls.count("BatchGetSecretValue");
    assert_eq!(
        first, 2,
        "the first fetch reads 25 secrets in ⌈25/20⌉ = 2 calls"
    );
    assert_eq!(calls.count("GetSecretValue"), 0);

    // Three refresh cycles.
    wait_for("three refresh cycles", || {
        (calls.count("BatchGetSecretValue") >= first + 6).then_some(())
    })
    .await;
    // The last group may still be in progress, so only complete cycles are checked below.
    let seen = calls.snapshot();
    let after: Vec<(SystemTime, String)> = seen[start..].to_vec();
    // Group calls into cycles: calls of one cycle are back to back, cycles are REFRESH apart.
    let mut cycles: Vec<Vec<String>> = Vec::new();
    let mut last: Option<SystemTime> = None;
    for (t, op) in after {
        let gap = last.map(|l| t.duration_since(l).unwrap_or_default());
        if gap.is_none_or(|g| g > REFRESH / 2) {
            cycles.push(Vec::new());
        }
        cycles.last_mut().unwrap().push(op);
        last = Some(t);
    }
    assert!(cycles.len() >= 3, "{cycles:?}");
    for c in &cycles[..cycles.len() - 1] {
        assert_eq!(
            c,
            &["BatchGetSecretValue", "BatchGetSecretValue"],
            "an unchanged cycle of 25 secrets is ⌈25/20⌉ = 2 calls"
        );
    }
    assert_eq!(
        calls.count("GetSecretValue"),
        0,
        "nothing was fetched again"
    );
    assert_eq!(calls.count("DescribeSecret"), 0);
}

#[tokio::test]
async fn aws_api_calls_are_counted_in_metrics() {
    let fx = Fixture::new().await;
    let mut files = Vec::new();
    for i in 0..3 {
        let n = format!("m{i}");
        fx.create_string(&n, &format!("value-{i}")).await;
        files.push(file(&n, &format!("aws:{}", fx.name(&n)), Format::Raw));
    }
    let calls = CallLog::start(&fx.env.aws_endpoint);
    let cfg = fx.config(files, &calls.endpoint(), OnChange::None);
    let mut sc = fx.start(&cfg, "run", &static_keys(&fx)).await;
    sc.started().await;
    wait_for("one refresh cycle", || {
        (calls.count("BatchGetSecretValue") >= 2).then_some(())
    })
    .await;
    // The sidecar's own counter, as exported on /metrics, agrees with the wire: one batch for the
    // first fetch, one per cycle, and no single reads. The sidecar counts a call before sending
    // it, so the proxy having seen two means the counter already says at least two.
    let m = sc.metrics_text();
    let batches = metric(
        &m,
        r#"hush_sidecar_aws_api_calls_total{operation="BatchGetSecretValue"}"#,
    )
    .unwrap_or_else(|| {
        panic!(
            "hush_sidecar_aws_api_calls_total is not in /metrics (Metrics::new must register hush_sidecar::aws::api_calls()):\n{m}"
        )
    });
    assert!(batches >= 2.0, "{m}");
    assert_eq!(calls.count("GetSecretValue"), 0);
    assert_eq!(
        metric(
            &m,
            r#"hush_sidecar_aws_api_calls_total{operation="GetSecretValue"}"#
        )
        .unwrap_or(0.0),
        0.0,
        "{m}"
    );
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_and_the_cached_file_stays() {
    let fx = Fixture::new().await;
    fx.create_string("t", "cached-value").await;
    let calls = CallLog::start(&fx.env.aws_endpoint);
    let cfg = fx.config(
        vec![file("t", &format!("aws:{}", fx.name("t")), Format::Raw)],
        &calls.endpoint(),
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "run", &static_keys(&fx)).await;
    sc.started().await;

    calls.set_throttle(true);
    let before = calls.count("BatchGetSecretValue");
    let m = wait_for("a transient error in /metrics", || {
        let m = sc.metrics_text();
        metric(
            &m,
            r#"hush_sidecar_errors_total{source="aws",file="t",class="transient"}"#,
        )
        .is_some_and(|v| v >= 1.0)
        .then_some(m)
    })
    .await;
    // The SDK retried the throttled call before the cycle gave up (standard mode, 3 attempts).
    assert!(
        calls.count("BatchGetSecretValue") >= before + 3,
        "no retries on the wire: {:?}",
        calls.snapshot()
    );
    assert_eq!(
        metric(
            &m,
            r#"hush_sidecar_errors_total{source="aws",file="t",class="permanent"}"#
        ),
        None,
        "throttling is not permanent: {m}"
    );
    assert_eq!(sc.read("t").unwrap(), b"cached-value");
    assert!(sc.logs().contains("ThrottlingException"), "{}", sc.logs());

    // When AWS answers again, the next cycle picks up a change.
    fx.put_string("t", "after-throttling").await;
    calls.set_throttle(false);
    wait_for("the new value after throttling ends", || {
        (sc.read("t").as_deref() == Some(b"after-throttling".as_slice())).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_default_chain_uses_pod_identity_credentials_when_present() {
    let fx = Fixture::new().await;
    fx.create_string("podid", "via-pod-identity").await;
    // A stand-in for the EKS Pod Identity agent on loopback: it serves credentials only to a
    // request that carries the token from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.
    let auth_token = unique_name("pod-identity-token");
    let token_file = fx.root.join("pod-identity-token");
    std::fs::write(&token_file, &auth_token).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/v1/credentials",
        listener.local_addr().unwrap().port()
    );
    let served = Arc::new(AtomicUsize::new(0));
    let (s2, want) = (served.clone(), auth_token.clone());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
            let authorized =
                head.contains(&format!("authorization: {}", want.to_ascii_lowercase()));
            let (status, body) = if authorized {
                s2.fetch_add(1, Ordering::SeqCst);
                (
                    "200 OK",
                    r#"{"AccessKeyId":"AKIAPODIDENTITYTEST","SecretAccessKey":"pod-identity-secret","Token":"pod-identity-session","AccountId":"123456789012","Expiration":"2099-01-01T00:00:00Z"}"#,
                )
            } else {
                ("401 Unauthorized", r#"{"message":"missing token"}"#)
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    let cfg = fx.config(
        vec![file(
            "podid",
            &format!("aws:{}", fx.name("podid")),
            Format::Raw,
        )],
        &fx.env.aws_endpoint,
        OnChange::None,
    );
    let mut env = isolated(&fx);
    env.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), url));
    env.push((
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        token_file.display().to_string(),
    ));
    let mut sc = fx.start(&cfg, "once", &env).await;
    let st = sc.wait_exit().await;
    assert!(st.success(), "once failed: {st}; logs:\n{}", sc.logs());
    assert_eq!(sc.read("podid").unwrap(), b"via-pod-identity");
    assert!(
        served.load(Ordering::SeqCst) >= 1,
        "the credentials endpoint was not used"
    );
}

#[tokio::test]
async fn without_credentials_the_first_fetch_fails_with_the_fix() {
    let fx = Fixture::new().await;
    fx.create_string("nocreds", "unreachable-value").await;
    let cfg = fx.config(
        vec![file(
            "nocreds",
            &format!("aws:{}", fx.name("nocreds")),
            Format::Raw,
        )],
        &fx.env.aws_endpoint,
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "once", &isolated(&fx)).await;
    let st = sc.wait_exit().await;
    assert!(!st.success(), "once must fail without credentials");
    let logs = sc.logs();
    assert!(
        logs.contains("no AWS credentials") && logs.contains("hush.dev/aws-role-arn"),
        "the error says what is missing and how to fix it:\n{logs}"
    );
    assert!(sc.read("nocreds").is_none());
}

#[tokio::test]
async fn a_missing_json_key_names_the_key_and_the_secret_never_a_value() {
    let fx = Fixture::new().await;
    fx.create_string("cfg", r#"{"user":"app","password":"canary-json-pw"}"#)
        .await;
    let mut cfg = fx.config(
        vec![file(
            "pw",
            &format!("aws:{}#passwd", fx.name("cfg")),
            Format::Raw,
        )],
        &fx.env.aws_endpoint,
        OnChange::None,
    );
    cfg.operator.fetch_deadline = Duration::from_secs(10);
    let mut sc = fx.start(&cfg, "once", &static_keys(&fx)).await;
    let st = sc.wait_exit().await;
    assert!(!st.success(), "a missing key must fail the init container");
    let logs = sc.logs();
    let error = logs
        .lines()
        .find(|l| l.contains(r#"no field \"passwd\""#))
        .unwrap_or_else(|| panic!("no error names the key:\n{logs}"));
    assert!(
        error.contains(&fx.name("cfg")) && error.contains("password, user"),
        "the error names the secret and the keys it has: {error}"
    );
    assert!(
        !logs.contains("canary-json-pw"),
        "a value leaked into the logs:\n{logs}"
    );
    assert!(sc.read("pw").is_none(), "no file from a failed render");
}

/// Zeroization from socket to file, proven on the running process: a JSON secret (one plain key,
/// one PEM-like key whose escapes go through the JSON parser's scratch buffer) goes from A to B,
/// and after the files hold B, and two more cycles in which every BatchGetSecretValue brings the
/// whole value again, the sidecar's memory holds no copy of A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_no_copy_of_the_old_value_is_left_in_memory() {
    let fx = Fixture::new().await;
    let tag = unique_name("m").replace('-', "");
    let (plain_a, pem_a) = (format!("AWSPLAINA{tag}"), format!("AWSPEMA{tag}"));
    // B is much longer than A, so its buffers come from other size classes and cannot simply
    // overwrite A's in place: what removes A must be the wiping.
    let pad = "x".repeat(6000);
    let (plain_b, pem_b) = (format!("AWSPLAINB{tag}{pad}"), format!("AWSPEMB{tag}{pad}"));
    let value = |plain: &str, pem: &str| {
        serde_json::json!({
            "plain": plain,
            "pem": format!("-----BEGIN KEY-----\n{pem}\n-----END KEY-----\n"),
        })
        .to_string()
    };
    fx.create_string("mem", &value(&plain_a, &pem_a)).await;
    let calls = CallLog::start(&fx.env.aws_endpoint);
    let source = format!("aws:{}", fx.name("mem"));
    let cfg = fx.config(
        vec![
            file("plain", &format!("{source}#plain"), Format::Raw),
            file("all.json", &source, Format::Json),
            FileSpec {
                template: Some("{{ data.pem }}".into()),
                ..file("key.pem", &source, Format::Template)
            },
        ],
        &calls.endpoint(),
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "run", &static_keys(&fx)).await;
    sc.started().await;
    assert_eq!(sc.read("plain").unwrap(), plain_a.as_bytes());
    fx.put_string("mem", &value(&plain_b, &pem_b)).await;
    wait_for("rotation to B", || {
        let done = sc.read("plain").as_deref() == Some(plain_b.as_bytes())
            && sc
                .read_string("key.pem")
                .is_some_and(|k| k.contains(&pem_b));
        done.then_some(())
    })
    .await;
    let after = calls.count("BatchGetSecretValue");
    wait_for("two more refresh cycles", || {
        (calls.count("BatchGetSecretValue") >= after + 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    hush_tests::memscan::assert_no_copies(sc.pid(), &[&plain_a, &pem_a]);
    sc.signal(rustix::process::Signal::TERM);
    assert!(sc.wait_exit().await.success());
}
