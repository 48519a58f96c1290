//! Small helpers over the real kube-apiserver that every end-to-end test needs: an admin client,
//! a fresh namespace (optionally enforcing Pod Security "restricted"), ServiceAccounts, and
//! TokenRequest tokens for a given audience.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use std::collections::BTreeMap;

use crate::env::{TestEnv, unique_name};

/// An admin client for the test apiserver.
pub async fn client(env: &TestEnv) -> Client {
    let kc = Kubeconfig::read_from(&env.kubeconfig).unwrap_or_else(|e| {
        panic!(
            "read kubeconfig {}: {e}; run scripts/test-env up",
            env.kubeconfig.display()
        )
    });
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig written by scripts/test-env is valid");
    Client::try_from(config).expect("client from the test kubeconfig")
}

/// Creates a uniquely named namespace. With `restricted`, it enforces Pod Security "restricted".
pub async fn namespace(client: &Client, prefix: &str, restricted: bool) -> String {
    let name = unique_name(prefix);
    let mut labels = BTreeMap::new();
    labels.insert("hush.dev/test".to_string(), "true".to_string());
    if restricted {
        labels.insert(
            "pod-security.kubernetes.io/enforce".to_string(),
            "restricted".to_string(),
        );
        labels.insert(
            "pod-security.kubernetes.io/enforce-version".to_string(),
            "latest".to_string(),
        );
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    name
}

/// Creates a ServiceAccount. One that exists already is kept: on the real node the
/// controller-manager makes `default` in every new namespace.
pub async fn service_account(client: &Client, ns: &str, name: &str) {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create serviceaccount {ns}/{name}: {e}"),
    }
}

/// Mints a ServiceAccount token with TokenRequest for one audience.
pub async fn token(client: &Client, ns: &str, sa: &str, audience: &str, seconds: i64) -> String {
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_string()],
            expiration_seconds: Some(seconds),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let out = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{sa}: {e}"));
    out.status
        .map(|s| s.token)
        .expect("TokenRequest returns a status with a token")
}
