//! End-to-end tests of `hush-sidecar` against the real OpenBao (TLS), PostgreSQL and kube-apiserver.
//! Each test stores an injected pod in the real apiserver (the annotations of its typed
//! `SidecarConfig`, through the injector's own `mutate`) and runs its `hush-sidecar` container from
//! the stored spec with the pod runner: UID 65532, no capabilities, `no_new_privs`, the secrets on
//! a real tmpfs, and Vault's kubernetes auth with the projected token that the runner mints by
//! TokenRequest for the spec's audience. The tests check what a user relies on: the files, their
//! modes, notifications, leases in PostgreSQL, behaviour during an outage, and that a canary value
//! never leaks.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hush_config::{
    FileSpec, Format, OnChange, OperatorSettings, SidecarConfig, SourceRef, VaultAuth,
};
use hush_tests::cmd::{bao_command, bao_ok, bao_stdin};
use hush_tests::env::{TestEnv, unique_name};
use hush_tests::harness::{
    failing_notification_listener, free_port, metric, notification_listener,
};
use hush_tests::sidecar_pod::{Launch, SidecarPod, probe_on, wait_for};
use hush_tests::{cluster, operator};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use rustix::process::Signal;

/// A namespace with the ServiceAccount `app`, a Vault policy, and a kubernetes-auth role bound to
/// that ServiceAccount for the `vault` audience.
struct Fixture {
    env: TestEnv,
    client: kube::Client,
    ns: String,
    role: String,
    /// KV prefix owned by this test: `secret/<prefix>/...`.
    prefix: String,
}

impl Fixture {
    async fn new(extra_policy: &str) -> Fixture {
        Fixture::with_token_ttl(extra_policy, "1h", None).await
    }

    async fn with_token_ttl(extra_policy: &str, ttl: &str, max_ttl: Option<&str>) -> Fixture {
        let env = TestEnv::load();
        let client = cluster::client(&env).await;
        let ns = cluster::namespace(&client, "sidecar", false).await;
        cluster::service_account(&client, &ns, "app").await;
        let role = unique_name("sc");
        let prefix = unique_name("kv");
        let policy = format!(
            r#"path "secret/data/{prefix}/*" {{ capabilities = ["read"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["read"] }}
path "secret/detailed-metadata/{prefix}/*" {{ capabilities = ["list"] }}
path "kv1/{prefix}/*" {{ capabilities = ["read"] }}
{extra_policy}"#
        );
        bao_stdin(&env, &["policy", "write", &role, "-"], &policy);
        bao_ok(
            &env,
            &[
                "write",
                &format!("auth/kubernetes/role/{role}"),
                "bound_service_account_names=app",
                &format!("bound_service_account_namespaces={ns}"),
                &format!("policies={role}"),
                "audience=vault",
                &format!("token_ttl={ttl}"),
                &format!("token_max_ttl={}", max_ttl.unwrap_or("0")),
            ],
        );
        Fixture {
            env,
            client,
            ns,
            role,
            prefix,
        }
    }

    fn kv_path(&self, name: &str) -> String {
        format!("secret/{}/{name}", self.prefix)
    }

    fn put(&self, name: &str, kv: &[(&str, &str)]) {
        let mut args = vec!["kv".to_string(), "put".to_string(), self.kv_path(name)];
        args.extend(kv.iter().map(|(k, v)| format!("{k}={v}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bao_ok(&self.env, &args);
    }

    fn operator(&self, vault_addr: &str) -> OperatorSettings {
        OperatorSettings {
            vault: Some(operator::vault_settings(&self.env, vault_addr)),
            min_refresh: Duration::from_secs(5),
            ..OperatorSettings::default()
        }
    }

    fn config(
        &self,
        files: Vec<FileSpec>,
        refresh_secs: u64,
        on_change: OnChange,
    ) -> SidecarConfig {
        SidecarConfig {
            role: Some(self.role.clone()),
            refresh: Duration::from_secs(refresh_secs),
            on_change,
            files,
            ..SidecarConfig::defaults(&self.ns, &self.operator(&self.env.vault_addr))
        }
    }

    /// Creates the credentials Secret `name` (`hush.dev/vault-auth-secret`) in the test's
    /// namespace; the injector mounts it into the sidecar only.
    async fn credentials_secret(&self, name: &str, data: &[(&str, &str)]) {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            string_data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// Stores the injected pod for `cfg` and runs its sidecar (`run` or `once`) with the pod
    /// runner.
    async fn start(
        &self,
        cfg: &SidecarConfig,
        cmd: &str,
        extra_env: &[(&str, &str)],
    ) -> SidecarPod {
        SidecarPod::start(Launch {
            env: &self.env,
            client: &self.client,
            namespace: &self.ns,
            service_account: "app",
            cfg,
            command: cmd,
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await
    }
}

fn file(name: &str, source: &str, mode: u32) -> FileSpec {
    FileSpec {
        name: name.into(),
        source: Some(SourceRef::parse(source).unwrap()),
        format: Format::Raw,
        template: None,
        mode,
    }
}

/// KV v1: a secret on the `kv1/` mount becomes a file, and a value written over it in place (v1
/// keeps no versions, so the sidecar reads the data each cycle) reaches the file with one
/// notification.
#[tokio::test]
async fn kv1_secret_becomes_a_file_and_follows_an_update_in_place() {
    let fx = Fixture::new("").await;
    let path = format!("kv1/{}/app", fx.prefix);
    bao_ok(&fx.env, &["write", &path, "password=v1-first"]);
    let (url, count) = notification_listener().await;
    let cfg = fx.config(
        vec![file("password", &format!("vault:{path}#password"), 0o400)],
        5,
        OnChange::Http { url },
    );
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    assert_eq!(sc.read_string("password").as_deref(), Some("v1-first"));
    bao_ok(&fx.env, &["write", &path, "password=v1-second"]);
    wait_for("the KV v1 update in the file", || {
        (sc.read_string("password").as_deref() == Some("v1-second")).then_some(())
    })
    .await;
    wait_for("one notification", || {
        (count.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success(), "logs:\n{}", sc.logs());
}

/// OpenBao's own audit log (`scripts/test-env` enables one): every request that reached it, as
/// (operation, path), from byte `offset` on.
fn audited_requests(env: &TestEnv, offset: u64) -> Vec<(String, String)> {
    use std::io::{Seek, SeekFrom};
    let log = env.vault_cacert.with_file_name("audit.log");
    let mut f = std::fs::File::open(&log).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; the test environment predates its audit log: run scripts/test-env down, then up",
            log.display()
        )
    });
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "request")
        .map(|v| {
            (
                v["request"]["operation"].as_str().unwrap_or("").to_string(),
                v["request"]["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The cheap refresh, counted on the wire by OpenBao itself: with nothing changed, a cycle sends
/// one request per directory (a `detailed-metadata` LIST, or the metadata of a directory's only
/// secret) and reads no secret data, so a regression to data reads (or to one request per secret)
/// fails here.
#[tokio::test]
async fn an_unchanged_cycle_sends_one_request_per_directory_and_reads_no_data() {
    let fx = Fixture::new("").await;
    fx.put("a/one", &[("v", "1")]);
    fx.put("a/two", &[("v", "2")]);
    fx.put("b/three", &[("v", "3")]);
    let files = ["a/one", "a/two", "b/three"]
        .iter()
        .map(|p| {
            let name = p.replace('/', "-");
            file(&name, &format!("vault:{}#v", fx.kv_path(p)), 0o400)
        })
        .collect();
    // A long interval: the test drives each cycle with SIGHUP.
    let cfg = fx.config(files, 600, OnChange::None);
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    let log = fx.env.vault_cacert.with_file_name("audit.log");
    let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let last_success = |sc: &SidecarPod| {
        metric(
            &sc.metrics_text(),
            "hush_sidecar_last_success_timestamp_seconds ",
        )
        .unwrap_or(0.0)
    };
    for _ in 0..3 {
        let before = last_success(&sc);
        // Timestamps are in seconds with fractions; make sure the next one differs.
        tokio::time::sleep(Duration::from_millis(20)).await;
        sc.signal(Signal::HUP);
        wait_for("a completed refresh cycle", || {
            (last_success(&sc) > before).then_some(())
        })
        .await;
    }
    let ours: Vec<(String, String)> = audited_requests(&fx.env, offset)
        .into_iter()
        .filter(|(_, path)| path.starts_with("secret/") && path.contains(&fx.prefix))
        .collect();
    let data_reads = ours
        .iter()
        .filter(|(_, p)| p.starts_with("secret/data/"))
        .count();
    assert_eq!(
        data_reads, 0,
        "no secret data read on unchanged cycles: {ours:?}"
    );
    // Directory a/ holds two secrets: one LIST of its detailed metadata checks both. Directory
    // b/ holds one: its metadata is read, also one request.
    let a_dir = format!("secret/detailed-metadata/{}/a/", fx.prefix);
    let b_meta = format!("secret/metadata/{}/b/three", fx.prefix);
    let count = |op: &str, path: &str| ours.iter().filter(|(o, p)| o == op && p == path).count();
    assert_eq!(
        count("list", &a_dir),
        3,
        "one LIST of a/ per cycle: {ours:?}"
    );
    assert_eq!(
        count("read", &b_meta),
        3,
        "one metadata read of b/three per cycle: {ours:?}"
    );
    assert_eq!(
        ours.len(),
        6,
        "one request per directory (2) per cycle (3), nothing else: {ours:?}"
    );
    assert_eq!(sc.read_string("b-three").as_deref(), Some("3"));
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success(), "logs:\n{}", sc.logs());
}

#[tokio::test]
async fn kv2_secret_becomes_a_file_and_a_new_version_updates_it_with_one_notification() {
    let fx = Fixture::new("").await;
    fx.put("app", &[("password", "first-pass"), ("user", "alice")]);
    let (url, count) = notification_listener().await;
    let cfg = fx.config(
        vec![
            file(
                "password",
                &format!("vault:{}#password", fx.kv_path("app")),
                0o444,
            ),
            file("user", &format!("vault:{}#user", fx.kv_path("app")), 0o400),
        ],
        5,
        OnChange::Http { url },
    );
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    // The startup probe, run from the stored spec as the kubelet runs it: it passes on this pod's
    // volumes, and holds back a pod whose sidecar has not written anything yet.
    assert!(
        sc.probe().await,
        "the probe passes once the files are written"
    );
    assert!(
        !probe_on(&fx.client, &sc.pod, BTreeMap::new()).await,
        "the probe must fail before the first fetch"
    );

    assert_eq!(sc.read_string("password").as_deref(), Some("first-pass"));
    assert_eq!(sc.read_string("user").as_deref(), Some("alice"));
    use std::os::unix::fs::PermissionsExt;
    let mode = |f: &str| {
        std::fs::metadata(sc.secrets().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("password"), 0o444);
    assert_eq!(mode("user"), 0o400);
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(sc.secrets().join("password")).unwrap();
        assert_eq!(
            meta.uid(),
            65532,
            "written by the non-root sidecar, no chown"
        );
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "no notification for the first write"
    );

    fx.put("app", &[("password", "second-pass"), ("user", "alice")]);
    // Picked up by the interval timer alone (no SIGHUP is sent). No bound on how long it took:
    // tests carry no timing thresholds on these shared machines (a stalled timer still fails
    // here, at wait_for's limit).
    wait_for("the new version on disk", || {
        (sc.read_string("password").as_deref() == Some("second-pass")).then_some(())
    })
    .await;
    wait_for("the notification", || {
        (count.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    // Two more unchanged refresh cycles: still exactly one notification.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "exactly one notification per update"
    );
    let m = sc.metrics_text();
    assert_eq!(metric(&m, "hush_sidecar_updates_total "), Some(2.0), "{m}");
    assert!(
        metric(
            &m,
            r#"hush_sidecar_fetches_total{source="vault",file="password"}"#
        )
        .is_some_and(|v| v >= 2.0),
        "{m}"
    );

    sc.signal(Signal::TERM);
    let st = sc.wait_exit().await;
    assert!(st.success(), "exit status {st}; logs:\n{}", sc.logs());
    assert_eq!(sc.read_string("password").as_deref(), Some("second-pass"));
}

fn pg_parts(env: &TestEnv) -> (String, String, String) {
    // postgres://user:password@host:port/db
    let rest = env.pg_dsn.strip_prefix("postgres://").unwrap();
    let (cred, _) = rest.split_once('@').unwrap();
    let (user, pass) = cred.split_once(':').unwrap();
    let (host, port) = env.pg_hostport.split_once(':').unwrap();
    let _ = user;
    (pass.to_string(), host.to_string(), port.to_string())
}

fn psql(env: &TestEnv, user: &str, pass: &str, sql: &str) -> Result<String, String> {
    let (_, host, port) = pg_parts(env);
    let out = Command::new("psql")
        .args([
            "-h", &host, "-p", &port, "-U", user, "-d", "postgres", "-tAc", sql,
        ])
        .env("PGPASSWORD", pass)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (Debian postgresql-client) must be installed");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// A database connection to the test PostgreSQL and a role issuing credentials for it.
fn configure_db_role(fx: &Fixture, db_role: &str, default_ttl: &str, max_ttl: &str) {
    let env = &fx.env;
    let (pg_pass, host, port) = pg_parts(env);
    let conn = unique_name("pg");
    bao_ok(
        env,
        &[
            "write",
            &format!("database/config/{conn}"),
            "plugin_name=postgresql-database-plugin",
            &format!(
                "connection_url=postgresql://{{{{username}}}}:{{{{password}}}}@{host}:{port}/postgres?sslmode=disable"
            ),
            "username=postgres",
            &format!("password={pg_pass}"),
            &format!("allowed_roles={db_role}"),
        ],
    );
    bao_ok(
        env,
        &[
            "write",
            &format!("database/roles/{db_role}"),
            &format!("db_name={conn}"),
            "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
            &format!("default_ttl={default_ttl}"),
            &format!("max_ttl={max_ttl}"),
        ],
    );
}

/// At-least-once notification: the app fails its first 3 POSTs (503); the sidecar retries with
/// backoff until one is delivered, and then stops.
#[tokio::test]
async fn a_failed_notification_is_retried_until_the_app_takes_it() {
    let fx = Fixture::new("").await;
    fx.put("app", &[("password", "one")]);
    let (url, posts, delivered) = failing_notification_listener(3).await;
    let cfg = fx.config(
        vec![file(
            "password",
            &format!("vault:{}#password", fx.kv_path("app")),
            0o400,
        )],
        5,
        OnChange::Http { url },
    );
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    fx.put("app", &[("password", "two")]);
    wait_for("the notification to be delivered", || {
        (delivered.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(sc.read_string("password").as_deref(), Some("two"));
    assert_eq!(
        posts.load(Ordering::SeqCst),
        4,
        "3 refused POSTs, then the one delivered"
    );
    let m = sc.metrics_text();
    assert_eq!(
        metric(&m, r#"hush_sidecar_notifications_total{outcome="failed"}"#),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"hush_sidecar_notifications_total{outcome="delivered"}"#
        ),
        Some(1.0),
        "{m}"
    );
    // Delivered means done: no more POSTs for that update on later cycles.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(posts.load(Ordering::SeqCst), 4, "no POST after delivery");
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success(), "logs:\n{}", sc.logs());
}

#[tokio::test]
async fn a_lease_at_max_ttl_is_replaced_before_it_expires() {
    let db_role = unique_name("dbm");
    let fx = Fixture::new(&format!(
        r#"path "database/creds/{db_role}" {{ capabilities = ["read"] }}
path "sys/leases/revoke" {{ capabilities = ["update"] }}"#
    ))
    .await;
    // Renewable, but only to 24 s in total: the sidecar must fetch new credentials before then.
    configure_db_role(&fx, &db_role, "12s", "24s");
    let (url, count) = notification_listener().await;
    let src = format!("vault:database/creds/{db_role}");
    let cfg = fx.config(
        vec![
            file("db-password", &format!("{src}#password"), 0o400),
            file("db-user", &format!("{src}#username"), 0o400),
        ],
        600,
        OnChange::Http { url },
    );
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    let first_user = sc.read_string("db-user").unwrap();
    let first_pass = sc.read_string("db-password").unwrap();
    let fetched_at = Instant::now();
    let (user, pass) = wait_for("new credentials before max_ttl", || {
        let u = sc.read_string("db-user")?;
        (u != first_user).then(|| (u, sc.read_string("db-password").unwrap()))
    })
    .await;
    assert!(
        fetched_at.elapsed() < Duration::from_secs(24),
        "replaced after the old lease had already expired"
    );
    // The notification follows the write: the reader can see the new files first.
    wait_for("the app's notification", || {
        (count.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    assert_eq!(psql(&fx.env, &user, &pass, "select 1").unwrap(), "1");
    // Lease hygiene: the replaced lease is revoked (after a grace for the app to switch: half its
    // remaining life, at most 60 s), so the old database user does not live on until its TTL.
    let revoked = r#"hush_sidecar_replaced_lease_revocations_total{outcome="revoked"}"#;
    wait_for("the replaced lease's revocation", || {
        metric(&sc.metrics_text(), revoked).filter(|v| *v >= 1.0)
    })
    .await;
    let old = psql(&fx.env, &first_user, &first_pass, "select 1");
    assert!(old.is_err(), "the replaced user can still log in: {old:?}");
    assert_eq!(
        psql(&fx.env, &user, &pass, "select 1").unwrap(),
        "1",
        "the new user still works"
    );
    // The audit trail: the new credentials are a re-fetch because of the lease, and the old lease
    // (a different hash) is revoked as replaced.
    let records = audit_records(&sc.logs());
    let lease_of = |event: &str, reason: &str| {
        records
            .iter()
            .find(|r| r["event"] == event && r["reason"] == reason && r["outcome"] == "ok")
            .and_then(|r| r["lease"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {event} ({reason}) record in {records:?}"))
    };
    let first = records
        .iter()
        .find(|r| r["event"] == "fetch")
        .and_then(|r| r["lease"].as_str())
        .unwrap_or_else(|| panic!("no fetch record in {records:?}"));
    let second = lease_of("refetch", "lease");
    assert_ne!(first, second, "a new lease");
    assert_eq!(
        lease_of("revoke", "replaced"),
        first,
        "the old lease is revoked"
    );
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success(), "logs:\n{}", sc.logs());
}

#[tokio::test]
async fn dynamic_database_credentials_connect_are_renewed_and_revoked_on_sigterm() {
    let db_role = unique_name("dbr");
    let fx = Fixture::new(&format!(
        r#"path "database/creds/{db_role}" {{ capabilities = ["read"] }}"#
    ))
    .await;
    let env = &fx.env;
    configure_db_role(&fx, &db_role, "15s", "10m");
    let src = format!("vault:database/creds/{db_role}");
    let cfg = fx.config(
        vec![
            file("db-password", &format!("{src}#password"), 0o400),
            file("db-user", &format!("{src}#username"), 0o400),
        ],
        30,
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    let user = sc.read_string("db-user").unwrap();
    let pass = sc.read_string("db-password").unwrap();
    assert!(!user.is_empty() && !pass.is_empty());
    assert_eq!(psql(env, &user, &pass, "select 1").unwrap(), "1");

    // The 15 s lease is renewed (at about 10 s): wait for two renewals, then log in again after
    // the original lease would have ended.
    wait_for("two lease renewals", || {
        metric(&sc.metrics_text(), "hush_sidecar_lease_renewals_total ").filter(|v| *v >= 2.0)
    })
    .await;
    assert_eq!(
        sc.read_string("db-user").as_deref(),
        Some(user.as_str()),
        "renewal keeps the same credentials"
    );
    assert_eq!(
        psql(env, &user, &pass, "select 1").unwrap(),
        "1",
        "the credentials still work after the first lease period"
    );
    let m = sc.metrics_text();
    assert!(
        metric(
            &m,
            r#"hush_sidecar_lease_ttl_remaining_seconds{file="db-user"}"#
        )
        .is_some_and(|v| v > 0.0),
        "{m}"
    );

    sc.signal(Signal::TERM);
    let st = sc.wait_exit().await;
    assert!(st.success(), "exit status {st}; logs:\n{}", sc.logs());
    let (pg_pass, _, _) = pg_parts(env);
    let left = psql(
        env,
        "postgres",
        &pg_pass,
        &format!("select count(*) from pg_roles where rolname = '{user}'"),
    )
    .unwrap();
    assert_eq!(left, "0", "the role is revoked in PostgreSQL after SIGTERM");
}

/// A loopback TCP proxy to OpenBao that the test can cut off and restore.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let up2 = up.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let up3 = up2.clone();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let up4 = up3.clone();
                    std::thread::spawn(move || {
                        from.set_read_timeout(Some(Duration::from_millis(200))).ok();
                        let mut buf = [0u8; 16384];
                        loop {
                            if !up4.load(Ordering::SeqCst) {
                                break;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = from.shutdown(std::net::Shutdown::Both);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, up }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

fn vault_socket(env: &TestEnv) -> SocketAddr {
    let hostport = env
        .vault_addr
        .strip_prefix("https://")
        .unwrap()
        .trim_end_matches('/');
    hostport.parse().expect("VAULT_ADDR is https://<ip>:<port>")
}

#[tokio::test]
async fn an_outage_keeps_the_files_shows_errors_and_recovers() {
    let fx = Fixture::new("").await;
    fx.put("svc", &[("token", "before-outage")]);
    let proxy = Proxy::start(vault_socket(&fx.env));
    let mut cfg = fx.config(
        vec![file(
            "token",
            &format!("vault:{}#token", fx.kv_path("svc")),
            0o444,
        )],
        5,
        OnChange::None,
    );
    cfg.operator = fx.operator(&format!("https://{}", proxy.addr));
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    assert_eq!(sc.read_string("token").as_deref(), Some("before-outage"));
    let h = sc.healthz();
    assert!(h.starts_with("HTTP/1.1 200") && h.contains("ok: "), "{h}");

    proxy.set_up(false);
    fx.put("svc", &[("token", "during-outage")]);
    sc.signal(Signal::HUP);
    let errors = r#"hush_sidecar_errors_total{source="vault",file="token",class="transient"}"#;
    wait_for("a transient error in /metrics", || {
        metric(&sc.metrics_text(), errors).filter(|v| *v >= 1.0)
    })
    .await;
    let m = sc.metrics_text();
    assert_eq!(metric(&m, "hush_sidecar_healthy "), Some(0.0), "{m}");
    assert_eq!(
        sc.read_string("token").as_deref(),
        Some("before-outage"),
        "the last good file stays during the outage"
    );
    // Honest health: once the last complete refresh is older than 3 intervals (at least 15 s),
    // /healthz says stale; the process keeps running and keeps the files (no probe uses it).
    let stale = wait_for("/healthz to report stale", || {
        let h = sc.healthz();
        h.starts_with("HTTP/1.1 503").then_some(h)
    })
    .await;
    assert!(
        stale.contains("stale: the last complete refresh was"),
        "{stale}"
    );
    assert_eq!(sc.read_string("token").as_deref(), Some("before-outage"));

    proxy.set_up(true);
    wait_for("recovery after the outage", || {
        (sc.read_string("token").as_deref() == Some("during-outage")).then_some(())
    })
    .await;
    wait_for("healthy again", || {
        metric(&sc.metrics_text(), "hush_sidecar_healthy ").filter(|v| *v == 1.0)
    })
    .await;
    let h = sc.healthz();
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success(), "logs:\n{}", sc.logs());
}

#[tokio::test]
async fn a_reader_never_sees_a_mixed_set_during_100_rotations() {
    let fx = Fixture::new("").await;
    // Two files from the same secret; each rotation writes the generation into both, padded so a
    // partial write would show as a short file.
    let pad = "x".repeat(16 * 1024);
    let value = |g: usize| format!("{g:06}-{pad}");
    fx.put("pair", &[("a", &value(0)), ("b", &value(0))]);
    let (url, count) = notification_listener().await;
    let cfg = fx.config(
        vec![
            file("a", &format!("vault:{}#a", fx.kv_path("pair")), 0o444),
            file("b", &format!("vault:{}#b", fx.kv_path("pair")), 0o444),
        ],
        600,
        OnChange::Http { url },
    );
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;

    let stop = Arc::new(AtomicBool::new(false));
    let secrets = sc.secrets();
    let expected_len = value(0).len();
    let stop2 = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut reads = 0usize;
        let mut seen = std::collections::BTreeSet::new();
        while !stop2.load(Ordering::SeqCst) {
            // Resolve ..data once, then read both files from that one version, as an app that
            // follows the AtomicWriter contract does.
            let Ok(target) = std::fs::read_link(secrets.join("..data")) else {
                continue;
            };
            let dir = secrets.join(target);
            let (Ok(a), Ok(b)) = (
                std::fs::read_to_string(dir.join("a")),
                std::fs::read_to_string(dir.join("b")),
            ) else {
                // The old version was removed after the swap: read again.
                continue;
            };
            assert_eq!(a.len(), expected_len, "partial file a");
            assert_eq!(b.len(), expected_len, "partial file b");
            assert_eq!(a[..6], b[..6], "mixed set: a and b from different versions");
            // The per-file symlinks always resolve to a complete file too.
            if let Ok(x) = std::fs::read_to_string(secrets.join("a")) {
                assert_eq!(x.len(), expected_len, "partial file through the symlink");
            }
            seen.insert(a[..6].to_string());
            reads += 1;
        }
        (reads, seen.len())
    });

    for g in 1..=100 {
        fx.put("pair", &[("a", &value(g)), ("b", &value(g))]);
        sc.signal(Signal::HUP);
        wait_for("rotation", || {
            (count.load(Ordering::SeqCst) >= g).then_some(())
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let (reads, versions) = reader.join().expect("reader saw a mixed or partial set");
    assert!(reads > 100, "the reader ran ({reads} reads)");
    assert!(versions > 10, "the reader saw many versions ({versions})");
    assert_eq!(
        count.load(Ordering::SeqCst),
        100,
        "one notification per rotation"
    );
    assert_eq!(sc.read_string("a").unwrap()[..6], *"000100");
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success());
}

#[tokio::test]
async fn the_token_is_renewed_and_replaced_before_its_max_ttl() {
    // A 9 s token that can live 20 s at most: renewed at about 6 s, then a fresh login before
    // 20 s. After 30 s the sidecar still reads with a valid token.
    let fx = Fixture::with_token_ttl("", "9s", Some("20s")).await;
    fx.put("ttl", &[("v", "one")]);
    let cfg = fx.config(
        vec![file("v", &format!("vault:{}#v", fx.kv_path("ttl")), 0o444)],
        600,
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    let started = Instant::now();
    wait_for("renewals and a fresh login", || {
        metric(&sc.metrics_text(), "hush_sidecar_token_renewals_total ").filter(|v| *v >= 3.0)
    })
    .await;
    while started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    fx.put("ttl", &[("v", "two")]);
    sc.signal(Signal::HUP);
    wait_for("a read with the current token", || {
        (sc.read_string("v").as_deref() == Some("two")).then_some(())
    })
    .await;
    let logs = sc.logs();
    assert!(
        logs.matches("vault login succeeded").count() >= 2,
        "a fresh login replaced the token before its max TTL:\n{logs}"
    );
    assert!(
        !logs.contains("no longer valid"),
        "the token never expired under the sidecar:\n{logs}"
    );
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success());
}

#[tokio::test]
async fn approle_credentials_come_from_the_mounted_secret() {
    let fx = Fixture::new("").await;
    fx.put("approle", &[("v", "via-approle")]);
    let approle = unique_name("ar");
    bao_ok(
        &fx.env,
        &[
            "write",
            &format!("auth/approle/role/{approle}"),
            &format!("token_policies={}", fx.role),
            "token_ttl=1h",
        ],
    );
    let role_id = bao_ok(
        &fx.env,
        &[
            "read",
            "-field=role_id",
            &format!("auth/approle/role/{approle}/role-id"),
        ],
    );
    let secret_id = bao_ok(
        &fx.env,
        &[
            "write",
            "-f",
            "-field=secret_id",
            &format!("auth/approle/role/{approle}/secret-id"),
        ],
    );
    fx.credentials_secret(
        "app-vault-creds",
        &[("role_id", role_id.trim()), ("secret_id", secret_id.trim())],
    )
    .await;
    let mut cfg = fx.config(
        vec![file(
            "v",
            &format!("vault:{}#v", fx.kv_path("approle")),
            0o444,
        )],
        600,
        OnChange::None,
    );
    cfg.auth = VaultAuth::AppRole;
    cfg.role = None;
    cfg.credentials_secret = Some("app-vault-creds".into());
    let mut sc = fx.start(&cfg, "once", &[]).await;
    let st = sc.wait_exit().await;
    assert!(st.success(), "logs:\n{}", sc.logs());
    assert_eq!(sc.read_string("v").as_deref(), Some("via-approle"));
    let logs = sc.logs();
    assert!(
        !logs.contains(secret_id.trim()),
        "the secret_id leaked into the logs"
    );
}

/// Vault Enterprise / OpenBao namespaces: a pod with `hush.dev/vault-namespace` (on the operator's
/// allowlist) logs in and reads inside that namespace. The same path in the root namespace holds
/// another value, so a request that went to the wrong namespace fails the test.
#[tokio::test]
async fn a_pod_reads_inside_its_vault_namespace() {
    let fx = Fixture::new("").await;
    fx.put("shared", &[("v", "root-value")]);
    let ns = unique_name("vns");
    let in_ns = format!("-namespace={ns}");
    bao_ok(&fx.env, &["namespace", "create", &ns]);
    bao_ok(
        &fx.env,
        &["secrets", "enable", &in_ns, "-path=secret", "kv-v2"],
    );
    bao_ok(
        &fx.env,
        &[
            "kv",
            "put",
            &in_ns,
            &fx.kv_path("shared"),
            "v=namespace-value",
        ],
    );
    let prefix = &fx.prefix;
    let policy = format!(
        r#"path "secret/data/{prefix}/*" {{ capabilities = ["read"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["read"] }}
path "secret/detailed-metadata/{prefix}/*" {{ capabilities = ["list"] }}"#
    );
    bao_stdin(
        &fx.env,
        &["policy", "write", &in_ns, "reader", "-"],
        &policy,
    );
    let token = bao_ok(
        &fx.env,
        &[
            "token",
            "create",
            &in_ns,
            "-policy=reader",
            "-ttl=1h",
            "-field=token",
        ],
    );
    fx.credentials_secret("app-vault-token", &[("token", token.trim())])
        .await;
    let mut cfg = fx.config(
        vec![file(
            "v",
            &format!("vault:{}#v", fx.kv_path("shared")),
            0o444,
        )],
        600,
        OnChange::None,
    );
    cfg.auth = VaultAuth::Token;
    cfg.role = None;
    cfg.credentials_secret = Some("app-vault-token".into());
    cfg.vault_namespace = Some(ns.clone());
    cfg.operator
        .vault
        .as_mut()
        .unwrap()
        .allowed_namespaces
        .push(ns.clone());
    cfg.validate().expect("the test config is valid");
    let mut sc = fx.start(&cfg, "once", &[]).await;
    let st = sc.wait_exit().await;
    assert!(st.success(), "logs:\n{}", sc.logs());
    assert_eq!(sc.read_string("v").as_deref(), Some("namespace-value"));
}

#[tokio::test]
async fn a_revoked_token_leads_to_a_fresh_login() {
    let fx = Fixture::new("").await;
    fx.put("relogin", &[("v", "one")]);
    let cfg = fx.config(
        vec![file(
            "v",
            &format!("vault:{}#v", fx.kv_path("relogin")),
            0o444,
        )],
        600,
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    // Find the sidecar's token by its policy (this test's role) and revoke it behind its back.
    let accessors: serde_json::Value = serde_json::from_str(&bao_ok(
        &fx.env,
        &["list", "-format=json", "auth/token/accessors"],
    ))
    .unwrap();
    let mut revoked = 0;
    for a in accessors.as_array().unwrap() {
        let a = a.as_str().unwrap();
        let Ok(out) = bao_command(&fx.env)
            .args(["token", "lookup", "-format=json", "-accessor", a])
            .output()
        else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            continue;
        };
        let ours = v["data"]["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x.as_str() == Some(fx.role.as_str())));
        if ours {
            bao_ok(&fx.env, &["token", "revoke", "-accessor", a]);
            revoked += 1;
        }
    }
    assert_eq!(revoked, 1, "exactly one token belongs to this sidecar");
    fx.put("relogin", &[("v", "two")]);
    sc.signal(Signal::HUP);
    wait_for("the update after a fresh login", || {
        (sc.read_string("v").as_deref() == Some("two")).then_some(())
    })
    .await;
    assert!(
        sc.logs().contains("logging in again"),
        "logs:\n{}",
        sc.logs()
    );
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success());
}

#[tokio::test]
async fn a_secret_deleted_upstream_keeps_the_last_good_file_and_reports_the_error() {
    let fx = Fixture::new("").await;
    // Two secrets in one directory: the sidecar checks both with one detailed-metadata listing.
    fx.put("gone", &[("key", "last-good")]);
    fx.put("stays", &[("key", "v1")]);
    let cfg = fx.config(
        vec![
            file("key", &format!("vault:{}#key", fx.kv_path("gone")), 0o444),
            file(
                "other",
                &format!("vault:{}#key", fx.kv_path("stays")),
                0o444,
            ),
        ],
        5,
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    bao_ok(&fx.env, &["kv", "metadata", "delete", &fx.kv_path("gone")]);
    fx.put("stays", &[("key", "v2")]);
    sc.signal(Signal::HUP);
    let errors = r#"hush_sidecar_errors_total{source="vault",file="key",class="permanent"}"#;
    wait_for("a permanent error in /metrics", || {
        metric(&sc.metrics_text(), errors).filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(sc.read_string("key").as_deref(), Some("last-good"));
    wait_for("the other secret's update despite the error", || {
        (sc.read_string("other").as_deref() == Some("v2")).then_some(())
    })
    .await;
    let m = sc.metrics_text();
    assert_eq!(
        metric(
            &m,
            r#"hush_sidecar_errors_total{source="vault",file="other""#
        ),
        None,
        "only the deleted secret's file reports an error:\n{m}"
    );
    let logs = sc.logs();
    assert!(
        logs.contains("does not exist"),
        "the log names the failure:\n{logs}"
    );
    assert!(!logs.contains("last-good"));
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success());
}

#[tokio::test]
async fn once_writes_and_exits_and_fails_clearly_when_vault_is_down() {
    let fx = Fixture::new("").await;
    fx.put("init", &[("v", "init-value")]);
    let cfg = fx.config(
        vec![file("v", &format!("vault:{}#v", fx.kv_path("init")), 0o444)],
        5,
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "once", &[]).await;
    let st = sc.wait_exit().await;
    assert!(st.success(), "logs:\n{}", sc.logs());
    assert_eq!(sc.read_string("v").as_deref(), Some("init-value"));

    // Nothing listens on this port: every attempt fails until the deadline.
    let mut down = cfg.clone();
    down.operator = fx.operator(&format!("https://127.0.0.1:{}", free_port()));
    down.operator.fetch_deadline = Duration::from_secs(3);
    let mut sc = fx.start(&down, "once", &[]).await;
    let st = sc.wait_exit().await;
    assert!(!st.success(), "once must fail when Vault is down");
    let logs = sc.logs();
    assert!(
        logs.contains("did not finish within 3 seconds") && logs.contains("last error"),
        "a clear message:\n{logs}"
    );
}

#[tokio::test]
async fn a_canary_never_appears_in_logs_metrics_or_proc() {
    let fx = Fixture::new("").await;
    let canary = format!("CANARY-{}", unique_name("c"));
    fx.put("canary", &[("value", &canary), ("other", "x")]);
    let (url, _count) = notification_listener().await;
    let cfg = fx.config(
        vec![
            file(
                "canary",
                &format!("vault:{}#value", fx.kv_path("canary")),
                0o444,
            ),
            FileSpec {
                name: "canary.json".into(),
                source: Some(SourceRef::parse(&format!("vault:{}", fx.kv_path("canary"))).unwrap()),
                format: Format::Json,
                template: None,
                mode: 0o444,
            },
        ],
        5,
        OnChange::Http { url },
    );
    let mut sc = fx.start(&cfg, "run", &[("HUSH_LOG", "trace")]).await;
    sc.started().await;
    assert_eq!(sc.read_string("canary").as_deref(), Some(canary.as_str()));
    // A rotation at trace level.
    let canary2 = format!("{canary}-2");
    fx.put("canary", &[("value", &canary2), ("other", "x")]);
    sc.signal(Signal::HUP);
    wait_for("rotation", || {
        (sc.read_string("canary").as_deref() == Some(canary2.as_str())).then_some(())
    })
    .await;
    let metrics = sc.metrics_text();
    // The test runs as root (the pod runner needs it), so it can read the non-dumpable
    // sidecar's environ; an empty read would make the check below vacuous.
    let environ = std::fs::read(format!("/proc/{}/environ", sc.pid())).unwrap();
    assert!(
        String::from_utf8_lossy(&environ).contains("HUSH_CONFIG="),
        "read the sidecar's real environ"
    );
    let jwt = std::fs::read_to_string(sc.vault_token_file()).unwrap();
    assert!(
        jwt.len() > 100,
        "the projected token the sidecar logged in with"
    );
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success());
    let logs = sc.logs();
    assert!(logs.contains("TRACE"), "the sidecar ran at trace level");
    // Panic output goes to the same stderr: there must be none (and the panic hook withholds
    // formatted panic messages anyway; see hush_sidecar::hardening).
    assert!(!logs.contains("panicked"), "the sidecar panicked:\n{logs}");
    for (what, text) in [
        ("logs", logs.as_bytes()),
        ("metrics", metrics.as_bytes()),
        ("/proc/<pid>/environ", environ.as_slice()),
    ] {
        let s = String::from_utf8_lossy(text);
        assert!(!s.contains("CANARY-"), "the canary leaked into {what}");
        assert!(
            !s.contains(jwt.trim()),
            "the service-account token leaked into {what}"
        );
        assert!(
            !s.to_ascii_lowercase().contains("x-vault-token"),
            "request headers (the Vault token) leaked into {what}"
        );
    }
}

/// `on-change: signal:HUP:<process>`: the injector shares the process namespace and runs the
/// sidecar as the app's user, so the sidecar (no capabilities) may signal the app. The app runs
/// from the same stored spec with the pod's shared volumes, as a copy of `/bin/sh` under a unique
/// name that traps SIGHUP and prints a line for each one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_notification_reaches_the_app_once_per_update() {
    use hush_config::Signal as HushSignal;
    use hush_tests::pod_runner::{RunSpec, run_container};
    use std::os::unix::fs::MetadataExt;

    let fx = Fixture::new("").await;
    fx.put("sig", &[("v", "one")]);
    // `comm` holds at most 15 characters.
    let process = format!("app{}", &unique_name("").replace('-', "")[..10]);
    let dir = std::env::temp_dir().join(unique_name("hush-sig"));
    std::fs::create_dir_all(&dir).unwrap();
    let shell = dir.join(&process);
    std::fs::copy("/bin/sh", &shell).unwrap();
    let mut cfg = fx.config(
        vec![file("v", &format!("vault:{}#v", fx.kv_path("sig")), 0o444)],
        600,
        OnChange::Signal {
            signal: HushSignal::Hup,
            process: process.clone(),
        },
    );
    cfg.operator.allow_signal = true;
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    let spec = sc.pod.spec.as_ref().unwrap();
    assert_eq!(spec.share_process_namespace, Some(true));
    assert_eq!(
        std::fs::metadata(sc.secrets().join("v")).unwrap().uid(),
        hush_tests::sidecar_pod::APP_UID,
        "the sidecar ran as the app's user"
    );

    let app = run_container(
        &fx.client,
        &sc.pod,
        RunSpec {
            container: "app".into(),
            // A shell cannot trap a signal that was ignored when it started (POSIX), and a test
            // run under `nohup` (or any parent that ignores SIGHUP) passes SIG_IGN down to every
            // process it spawns: `env --default-signal=HUP` gives the app the default back, as a
            // container runtime does.
            command_override: Some(vec![
                "/usr/bin/env".into(),
                "--default-signal=HUP".into(),
                shell.display().to_string(),
                "-c".into(),
                "trap 'echo HUP-RECEIVED' HUP; echo READY; while :; do sleep 0.2; done".into(),
            ]),
            shared_volumes: sc.run.volumes.clone(),
            ..RunSpec::default()
        },
    )
    .await;
    wait_for("the app to start", || {
        app.logs().contains("READY").then_some(())
    })
    .await;
    let hups =
        |app: &hush_tests::pod_runner::RunningContainer| app.logs().matches("HUP-RECEIVED").count();
    assert_eq!(hups(&app), 0, "no signal for the first write");

    fx.put("sig", &[("v", "two")]);
    sc.signal(Signal::HUP);
    let got = tokio::time::timeout(hush_tests::sidecar_pod::PATIENCE, async {
        while hups(&app) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        got.is_ok(),
        "the app got no SIGHUP; file v: {:?}\nsidecar logs:\n{}\napp logs:\n{}",
        sc.read_string("v"),
        sc.logs(),
        app.logs()
    );
    assert_eq!(sc.read_string("v").as_deref(), Some("two"));
    // An unchanged refresh sends nothing.
    let cycles = || metric(&sc.metrics_text(), "hush_sidecar_refresh_cycles_total ");
    let before = cycles().expect("the refresh cycle counter");
    sc.signal(Signal::HUP);
    wait_for("an unchanged refresh cycle", || {
        cycles().filter(|v| *v > before)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hups(&app),
        1,
        "exactly one signal per update:\n{}",
        sc.logs()
    );
    drop(app);
    assert!(sc.terminate().await.success(), "logs:\n{}", sc.logs());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Zeroization from socket to file, proven on the running process: a KV v2 secret goes from A to
/// B (a plain field, and a PEM-like field whose JSON escapes go through the parser's scratch
/// buffer, rendered raw, as JSON and by a template), and once the files hold B the sidecar's
/// memory (every readable mapping: heap, stacks, TLS and HTTP buffers) holds no copy of A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_no_copy_of_the_old_value_is_left_in_memory() {
    let fx = Fixture::new("").await;
    let tag = unique_name("m").replace('-', "");
    let (plain_a, pem_a) = (format!("PLAINA{tag}"), format!("PEMA{tag}"));
    // B is much longer than A, so its buffers come from other size classes and cannot simply
    // overwrite A's in place: what removes A must be the wiping.
    let pad = "x".repeat(6000);
    let (plain_b, pem_b) = (format!("PLAINB{tag}{pad}"), format!("PEMB{tag}{pad}"));
    let pem = |body: &str| format!("-----BEGIN KEY-----\n{body}\n-----END KEY-----\n");
    fx.put("mem", &[("plain", &plain_a), ("pem", &pem(&pem_a))]);
    let source = format!("vault:{}", fx.kv_path("mem"));
    let cfg = fx.config(
        vec![
            FileSpec {
                name: "all.json".into(),
                source: Some(SourceRef::parse(&source).unwrap()),
                format: Format::Json,
                template: None,
                mode: 0o444,
            },
            FileSpec {
                name: "key.pem".into(),
                source: Some(SourceRef::parse(&source).unwrap()),
                format: Format::Template,
                template: Some("{{ data.pem }}".into()),
                mode: 0o444,
            },
            file("plain", &format!("{source}#plain"), 0o444),
        ],
        5,
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "run", &[]).await;
    sc.started().await;
    assert_eq!(sc.read_string("plain").as_deref(), Some(plain_a.as_str()));
    fx.put("mem", &[("plain", &plain_b), ("pem", &pem(&pem_b))]);
    sc.signal(Signal::HUP);
    wait_for("rotation to B", || {
        let done = sc.read_string("plain").as_deref() == Some(plain_b.as_str())
            && sc
                .read_string("key.pem")
                .is_some_and(|k| k.contains(&pem_b))
            && sc
                .read_string("all.json")
                .is_some_and(|j| j.contains(&plain_b));
        done.then_some(())
    })
    .await;
    hush_tests::memscan::assert_no_copies(sc.pid(), &[&plain_a, &pem_a]);
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success());
}

/// The audit records (docs/audit.md) in what the sidecar printed: every line that is a
/// `hush.audit/v1` JSON object. A line that starts like a record but does not parse fails the test:
/// records are whole lines, never interleaved with logs.
fn audit_records(output: &str) -> Vec<serde_json::Value> {
    output
        .lines()
        .filter(|l| l.starts_with("{\"schema\":"))
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            assert_eq!(v["schema"], "hush.audit/v1", "{l}");
            v
        })
        .collect()
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of `s`, computed by coreutils rather than
/// by the code under test.
fn sha256_prefix(s: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    format!("sha256:{}", &String::from_utf8_lossy(&out.stdout)[..16])
}

/// The full lease ids Vault holds for `database/creds/<role>`.
fn lease_ids(env: &TestEnv, db_role: &str) -> Vec<String> {
    let prefix = format!("database/creds/{db_role}/");
    let out = bao_ok(
        env,
        &[
            "list",
            "-format=json",
            &format!("sys/leases/lookup/{prefix}"),
        ],
    );
    let keys: Vec<String> = serde_json::from_str(&out).unwrap();
    keys.into_iter().map(|k| format!("{prefix}{k}")).collect()
}

/// The audit trail of a whole pod life on the real OpenBao and PostgreSQL: login and first fetches,
/// a rotation (a re-fetch with the new version), a lease renewal, a failed check after the secret
/// is deleted upstream, and on SIGTERM the revocation of the lease and the token. Every record
/// names the pod, its namespace, ServiceAccount and node; the lease appears only as its hash, and
/// neither a secret value, the database password, the full lease id nor the service-account token
/// appears anywhere in the sidecar's output (records and trace-level logs alike).
#[tokio::test]
async fn the_audit_trail_follows_a_pod_from_start_to_sigterm_and_holds_no_value() {
    let db_role = unique_name("dbr");
    let fx = Fixture::new(&format!(
        r#"path "database/creds/{db_role}" {{ capabilities = ["read"] }}
path "sys/leases/revoke" {{ capabilities = ["update"] }}"#
    ))
    .await;
    configure_db_role(&fx, &db_role, "15s", "10m");
    let canary = format!("CANARY-{}", unique_name("c"));
    fx.put("app", &[("password", &canary)]);
    let kv = format!("vault:{}", fx.kv_path("app"));
    let db = format!("vault:database/creds/{db_role}");
    let cfg = fx.config(
        vec![
            file("db-password", &format!("{db}#password"), 0o400),
            file("db-user", &format!("{db}#username"), 0o400),
            file("password", &format!("{kv}#password"), 0o444),
        ],
        30,
        OnChange::None,
    );
    let mut sc = fx.start(&cfg, "run", &[("HUSH_LOG", "trace")]).await;
    sc.started().await;
    let db_pass = sc.read_string("db-password").unwrap();
    let leases = lease_ids(&fx.env, &db_role);
    assert_eq!(leases.len(), 1, "one lease for both database files");
    let lease = sha256_prefix(&leases[0]);

    // Rotation: a new KV version, picked up by a refresh cycle.
    let canary2 = format!("{canary}-2");
    fx.put("app", &[("password", &canary2)]);
    sc.signal(Signal::HUP);
    wait_for("rotation", || {
        (sc.read_string("password").as_deref() == Some(canary2.as_str())).then_some(())
    })
    .await;
    // The 15 s lease is renewed at about 10 s.
    wait_for("a lease renewal", || {
        metric(&sc.metrics_text(), "hush_sidecar_lease_renewals_total ").filter(|v| *v >= 1.0)
    })
    .await;
    // A failure: the secret is deleted upstream; the next check fails (the file stays).
    bao_ok(&fx.env, &["kv", "metadata", "delete", &fx.kv_path("app")]);
    sc.signal(Signal::HUP);
    wait_for("the failed check's record", || {
        audit_records(&sc.logs())
            .iter()
            .any(|r| r["event"] == "check" && r["outcome"] == "error")
            .then_some(())
    })
    .await;
    let jwt = std::fs::read_to_string(sc.vault_token_file()).unwrap();
    let st = sc.terminate().await;
    assert!(st.success(), "exit status {st}; logs:\n{}", sc.logs());

    let output = sc.logs();
    let records = audit_records(&output);
    let pod = sc.pod.metadata.name.clone().unwrap();
    for r in &records {
        assert_eq!(r["program"], "hush-sidecar", "{r}");
        assert_eq!(r["pod"], pod.as_str(), "{r}");
        assert_eq!(r["namespace"], fx.ns.as_str(), "{r}");
        assert_eq!(r["serviceAccount"], "app", "{r}");
        assert!(r["node"].as_str().is_some_and(|n| !n.is_empty()), "{r}");
        assert!(r["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
        assert_eq!(r["source"], "vault", "{r}");
    }
    // Finds the first record matching `want` (a subset of its fields) after position `from`.
    let find = |from: usize, want: serde_json::Value| -> usize {
        let want = want.as_object().unwrap();
        records
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, r)| want.iter().all(|(k, v)| &r[k] == v))
            .map(|(i, _)| i)
            .unwrap_or_else(|| {
                panic!(
                    "no record {} after #{from} in:\n{}",
                    serde_json::Value::Object(want.clone()),
                    records
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
    };
    use serde_json::json;
    let login = find(
        0,
        json!({"event": "login", "object": "token", "outcome": "ok"}),
    );
    let fetch_kv = find(
        login,
        json!({"event": "fetch", "outcome": "ok", "reference": kv, "files": ["password"],
               "version": "1"}),
    );
    let fetch_db = find(
        login,
        json!({"event": "fetch", "outcome": "ok", "reference": db, "lease": lease}),
    );
    let files = records[fetch_db]["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{}", records[fetch_db]);
    let refetch = find(
        fetch_kv,
        json!({"event": "refetch", "outcome": "ok", "reference": kv, "version": "2",
               "changed": true, "reason": "refresh"}),
    );
    find(
        fetch_db,
        json!({"event": "renew", "object": "lease", "outcome": "ok", "reference": db,
               "lease": lease}),
    );
    let failed = find(
        refetch,
        json!({"event": "check", "outcome": "error", "reference": kv,
               "errorClass": "permanent"}),
    );
    let revoke = find(
        failed,
        json!({"event": "revoke", "object": "lease", "outcome": "ok", "reference": db,
               "lease": lease, "reason": "shutdown"}),
    );
    find(
        revoke,
        json!({"event": "revoke", "object": "token", "outcome": "ok", "reason": "shutdown"}),
    );
    // Records only for accesses: the unchanged database secret is not re-read by the rotation.
    assert_eq!(
        records
            .iter()
            .filter(|r| r["reference"] == db.as_str() && r["event"] == "fetch")
            .count(),
        1
    );

    assert!(output.contains("TRACE"), "the sidecar ran at trace level");
    for (what, needle) in [
        ("the first value", canary.as_str()),
        ("the rotated value", canary2.as_str()),
        ("the database password", db_pass.as_str()),
        ("the full lease id", leases[0].as_str()),
        ("the service-account token", jwt.trim()),
    ] {
        assert!(!output.contains(needle), "{what} appears in the output");
    }
    assert!(!output.contains("CANARY-"), "a value appears in the output");
}

/// `audit: false` in the operator settings: the sidecar writes its files and no record at all.
#[tokio::test]
async fn the_operator_can_turn_the_audit_trail_off() {
    let fx = Fixture::new("").await;
    fx.put("quiet", &[("v", "quiet-value")]);
    let mut cfg = fx.config(
        vec![file(
            "v",
            &format!("vault:{}#v", fx.kv_path("quiet")),
            0o444,
        )],
        30,
        OnChange::None,
    );
    cfg.operator.audit = false;
    let mut on = cfg.clone();
    on.operator.audit = true;
    for (cfg, want) in [(&on, true), (&cfg, false)] {
        let mut sc = fx.start(cfg, "once", &[]).await;
        let st = sc.wait_exit().await;
        assert!(st.success(), "exit status {st}; logs:\n{}", sc.logs());
        assert_eq!(sc.read_string("v").as_deref(), Some("quiet-value"));
        let records = audit_records(&sc.logs());
        assert_eq!(
            !records.is_empty(),
            want,
            "audit {want}: records {records:?}; logs:\n{}",
            sc.logs()
        );
    }
}
