//! End-to-end tests of templates that read several files (`files["name"]`) against the real
//! OpenBao (TLS), PostgreSQL and kube-apiserver. The use case is a DSN, a template-only file built
//! from a KV v2 secret (the host) and dynamic PostgreSQL credentials (`database/creds/<role>`).
//! The sidecar runs from the injected pod's stored spec with the pod runner, as in
//! `sidecar_vault.rs`. The tests check what the user relies on: the DSN logs in to PostgreSQL, it
//! is rendered from the same refresh as the files it reads, a change in either source re-renders
//! it with exactly one notification, and a template naming an unknown file or reading back its
//! own output is refused at `kubectl apply` with a message that names the file and the fix.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hush_config::{FileSpec, Format, OnChange, OperatorSettings, SidecarConfig, SourceRef};
use hush_tests::cluster;
use hush_tests::cmd::{bao, kubectl, text};
use hush_tests::env::{TestEnv, unique_name};
use hush_tests::harness::{metric, notification_listener};
use hush_tests::kube::InjectorFixture;
use hush_tests::operator::{self, Stores};
use hush_tests::sidecar_pod::{Launch, SidecarPod, wait_for};
use rustix::process::Signal;

/// The template of the DSN file: user and password from the dynamic credentials, host and port
/// from KV.
const DSN: &str = r#"postgres://{{ files["db-creds"].username }}:{{ files["db-creds"].password }}@{{ files["db-host"].host }}/postgres?sslmode=disable"#;

/// PostgreSQL's admin password, host and port, from the test environment.
fn pg_admin(env: &TestEnv) -> (String, String, String) {
    let rest = env.pg_dsn.strip_prefix("postgres://").unwrap();
    let (cred, _) = rest.split_once('@').unwrap();
    let (_, pass) = cred.split_once(':').unwrap();
    let (host, port) = env.pg_hostport.split_once(':').unwrap();
    (pass.to_string(), host.to_string(), port.to_string())
}

/// Runs `select 1` with `psql` given a whole DSN, as an app handed the rendered file would.
fn connect(dsn: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([dsn, "-tAc", "select 1"])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (Debian postgresql-client) must be installed");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// A namespace with the ServiceAccount `app`, a kubernetes-auth role allowed to read the test's
/// KV prefix and dynamic credentials of a fresh PostgreSQL role with the given TTLs.
struct Fixture {
    env: TestEnv,
    client: kube::Client,
    ns: String,
    role: String,
    prefix: String,
    db_role: String,
}

impl Fixture {
    async fn new(default_ttl: &str, max_ttl: &str) -> Fixture {
        let env = TestEnv::load();
        let client = cluster::client(&env).await;
        let ns = cluster::namespace(&client, "tmpl", false).await;
        cluster::service_account(&client, &ns, "app").await;
        let role = unique_name("tp");
        let prefix = unique_name("kv");
        let db_role = unique_name("dbt");
        let policy = format!(
            r#"path "secret/data/{prefix}/*" {{ capabilities = ["read"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["read"] }}
path "secret/detailed-metadata/{prefix}/*" {{ capabilities = ["list"] }}
path "database/creds/{db_role}" {{ capabilities = ["read"] }}
path "sys/leases/revoke" {{ capabilities = ["update"] }}"#
        );
        bao(&env, &["policy", "write", &role, "-"], Some(&policy));
        bao(
            &env,
            &[
                "write",
                &format!("auth/kubernetes/role/{role}"),
                "bound_service_account_names=app",
                &format!("bound_service_account_namespaces={ns}"),
                &format!("policies={role}"),
                "audience=vault",
                "token_ttl=1h",
            ],
            None,
        );
        let (pg_pass, host, port) = pg_admin(&env);
        let conn = unique_name("pg");
        bao(
            &env,
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
            None,
        );
        bao(
            &env,
            &[
                "write",
                &format!("database/roles/{db_role}"),
                &format!("db_name={conn}"),
                "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                &format!("default_ttl={default_ttl}"),
                &format!("max_ttl={max_ttl}"),
            ],
            None,
        );
        Fixture {
            env,
            client,
            ns,
            role,
            prefix,
            db_role,
        }
    }

    fn host_path(&self) -> String {
        format!("secret/{}/db", self.prefix)
    }

    fn put_host(&self, host: &str) {
        bao(
            &self.env,
            &["kv", "put", &self.host_path(), &format!("host={host}")],
            None,
        );
    }

    /// The pod: `db-creds` (the dynamic credentials, as JSON), `db-host` (the KV secret, as
    /// JSON) and `dsn`, a template-only file over both.
    fn config(&self, refresh_secs: u64, on_change: OnChange) -> SidecarConfig {
        let file =
            |name: &str, source: Option<String>, format: Format, template: Option<&str>| FileSpec {
                name: name.into(),
                source: source.map(|s| SourceRef::parse(&s).unwrap()),
                format,
                template: template.map(str::to_string),
                mode: 0o400,
            };
        let operator = OperatorSettings {
            vault: Some(operator::vault_settings(&self.env, &self.env.vault_addr)),
            min_refresh: Duration::from_secs(5),
            ..OperatorSettings::default()
        };
        SidecarConfig {
            role: Some(self.role.clone()),
            refresh: Duration::from_secs(refresh_secs),
            on_change,
            files: vec![
                file(
                    "db-creds",
                    Some(format!("vault:database/creds/{}", self.db_role)),
                    Format::Json,
                    None,
                ),
                file(
                    "db-host",
                    Some(format!("vault:{}", self.host_path())),
                    Format::Json,
                    None,
                ),
                file("dsn", None, Format::Template, Some(DSN)),
            ],
            ..SidecarConfig::defaults(&self.ns, &operator)
        }
    }

    async fn start(&self, cfg: &SidecarConfig) -> SidecarPod {
        let mut sc = SidecarPod::start(Launch {
            env: &self.env,
            client: &self.client,
            namespace: &self.ns,
            service_account: "app",
            cfg,
            command: "run",
            extra_env: Vec::new(),
        })
        .await;
        sc.started().await;
        sc
    }
}

/// One consistent view of the volume: the three files read through one resolution of `..data`
/// (the set a reader that opens `..data` once sees), as (dsn, username, password, host). `None`
/// when a swap removed the set between the resolution and the reads: a reader then opens
/// `..data` again.
fn try_snapshot(sc: &SidecarPod) -> Option<(String, String, String, String)> {
    let root = sc.secrets();
    let set = root.join(std::fs::read_link(root.join("..data")).ok()?);
    let read = |f: &str| std::fs::read_to_string(set.join(f)).ok();
    let json = |f: &str| serde_json::from_str::<serde_json::Value>(&read(f)?).ok();
    let creds = json("db-creds")?;
    let host = json("db-host")?;
    Some((
        read("dsn")?,
        creds["username"].as_str()?.to_string(),
        creds["password"].as_str()?.to_string(),
        host["host"].as_str()?.to_string(),
    ))
}

/// [`try_snapshot`], opening `..data` again until a whole set is read.
async fn snapshot(sc: &SidecarPod) -> (String, String, String, String) {
    wait_for("a whole set of files", || try_snapshot(sc)).await
}

/// The DSN the template must give for these parts.
fn expected_dsn(user: &str, pass: &str, host: &str) -> String {
    format!("postgres://{user}:{pass}@{host}/postgres?sslmode=disable")
}

/// The DSN is rendered from the KV host and the dynamic credentials and logs in to PostgreSQL;
/// moving the host in KV re-renders it with one notification, and the credentials stay the same.
#[tokio::test]
async fn a_dsn_over_kv_and_dynamic_credentials_logs_in_and_follows_a_kv_change_once() {
    let fx = Fixture::new("1h", "2h").await;
    let (_, host, port) = pg_admin(&fx.env);
    fx.put_host(&format!("{host}:{port}"));
    let (url, count) = notification_listener().await;
    let cfg = fx.config(5, OnChange::Http { url });
    let mut sc = fx.start(&cfg).await;

    let (dsn, user, pass, kv_host) = snapshot(&sc).await;
    assert_eq!(kv_host, format!("{host}:{port}"));
    assert!(user.starts_with("v-"), "a dynamic user: {user}");
    assert_eq!(dsn, expected_dsn(&user, &pass, &kv_host));
    assert_eq!(connect(&dsn).unwrap(), "1", "the rendered DSN logs in");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(sc.secrets().join("dsn"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o400);
    assert_eq!(count.load(Ordering::SeqCst), 0, "no notification at start");

    // The same server under another name: the DSN changes, and still logs in.
    let new_host = format!("localhost:{port}");
    fx.put_host(&new_host);
    let (dsn2, user2, pass2, kv_host2) = wait_for("the DSN re-rendered with the new host", || {
        try_snapshot(&sc).filter(|s| s.3 == new_host)
    })
    .await;
    assert_eq!(
        (user2.as_str(), pass2.as_str()),
        (user.as_str(), pass.as_str()),
        "the credentials did not change"
    );
    assert_eq!(dsn2, expected_dsn(&user, &pass, &kv_host2));
    assert_eq!(connect(&dsn2).unwrap(), "1");
    wait_for("the notification", || {
        (count.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    // Two more refresh cycles with nothing new: still one notification, two writes in all.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "one notification per update"
    );
    let m = sc.metrics_text();
    assert_eq!(metric(&m, "hush_sidecar_updates_total "), Some(2.0), "{m}");

    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success(), "logs:\n{}", sc.logs());
    // The DSN's user was the lease's, revoked on SIGTERM: the last file no longer logs in.
    assert!(connect(&dsn2).is_err(), "the revoked user still logs in");
}

/// Dynamic credentials at their max TTL are replaced: the DSN follows in the same write as
/// `db-creds` (every snapshot of the volume agrees with itself), the new DSN logs in, and the app
/// gets one notification for the replacement.
#[tokio::test]
async fn new_dynamic_credentials_re_render_the_dsn_in_the_same_write_with_one_notification() {
    // Renewable only to 24 s in total: the sidecar must fetch new credentials before then.
    let fx = Fixture::new("12s", "24s").await;
    let (_, host, port) = pg_admin(&fx.env);
    fx.put_host(&format!("{host}:{port}"));
    let (url, count) = notification_listener().await;
    // A long refresh: only the lease replacement writes.
    let cfg = fx.config(600, OnChange::Http { url });
    let mut sc = fx.start(&cfg).await;
    let (dsn, user, pass, kv_host) = snapshot(&sc).await;
    assert_eq!(dsn, expected_dsn(&user, &pass, &kv_host));

    // Every snapshot taken while waiting is consistent: the DSN is always the one of the
    // credentials beside it.
    let (dsn2, user2, pass2, _) = wait_for("new credentials before max_ttl", || {
        let s = try_snapshot(&sc)?;
        assert_eq!(s.0, expected_dsn(&s.1, &s.2, &s.3), "a mixed set");
        (s.1 != user).then_some(s)
    })
    .await;
    assert_ne!(pass2, pass);
    assert_eq!(connect(&dsn2).unwrap(), "1", "the new DSN logs in");
    wait_for("the notification", || {
        (count.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "one notification for the replacement, not one per file"
    );
    let m = sc.metrics_text();
    assert_eq!(metric(&m, "hush_sidecar_updates_total "), Some(2.0), "{m}");
    assert!(user2.starts_with("v-"));
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success(), "logs:\n{}", sc.logs());
}

/// A template naming a file the pod does not have, or template-only files reading each other,
/// is refused at `kubectl apply`, with the file and the fix in the message; the DSN pod is
/// admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_files_and_cycles_fail_at_kubectl_apply_with_our_message() {
    let env = TestEnv::load();
    let client = cluster::client(&env).await;
    let fixture = InjectorFixture::start(
        &env,
        &client,
        &format!(
            "{}allowedRoles:\n  '*': [app-e2e]\n",
            operator::injector_yaml(&env, Stores::VAULT)
        ),
    )
    .await;
    let ns = cluster::namespace(&client, "tmpl", true).await;
    fixture.select_namespace(&ns).await;
    cluster::service_account(&client, &ns, "app").await;
    fixture.wait_active(&ns, "app").await;
    let apply = |name: &str, extra: &[(&str, &str)]| {
        let mut ann = vec![
            ("hush.dev/inject", "true"),
            ("hush.dev/role", "app-e2e"),
            ("hush.dev/secret-db-creds", "vault:database/creds/app"),
            ("hush.dev/secret-db-host", "vault:secret/data/app/db"),
        ];
        ann.extend_from_slice(extra);
        let pod = hush_tests::kube::restricted_pod_yaml(name, &ann);
        kubectl(&env, &["apply", "-n", &ns, "-f", "-"], Some(&pod))
    };

    let out = apply(
        "unknown",
        &[(
            "hush.dev/template-dsn",
            r#"postgres://{{ files["db-cred"].username }}@{{ files["db-host"].host }}/app"#,
        )],
    );
    assert!(
        !out.status.success(),
        "an unknown file name must be refused"
    );
    let msg = text(&out);
    assert!(
        msg.contains("hush.dev/template-dsn")
            && msg.contains(r#"files["db-cred"] names no file of this pod"#)
            && msg.contains("add hush.dev/secret-db-cred"),
        "{msg}"
    );

    let out = apply(
        "cycle",
        &[
            (
                "hush.dev/template-a",
                r#"{{ files["b"] }}{{ files["db-creds"].username }}"#,
            ),
            ("hush.dev/template-b", r#"{{ files["a"] }}"#),
        ],
    );
    assert!(!out.status.success(), "a cycle must be refused");
    let msg = text(&out);
    assert!(
        msg.contains("hush.dev/template-a") && msg.contains("a -> b -> a"),
        "{msg}"
    );

    let out = apply("dsn", &[("hush.dev/template-dsn", DSN)]);
    assert!(
        out.status.success(),
        "the DSN pod is admitted: {}",
        text(&out)
    );
    fixture.cleanup().await;
}
