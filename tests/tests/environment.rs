//! Proves the test environment is real, not mocked: the kube-apiserver enforces Pod Security and
//! issues and reviews tokens, OpenBao serves KV over TLS and logs in through the apiserver's
//! TokenReview, moto answers the real AWS SDK, and the reference `age` CLI interoperates with the
//! `age` crate both ways. Every test reads `scripts/test-env env` and works in its own namespace.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use age::secrecy::ExposeSecret;
use hush_tests::{cluster, env::TestEnv, env::unique_name};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

fn kubectl(env: &TestEnv, args: &[&str]) -> std::process::Output {
    Command::new(&env.kubectl)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", env.kubectl.display()))
}

#[tokio::test]
async fn apiserver_is_ready_and_enforces_restricted_pod_security() {
    let env = TestEnv::load();
    let out = kubectl(&env, &["get", "--raw", "/readyz"]);
    assert!(
        out.status.success(),
        "readyz: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    let client = cluster::client(&env).await;
    let ns = cluster::namespace(&client, "env-psa", true).await;
    cluster::service_account(&client, &ns, "default").await;

    let privileged: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{
            "name": "app", "image": "registry.example/app:1",
            "securityContext": {"privileged": true}
        }]}
    }))
    .expect("valid pod");
    let err = Api::<Pod>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &privileged)
        .await
        .expect_err("a privileged pod must be rejected in a restricted namespace");
    let msg = err.to_string();
    assert!(
        msg.contains("violates PodSecurity \"restricted"),
        "unexpected rejection: {msg}"
    );

    // The same namespace admits a pod that satisfies "restricted": the rejection above was policy.
    let restricted: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "restricted"},
        "spec": {
            "schedulingGates": [{"name": "hush.dev/admission-only"}],
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app", "image": "registry.example/app:1",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsUser": 1000
                }
            }]
        }
    }))
    .expect("valid pod");
    Api::<Pod>::namespaced(client, &ns)
        .create(&PostParams::default(), &restricted)
        .await
        .expect("a restricted-compliant pod is admitted");
}

#[tokio::test]
async fn token_request_token_passes_token_review() {
    let env = TestEnv::load();
    let client = cluster::client(&env).await;
    let ns = cluster::namespace(&client, "env-token", false).await;
    cluster::service_account(&client, &ns, "app").await;
    let token = cluster::token(&client, &ns, "app", "hush-test", 600).await;

    let review = |token: String| TokenReview {
        spec: TokenReviewSpec {
            token: Some(token),
            audiences: Some(vec!["hush-test".to_string()]),
        },
        ..Default::default()
    };
    let api = Api::<TokenReview>::all(client);
    let ok = api
        .create(&PostParams::default(), &review(token.clone()))
        .await
        .expect("TokenReview");
    let status = ok.status.expect("TokenReview status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    let user = status.user.expect("user info");
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{ns}:app").as_str())
    );

    // A tampered token fails review: the apiserver really checks signatures.
    let mut bad = token.into_bytes();
    let last = bad.len() - 2;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let rejected = api
        .create(
            &PostParams::default(),
            &review(String::from_utf8(bad).expect("ascii")),
        )
        .await
        .expect("TokenReview");
    assert_ne!(
        rejected.status.and_then(|s| s.authenticated),
        Some(true),
        "a tampered token must not authenticate"
    );
}

fn vault(env: &TestEnv, token: &str) -> vaultrs::client::VaultClient {
    let settings = vaultrs::client::VaultClientSettingsBuilder::default()
        .address(&env.vault_addr)
        .token(token)
        .ca_certs(vec![env.vault_cacert.display().to_string()])
        .verify(true)
        .build()
        .expect("vault settings");
    vaultrs::client::VaultClient::new(settings).expect("vault client")
}

#[tokio::test]
async fn openbao_kv2_over_tls_and_kubernetes_login() {
    let env = TestEnv::load();
    assert!(
        env.vault_addr.starts_with("https://"),
        "OpenBao must serve TLS"
    );
    let root = vault(&env, &env.vault_token);

    let path = unique_name("env-kv");
    let mut data = std::collections::HashMap::new();
    data.insert("password", "s3cr3t-value");
    vaultrs::kv2::set(&root, "secret", &path, &data)
        .await
        .expect("kv2 write");
    let read: std::collections::HashMap<String, String> =
        vaultrs::kv2::read(&root, "secret", &path)
            .await
            .expect("kv2 read");
    assert_eq!(
        read.get("password").map(String::as_str),
        Some("s3cr3t-value")
    );

    // Kubernetes auth: OpenBao asks our apiserver's TokenReview about a TokenRequest token.
    let client = cluster::client(&env).await;
    let ns = cluster::namespace(&client, "env-k8sauth", false).await;
    cluster::service_account(&client, &ns, "app").await;
    let role = unique_name("env-role");
    vaultrs::auth::kubernetes::role::create(
        &root,
        "kubernetes",
        &role,
        Some(
            vaultrs::api::auth::kubernetes::requests::CreateKubernetesRoleRequest::builder()
                .bound_service_account_names(vec!["app".to_string()])
                .bound_service_account_namespaces(vec![ns.clone()])
                .audience("vault")
                .token_ttl("10m"),
        ),
    )
    .await
    .expect("create kubernetes role");

    let jwt = cluster::token(&client, &ns, "app", "vault", 600).await;
    let auth = vaultrs::auth::kubernetes::login(&root, "kubernetes", &role, &jwt)
        .await
        .expect("kubernetes login through TokenReview");
    assert!(!auth.client_token.is_empty());
    assert_eq!(
        auth.metadata
            .as_ref()
            .and_then(|m| m.get("service_account_namespace"))
            .map(String::as_str),
        Some(ns.as_str())
    );

    // A token for another audience is refused: the role's audience is enforced.
    let wrong = cluster::token(&client, &ns, "app", "not-vault", 600).await;
    assert!(
        vaultrs::auth::kubernetes::login(&root, "kubernetes", &role, &wrong)
            .await
            .is_err(),
        "login with the wrong audience must fail"
    );
}

#[tokio::test]
async fn moto_secrets_manager_with_the_real_sdk() {
    let env = TestEnv::load();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&env.aws_endpoint)
        .region(aws_config::Region::new(env.aws_region.clone()))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let name = unique_name("env-aws");
    sm.create_secret()
        .name(&name)
        .secret_string("moto-value")
        .send()
        .await
        .expect("CreateSecret against moto");
    let got = sm
        .get_secret_value()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("GetSecretValue against moto");
    assert_eq!(got.secret_string(), Some("moto-value"));
    let missing = sm
        .get_secret_value()
        .secret_id(format!("{name}-missing"))
        .send()
        .await;
    assert!(missing.is_err(), "moto must report a missing secret");
}

#[test]
fn age_cli_and_crate_interoperate_both_ways() {
    let env = TestEnv::load();
    assert!(
        env.age_bin.exists(),
        "the age CLI is missing at {}: run scripts/test-env up",
        env.age_bin.display()
    );
    let dir = std::env::temp_dir().join(unique_name("env-age"));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // crate -> CLI
    let identity = age::x25519::Identity::generate();
    let id_file = dir.join("key.txt");
    std::fs::write(&id_file, identity.to_string().expose_secret()).expect("write identity");
    let plaintext = b"from the crate \x00\xff binary";
    let ciphertext = age::encrypt_and_armor(&identity.to_public(), plaintext).expect("encrypt");
    let mut child = Command::new(&env.age_bin)
        .arg("-d")
        .arg("-i")
        .arg(&id_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn age");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ciphertext.as_bytes())
        .expect("write ciphertext");
    let out = child.wait_with_output().expect("age -d");
    assert!(out.status.success());
    assert_eq!(out.stdout, plaintext);

    // CLI -> crate
    let mut child = Command::new(&env.age_bin)
        .arg("-a")
        .arg("-r")
        .arg(identity.to_public().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn age");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"from the CLI")
        .expect("write plaintext");
    let out = child.wait_with_output().expect("age -e");
    assert!(out.status.success());
    let decryptor = age::Decryptor::new(age::armor::ArmoredReader::new(&out.stdout[..]))
        .expect("armored age file");
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .expect("decrypt with the identity");
    let mut got = Vec::new();
    reader.read_to_end(&mut got).expect("read plaintext");
    assert_eq!(got, b"from the CLI");

    // And a wrong identity is refused by the CLI.
    let other = age::x25519::Identity::generate();
    std::fs::write(&id_file, other.to_string().expose_secret()).expect("write identity");
    let mut child = Command::new(&env.age_bin)
        .arg("-d")
        .arg("-i")
        .arg(&id_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn age");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ciphertext.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("age -d");
    assert!(!out.status.success(), "a wrong identity must not decrypt");
    let _ = std::fs::remove_dir_all(&dir);
}
