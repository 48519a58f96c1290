//! The schema handoff: annotations -> `SidecarConfig` -> `HUSH_CONFIG` JSON -> `SidecarConfig`, as the
//! injector and the sidecar use it.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::time::Duration;

use hush_config::Error;
use hush_config::{
    AwsSettings, AwsStage, CONFIG_VERSION, FileSpec, Format, Mode, OnChange, OperatorSettings,
    Signal, SourceKind, SourceRef, VaultAuth, VaultSettings,
};
use hush_config::{SidecarConfig, annotations};
use hush_contract::paths;

fn operator() -> OperatorSettings {
    OperatorSettings {
        vault: Some(VaultSettings {
            addr: "https://127.0.0.1:8200".into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
            auth_mount: "kubernetes".into(),
            approle_mount: "approle".into(),
            audience: "vault".into(),
            tls_skip_verify: false,
            namespace: None,
            allowed_namespaces: Vec::new(),
            revoke_certificates: false,
        }),
        aws: Some(AwsSettings {
            region: "us-east-1".into(),
            endpoint: Some("http://127.0.0.1:5000".into()),
            audience: "sts.amazonaws.com".into(),
        }),
        allow_signal: true,
        fs_group: Some(2000),
        ..OperatorSettings::default()
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn full() -> BTreeMap<String, String> {
    map(&[
        ("hush.dev/inject", "true"),
        ("hush.dev/role", "app"),
        ("hush.dev/secret-db.env", "vault:secret/data/db"),
        ("hush.dev/format-db.env", "env"),
        (
            "hush.dev/secret-password",
            "vault:secret/data/db#password?version=4",
        ),
        ("hush.dev/mode-password", "0400"),
        (
            "hush.dev/secret-api",
            "aws:prod/api#token?stage=AWSPREVIOUS",
        ),
        ("hush.dev/secret-tls", "sealed:tls-bundle/key.pem"),
        ("hush.dev/secret-config.yaml", "vault:secret/data/db"),
        (
            "hush.dev/template-config.yaml",
            "user: {{ data.user }}\npassword: {{ data.password }}\n",
        ),
        ("hush.dev/refresh", "2m"),
        ("hush.dev/on-change", "signal:SIGHUP:nginx"),
        ("hush.dev/containers", "app, worker"),
        ("hush.dev/mount-path", "/etc/app/secrets"),
        (
            "hush.dev/aws-role-arn",
            "arn:aws:iam::123456789012:role/app",
        ),
        ("hush.dev/revoke-on-shutdown", "false"),
        ("hush.dev/status", "anything the injector wrote"),
        ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
        ("example.com/hush.dev/inject", "whatever"),
    ])
}

#[test]
fn full_annotation_set_builds_the_expected_config() {
    let cfg = SidecarConfig::from_annotations(&full(), "team-a", &operator()).unwrap();
    assert_eq!(cfg.version, CONFIG_VERSION);
    assert_eq!(cfg.namespace, "team-a");
    assert_eq!(cfg.mode, Mode::Sidecar);
    assert_eq!(cfg.role.as_deref(), Some("app"));
    assert_eq!(cfg.auth, VaultAuth::Kubernetes);
    assert_eq!(cfg.refresh, Duration::from_secs(120));
    assert_eq!(
        cfg.on_change,
        OnChange::Signal {
            signal: Signal::Hup,
            process: "nginx".into()
        }
    );
    assert_eq!(
        cfg.containers,
        Some(vec!["app".to_string(), "worker".to_string()])
    );
    assert_eq!(cfg.mount_path, "/etc/app/secrets");
    assert!(!cfg.revoke_on_shutdown);
    let names: Vec<&str> = cfg.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["api", "config.yaml", "db.env", "password", "tls"]);
    let by = |n: &str| cfg.files.iter().find(|f| f.name == n).unwrap().clone();
    assert_eq!(
        by("password"),
        FileSpec {
            name: "password".into(),
            source: Some(SourceRef::Vault {
                path: "secret/data/db".into(),
                field: Some("password".into()),
                version: Some(4)
            }),
            format: Format::Raw,
            template: None,
            mode: 0o400,
        }
    );
    assert_eq!(by("db.env").format, Format::Env);
    assert_eq!(by("db.env").mode, 0o440, "fsGroup set: 0440 by default");
    assert_eq!(by("config.yaml").format, Format::Template);
    assert!(by("config.yaml").template.unwrap().contains('\n'));
    assert_eq!(
        by("api").source,
        Some(SourceRef::Aws {
            id: "prod/api".into(),
            json_key: Some("token".into()),
            stage: AwsStage::Previous
        })
    );
    assert!(cfg.has_vault() && cfg.has_aws() && cfg.has_sealed());
    assert_eq!(
        cfg.sealed_configmaps().into_iter().collect::<Vec<_>>(),
        ["tls-bundle"]
    );
    assert_eq!(cfg.sources_of_kind(SourceKind::Vault).count(), 3);
}

#[test]
fn defaults_without_fs_group_are_0444_and_sidecar_mode() {
    let mut op = operator();
    op.fs_group = None;
    let cfg = SidecarConfig::from_annotations(
        &map(&[
            ("hush.dev/inject", "true"),
            ("hush.dev/secret-s", "sealed:cm/k"),
        ]),
        "ns",
        &op,
    )
    .unwrap();
    assert_eq!(cfg.files[0].mode, 0o444);
    assert_eq!(cfg.mount_path, paths::DEFAULT_APP_MOUNT_PATH);
    assert_eq!(cfg.refresh, op.default_refresh);
    assert_eq!(cfg.on_change, OnChange::None);
    assert!(cfg.revoke_on_shutdown);
    assert!(!cfg.has_vault() && !cfg.has_aws());
}

#[test]
fn init_only_never_revokes() {
    let cfg = SidecarConfig::from_annotations(
        &map(&[
            ("hush.dev/inject", "true"),
            ("hush.dev/mode", "init-only"),
            ("hush.dev/secret-s", "sealed:cm/k"),
        ]),
        "ns",
        &operator(),
    )
    .unwrap();
    assert_eq!(cfg.mode, Mode::InitOnly);
    assert!(!cfg.revoke_on_shutdown);
}

#[test]
fn on_change_http_accepts_the_bare_url_too() {
    for v in [
        "http:http://127.0.0.1:8080/-/reload",
        "http://127.0.0.1:8080/-/reload",
    ] {
        let mut m = map(&[
            ("hush.dev/inject", "true"),
            ("hush.dev/secret-s", "sealed:cm/k"),
        ]);
        m.insert("hush.dev/on-change".into(), v.into());
        let cfg = SidecarConfig::from_annotations(&m, "ns", &operator()).unwrap();
        assert_eq!(
            cfg.on_change,
            OnChange::Http {
                url: "http://127.0.0.1:8080/-/reload".into()
            }
        );
    }
}

#[test]
fn pods_that_do_not_opt_in() {
    let op = operator();
    // No hush annotation at all, or an explicit "false": nothing to do.
    assert_eq!(
        annotations::check(&map(&[("a", "b")]), "ns", &op).unwrap(),
        None
    );
    assert_eq!(
        annotations::check(
            &map(&[
                ("hush.dev/inject", "false"),
                ("hush.dev/secret-x", "vault:kv/x")
            ]),
            "ns",
            &op
        )
        .unwrap(),
        None
    );
    // The status annotation alone is ignored.
    assert_eq!(
        annotations::check(&map(&[("hush.dev/status", "injected")]), "ns", &op).unwrap(),
        None
    );
    // from_annotations insists on the opt-in.
    let e = SidecarConfig::from_annotations(&map(&[]), "ns", &op).unwrap_err();
    assert_eq!(
        e.to_string(),
        "annotation \"hush.dev/inject\": must be \"true\" for the pod to get a sidecar"
    );
    assert!(!annotations::inject_requested(&map(&[(
        "hush.dev/inject",
        "True"
    )])));
    assert!(annotations::inject_requested(&map(&[(
        "hush.dev/inject",
        "true"
    )])));
}

#[test]
fn all_problems_are_reported_at_once() {
    let e = SidecarConfig::from_annotations(
        &map(&[
            ("hush.dev/inject", "true"),
            ("hush.dev/role", "app"),
            ("hush.dev/secret-a", "vault:kv/a"),
            ("hush.dev/refresh", "forever"),
            ("hush.dev/mode-a", "0777"),
            ("hush.dev/mount-path", "/"),
        ]),
        "ns",
        &operator(),
    )
    .unwrap_err();
    let Error::Annotations(problems) = &e else {
        panic!("{e}")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.annotation.as_str()).collect();
    assert_eq!(
        keys,
        ["hush.dev/mode-a", "hush.dev/refresh", "hush.dev/mount-path"]
    );
}

#[test]
fn json_round_trip_and_shape() {
    let cfg = SidecarConfig::from_annotations(&full(), "team-a", &operator()).unwrap();
    let json = cfg.to_json();
    assert!(json.starts_with("{\"version\":1,"), "{json}");
    assert_eq!(SidecarConfig::from_json(&json).unwrap(), cfg);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["refreshSeconds"], 120);
    assert_eq!(v["mode"], "sidecar");
    assert_eq!(v["onChange"]["kind"], "signal");
    assert_eq!(v["onChange"]["signal"], "HUP");
    assert_eq!(v["operator"]["fsGroup"], 2000);
    assert_eq!(v["operator"]["vault"]["addr"], "https://127.0.0.1:8200");
}

#[test]
fn from_json_refuses_other_versions_naming_both() {
    let cfg = SidecarConfig::from_annotations(&full(), "team-a", &operator()).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg.to_json()).unwrap();
    v["version"] = 2.into();
    let e = SidecarConfig::from_json(&v.to_string()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("version 2") && msg.contains("version 1"),
        "{msg}"
    );
    let e = SidecarConfig::from_json(r#"{"namespace":"x"}"#).unwrap_err();
    assert!(e.to_string().contains("version none"), "{e}");
}

#[test]
fn from_json_refuses_unknown_fields_and_revalidates() {
    let cfg = SidecarConfig::from_annotations(&full(), "team-a", &operator()).unwrap();
    let base: serde_json::Value = serde_json::from_str(&cfg.to_json()).unwrap();

    let mut v = base.clone();
    v["vaultAddr"] = "https://evil".into();
    assert!(matches!(
        SidecarConfig::from_json(&v.to_string()),
        Err(Error::ConfigJson(_))
    ));

    let mut v = base.clone();
    v["operator"]["vault"]["insecure"] = true.into();
    assert!(matches!(
        SidecarConfig::from_json(&v.to_string()),
        Err(Error::ConfigJson(_))
    ));

    // Hand-edited values get the annotation rules.
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "files[].name",
            Box::new(|v| v["files"][0]["name"] = "../x".into()),
        ),
        (
            "files[api].mode",
            Box::new(|v| v["files"][0]["mode"] = 0o4755.into()),
        ),
        (
            "files[api].source",
            Box::new(|v| v["files"][0]["source"]["id"] = "a b".into()),
        ),
        ("mountPath", Box::new(|v| v["mountPath"] = "/hush".into())),
        (
            "refreshSeconds",
            Box::new(|v| v["refreshSeconds"] = 1.into()),
        ),
        (
            "onChange",
            Box::new(|v| {
                v["onChange"] = serde_json::json!({"kind":"http","url":"http://10.0.0.1:80/"})
            }),
        ),
        ("files", Box::new(|v| v["files"] = serde_json::json!([]))),
        (
            "operator.vault.addr",
            Box::new(|v| v["operator"]["vault"]["addr"] = "http://vault:8200".into()),
        ),
        ("namespace", Box::new(|v| v["namespace"] = "Team A".into())),
    ];
    for (field, edit) in cases {
        let mut v = base.clone();
        edit(&mut v);
        match SidecarConfig::from_json(&v.to_string()) {
            Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn operator_settings_json_is_camel_case_with_defaults() {
    let op: OperatorSettings = serde_json::from_str(
        r#"{"vault":{"addr":"https://v:8200"},"allowedRoles":["a"],"allowSignal":true,"fsGroup":1000,"defaultRefreshSeconds":60}"#,
    )
    .unwrap();
    assert_eq!(op.vault.as_ref().unwrap().auth_mount, "kubernetes");
    assert_eq!(op.vault.as_ref().unwrap().audience, "vault");
    assert_eq!(op.default_refresh, Duration::from_secs(60));
    assert_eq!(op.metrics_port, 9102);
    op.validate().unwrap();
    let bad = OperatorSettings {
        min_refresh: Duration::from_secs(600),
        ..OperatorSettings::default()
    };
    assert!(matches!(bad.validate(), Err(Error::Config { .. })));
}

#[test]
fn reference_table_markdown_lists_every_row() {
    let md = annotations::reference_table_markdown();
    assert!(md.starts_with("| Annotation | Values | Default | Description |\n|---|---|---|---|\n"));
    assert_eq!(md.lines().count(), annotations::reference_table().len() + 2);
    for row in annotations::reference_table() {
        assert!(md.contains(&format!("| `{}` |", row.key)), "{}", row.key);
        // Pipes inside cells are escaped so the table keeps four columns.
        assert!(!row.values.is_empty());
    }
    for line in md.lines() {
        assert_eq!(line.replace("\\|", "").matches('|').count(), 5, "{line}");
    }
}

#[test]
fn every_documented_key_is_accepted_by_the_parser() {
    // A documented key must never be reported as unknown.
    for row in annotations::reference_table() {
        let key = row.key.replace("<file>", "f");
        let mut m = map(&[
            ("hush.dev/inject", "true"),
            ("hush.dev/secret-f", "sealed:cm/k"),
        ]);
        m.insert(key.clone(), "x".into());
        if let Err(Error::Annotations(ps)) = annotations::check(&m, "ns", &operator()) {
            for p in ps {
                assert!(
                    !p.reason.starts_with("unknown annotation"),
                    "{key} is documented but unknown to the parser"
                );
            }
        }
    }
}

/// `hush.dev/vault-namespace`: only a namespace on the operator's `vault.allowedNamespaces`, and
/// the operator's `vault.namespace` when the pod chooses none.
#[test]
fn vault_namespace_comes_from_the_operator_allowlist() {
    let pod = |ns: Option<&str>| {
        let mut a = map(&[
            ("hush.dev/inject", "true"),
            ("hush.dev/role", "app"),
            ("hush.dev/secret-db", "vault:secret/data/db#password"),
        ]);
        if let Some(ns) = ns {
            a.insert("hush.dev/vault-namespace".into(), ns.into());
        }
        a
    };
    let mut op = operator();
    let none = SidecarConfig::from_annotations(&pod(Some("team-a")), "prod", &op)
        .unwrap_err()
        .to_string();
    assert!(
        none.contains("hush.dev/vault-namespace") && none.contains("allowed: none"),
        "{none}"
    );
    let vault = op.vault.as_mut().unwrap();
    vault.namespace = Some("platform".into());
    vault.allowed_namespaces = vec!["team-a".into(), "org/team-b".into()];
    let chosen = SidecarConfig::from_annotations(&pod(Some("org/team-b")), "prod", &op).unwrap();
    assert_eq!(chosen.vault_namespace(), Some("org/team-b"));
    let default = SidecarConfig::from_annotations(&pod(None), "prod", &op).unwrap();
    assert_eq!(default.vault_namespace(), Some("platform"));
    let denied = SidecarConfig::from_annotations(&pod(Some("team-c")), "prod", &op)
        .unwrap_err()
        .to_string();
    assert!(denied.contains("allowed: team-a, org/team-b"), "{denied}");
    let malformed = SidecarConfig::from_annotations(&pod(Some("a//b")), "prod", &op)
        .unwrap_err()
        .to_string();
    assert!(malformed.contains("segments of"), "{malformed}");
    // The choice survives HUSH_CONFIG, and the sidecar re-checks it.
    let back = SidecarConfig::from_json(&chosen.to_json()).unwrap();
    assert_eq!(back.vault_namespace(), Some("org/team-b"));
}
