//! End-to-end tests of certificates from OpenBao's PKI engine (`vault:<mount>/issue/<role>?...`).
//! Each test mounts its own root and intermediate PKI engines under unique paths through the real
//! OpenBao (the shared servers are never reconfigured), stores an injected pod in the real
//! apiserver and runs its `hush-sidecar` with the pod runner, as `sidecar_vault.rs` does. What a
//! user relies on is checked with tools outside the code under test: `openssl verify` for the
//! chain, `openssl x509` for serials and key match, and OpenBao's own `<mount>/cert/<serial>` for
//! revocation.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hush_config::{FileSpec, Format, OnChange, OperatorSettings, SidecarConfig, SourceRef};
use hush_tests::cmd::{bao_ok, bao_stdin};
use hush_tests::env::{TestEnv, unique_name};
use hush_tests::harness::{eventually, metric, notification_listener};
use hush_tests::sidecar_pod::{Launch, SidecarPod};
use hush_tests::{cluster, operator};
use rustix::process::Signal;

/// `openssl <args>`, its stdout, or its stderr as the error.
fn openssl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// The serial of the PEM certificate at `path`, as OpenBao writes it (`aa:bb:...`, lowercase).
fn serial_of(path: &Path) -> String {
    let s = openssl(&["x509", "-noout", "-serial", "-in", path.to_str().unwrap()]).unwrap();
    let hex = s.strip_prefix("serial=").unwrap().to_ascii_lowercase();
    let hex = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    };
    hex.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

/// A namespace and ServiceAccount, a root CA mount and an intermediate CA mount (both unique to
/// this test) with a role `web` for `*.<domain>`, and a kubernetes-auth role whose policy may
/// issue from it (and revoke, with `revoke`).
struct Pki {
    env: TestEnv,
    client: kube::Client,
    ns: String,
    role: String,
    root_mount: String,
    mount: String,
    domain: String,
}

impl Pki {
    async fn new(revoke: bool) -> Pki {
        let env = TestEnv::load();
        let client = cluster::client(&env).await;
        let ns = cluster::namespace(&client, "pki", false).await;
        cluster::service_account(&client, &ns, "app").await;
        let root_mount = unique_name("pkiroot");
        let mount = unique_name("pkiint");
        let domain = format!("{}.example.com", unique_name("d"));
        bao_ok(
            &env,
            &["secrets", "enable", &format!("-path={root_mount}"), "pki"],
        );
        bao_ok(
            &env,
            &["secrets", "tune", "-max-lease-ttl=87600h", &root_mount],
        );
        bao_ok(
            &env,
            &[
                "write",
                &format!("{root_mount}/root/generate/internal"),
                "common_name=Hush Test Root",
                "ttl=87600h",
                "key_type=ec",
                "key_bits=256",
            ],
        );
        bao_ok(
            &env,
            &["secrets", "enable", &format!("-path={mount}"), "pki"],
        );
        bao_ok(&env, &["secrets", "tune", "-max-lease-ttl=43800h", &mount]);
        let csr = bao_ok(
            &env,
            &[
                "write",
                "-field=csr",
                &format!("{mount}/intermediate/generate/internal"),
                "common_name=Hush Test Intermediate",
                "key_type=ec",
                "key_bits=256",
            ],
        );
        let signed = bao_stdin(
            &env,
            &[
                "write",
                "-field=certificate",
                &format!("{root_mount}/root/sign-intermediate"),
                "csr=-",
                "format=pem_bundle",
                "ttl=43800h",
            ],
            &csr,
        );
        bao_stdin(
            &env,
            &[
                "write",
                &format!("{mount}/intermediate/set-signed"),
                "certificate=-",
            ],
            &signed,
        );
        bao_ok(
            &env,
            &[
                "write",
                &format!("{mount}/roles/web"),
                &format!("allowed_domains={domain}"),
                "allow_subdomains=true",
                "max_ttl=1h",
                "key_type=ec",
                "key_bits=256",
            ],
        );
        let role = unique_name("pk");
        let mut policy = format!(r#"path "{mount}/issue/web" {{ capabilities = ["update"] }}"#);
        if revoke {
            policy.push_str(&format!(
                "\npath \"{mount}/revoke\" {{ capabilities = [\"update\"] }}"
            ));
        }
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
                "token_ttl=1h",
            ],
        );
        Pki {
            env,
            client,
            ns,
            role,
            root_mount,
            mount,
            domain,
        }
    }

    /// `vault:<mount>/issue/web#<field>?common_name=app.<domain>&ttl=<ttl>`.
    fn source(&self, field: &str, ttl: &str) -> String {
        format!(
            "vault:{}/issue/web#{field}?common_name=app.{}&alt_names=www.{}&ttl={ttl}",
            self.mount, self.domain, self.domain
        )
    }

    fn config(&self, ttl: &str, revoke_certificates: bool, on_change: OnChange) -> SidecarConfig {
        let mut vault = operator::vault_settings(&self.env, &self.env.vault_addr);
        vault.revoke_certificates = revoke_certificates;
        let op = OperatorSettings {
            vault: Some(vault),
            min_refresh: Duration::from_secs(5),
            ..OperatorSettings::default()
        };
        let file = |name: &str, field: &str, mode: u32| FileSpec {
            name: name.into(),
            source: Some(SourceRef::parse(&self.source(field, ttl)).unwrap()),
            format: Format::Raw,
            template: None,
            mode,
        };
        // The same reference without #field, as one PEM bundle.
        let whole = self.source("x", ttl).replace("#x", "");
        let bundle = FileSpec {
            name: "bundle.pem".into(),
            source: Some(SourceRef::parse(&whole).unwrap()),
            format: Format::Pem,
            template: None,
            mode: 0o400,
        };
        SidecarConfig {
            role: Some(self.role.clone()),
            refresh: Duration::from_secs(300),
            on_change,
            // Sorted by name, as the config requires.
            files: vec![
                bundle,
                file("ca.crt", "ca_chain", 0o444),
                file("tls.crt", "certificate", 0o444),
                file("tls.key", "private_key", 0o400),
            ],
            ..SidecarConfig::defaults(&self.ns, &op)
        }
    }

    async fn start(&self, cfg: &SidecarConfig) -> SidecarPod {
        SidecarPod::start(Launch {
            env: &self.env,
            client: &self.client,
            namespace: &self.ns,
            service_account: "app",
            cfg,
            command: "run",
            extra_env: Default::default(),
        })
        .await
    }

    /// The root CA's certificate in a file, for `openssl verify -CAfile`.
    fn root_file(&self, dir: &Path) -> std::path::PathBuf {
        let pem = bao_ok(
            &self.env,
            &[
                "read",
                "-field=certificate",
                &format!("{}/cert/ca", self.root_mount),
            ],
        );
        let path = dir.join("root.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }

    /// `revocation_time` of the certificate `serial` as OpenBao reports it (0: not revoked).
    fn revocation_time(&self, serial: &str) -> i64 {
        let out = bao_ok(
            &self.env,
            &[
                "read",
                "-format=json",
                &format!("{}/cert/{serial}", self.mount),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["data"]["revocation_time"].as_i64().unwrap()
    }
}

/// The three files a user mounts for TLS: the certificate and its chain verify against the root
/// (the chain is the intermediate and the root), the key is the certificate's own key with mode
/// 0400, the names asked for are in the certificate, and SIGTERM without the operator setting
/// leaves the certificate valid.
#[tokio::test]
async fn issued_certificate_files_verify_against_the_root_with_the_right_modes() {
    let pki = Pki::new(true).await;
    let cfg = pki.config("1h", false, OnChange::None);
    let mut sc = pki.start(&cfg).await;
    sc.started().await;
    let dir = sc.secrets();
    for (name, mode) in [
        ("tls.crt", 0o444),
        ("tls.key", 0o400),
        ("ca.crt", 0o444),
        ("bundle.pem", 0o400),
    ] {
        let meta = std::fs::metadata(dir.join(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "mode of {name}");
    }
    let crt = dir.join("tls.crt");
    let chain = dir.join("ca.crt");
    let tmp = std::env::temp_dir().join(unique_name("pki-verify"));
    std::fs::create_dir_all(&tmp).unwrap();
    let root = pki.root_file(&tmp);
    let verified = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().unwrap(),
        "-untrusted",
        chain.to_str().unwrap(),
        crt.to_str().unwrap(),
    ]);
    assert!(
        verified.as_deref().is_ok_and(|s| s.ends_with(": OK")),
        "the chain does not verify: {verified:?}"
    );
    // Without the chain file the leaf does not verify: the chain is what links it to the root.
    assert!(
        openssl(&[
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            crt.to_str().unwrap()
        ])
        .is_err()
    );
    let chain_text = std::fs::read_to_string(&chain).unwrap();
    assert_eq!(chain_text.matches("BEGIN CERTIFICATE").count(), 2);
    // The key belongs to the certificate.
    let pub_of_cert =
        openssl(&["x509", "-noout", "-pubkey", "-in", crt.to_str().unwrap()]).unwrap();
    let pub_of_key = openssl(&[
        "pkey",
        "-pubout",
        "-in",
        dir.join("tls.key").to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(pub_of_cert, pub_of_key, "tls.key is the key of tls.crt");
    let text = openssl(&["x509", "-noout", "-text", "-in", crt.to_str().unwrap()]).unwrap();
    assert!(
        text.contains(&format!("DNS:www.{}", pki.domain))
            && text.contains(&format!("DNS:app.{}", pki.domain))
            && (text.contains(&format!("CN = app.{}", pki.domain))
                || text.contains(&format!("CN=app.{}", pki.domain))),
        "{text}"
    );
    // The bundle is the same certificate (one issue per reference), its chain and its key.
    let bundle = dir.join("bundle.pem");
    assert_eq!(
        serial_of(&bundle),
        serial_of(&crt),
        "one certificate for all files"
    );
    let verified = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().unwrap(),
        "-untrusted",
        bundle.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ]);
    assert!(
        verified.as_deref().is_ok_and(|s| s.ends_with(": OK")),
        "the bundle does not verify: {verified:?}"
    );
    assert_eq!(
        openssl(&["pkey", "-pubout", "-in", bundle.to_str().unwrap()]).unwrap(),
        pub_of_key,
        "the bundle's key is the certificate's key"
    );
    let serial = serial_of(&crt);
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success(), "logs:\n{}", sc.logs());
    assert_eq!(
        pki.revocation_time(&serial),
        0,
        "without vault.revokeCertificates the certificate stays valid after SIGTERM"
    );
    std::fs::remove_dir_all(&tmp).ok();
}

/// A 30 s certificate is issued anew at about 2/3 of its life: a new serial in all three files at
/// once, and one notification per re-issue. With the operator's `revokeCertificates`, SIGTERM
/// revokes the certificate the files hold (OpenBao reports its revocation time), and the audit
/// trail records it.
#[tokio::test]
async fn short_lived_certificate_is_reissued_with_a_notification_and_revoked_on_sigterm() {
    let pki = Pki::new(true).await;
    let (url, count) = notification_listener().await;
    let cfg = pki.config("30s", true, OnChange::Http { url });
    let mut sc = pki.start(&cfg).await;
    sc.started().await;
    let dir = sc.secrets();
    let first = serial_of(&dir.join("tls.crt"));
    let first_key = std::fs::read(dir.join("tls.key")).unwrap();
    // 2/3 of 30 s, minus jitter, is 17 to 20 s; a minute is ample.
    let second = eventually("a re-issued certificate", 60, || {
        let s = serial_of(&dir.join("tls.crt"));
        (s != first).then_some(s)
    })
    .await;
    assert_ne!(
        std::fs::read(dir.join("tls.key")).unwrap(),
        first_key,
        "a re-issue brings a new key"
    );
    let pub_of_cert = openssl(&[
        "x509",
        "-noout",
        "-pubkey",
        "-in",
        dir.join("tls.crt").to_str().unwrap(),
    ])
    .unwrap();
    let pub_of_key = openssl(&[
        "pkey",
        "-pubout",
        "-in",
        dir.join("tls.key").to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(pub_of_cert, pub_of_key, "the set is swapped as a whole");
    eventually("a notification for the re-issue", 30, || {
        (count.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    let m = sc.metrics_text();
    assert!(
        metric(
            &m,
            r#"hush_sidecar_lease_ttl_remaining_seconds{file="tls.crt"}"#
        )
        .is_some_and(|v| v > 0.0 && v <= 30.0),
        "{m}"
    );
    // SIGTERM revokes what the files hold now (a third one may have come meanwhile).
    let held = serial_of(&dir.join("tls.crt"));
    sc.signal(Signal::TERM);
    assert!(sc.wait_exit().await.success(), "logs:\n{}", sc.logs());
    assert!(
        pki.revocation_time(&held) > 0,
        "the held certificate {held} is revoked; logs:\n{}",
        sc.logs()
    );
    // A replaced certificate is not revoked: it ends at its own expiry.
    assert_eq!(pki.revocation_time(&first), 0);
    let logs = sc.logs();
    assert!(
        logs.lines().any(|l| l.starts_with("{\"schema\":")
            && l.contains("\"event\":\"revoke\"")
            && l.contains("\"object\":\"certificate\"")
            && l.contains(&format!("\"version\":\"{held}\""))),
        "an audit record of the revocation: {logs}"
    );
    assert!(!second.is_empty());
}

/// A parameter outside the allowlist never reaches OpenBao: the injector refuses the pod at
/// admission, naming the annotation and the parameters that are allowed.
#[test]
fn a_parameter_outside_the_allowlist_is_refused_at_admission() {
    let annotations = [
        ("hush.dev/inject", "true"),
        ("hush.dev/role", "app"),
        (
            "hush.dev/secret-tls.crt",
            "vault:pki/issue/web#certificate?common_name=a.example.com&not_after=9999-12-31T23:59:59Z",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let op = OperatorSettings {
        vault: Some(hush_config::VaultSettings::new(
            "https://vault.example:8200".into(),
        )),
        ..OperatorSettings::default()
    };
    let e = SidecarConfig::from_annotations(&annotations, "team-a", &op)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hush.dev/secret-tls.crt")
            && e.contains("\"not_after\" is not an allowed PKI parameter")
            && e.contains("common_name, alt_names, ip_sans, uri_sans, ttl"),
        "{e}"
    );
}
