//! Invalid (and a few valid) annotation maps under `testdata/annotations/`, each with the exact
//! problem text a user sees at `kubectl apply`. Each file is
//! `{"annotations": {...}, "operator": {...}?, "expect": "<message>" | null}`; `null` means the map
//! is valid. Without `operator` the fixture uses Vault and AWS configured and roles `app`/`web`
//! allowed. `HUSH_BLESS=1 cargo test -p hush-sidecar --test annotations_fixtures` rewrites
//! `expect` from the parser's output (review the diff before committing).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::PathBuf;

use hush_config::SidecarConfig;
use hush_config::{AwsSettings, OperatorSettings, VaultSettings};

fn default_operator() -> OperatorSettings {
    OperatorSettings {
        vault: Some(VaultSettings {
            addr: "https://vault.example:8200".into(),
            ca_pem: None,
            auth_mount: "kubernetes".into(),
            approle_mount: "approle".into(),
            audience: "vault".into(),
            tls_skip_verify: false,
            namespace: None,
            allowed_namespaces: Vec::new(),
            revoke_certificates: false,
        }),
        aws: Some(AwsSettings {
            region: "eu-west-1".into(),
            endpoint: None,
            audience: "sts.amazonaws.com".into(),
        }),
        allowed_roles: Some(vec!["app".into(), "web".into()]),
        ..OperatorSettings::default()
    }
}

#[test]
fn fixtures_give_the_expected_messages() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/annotations");
    let bless = std::env::var_os("HUSH_BLESS").is_some();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/annotations exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 60, "fixtures missing in {}", dir.display());
    let mut failures = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(doc["annotations"].clone()).unwrap();
        let operator = match doc.get("operator") {
            Some(op) => serde_json::from_value(op.clone()).unwrap(),
            None => default_operator(),
        };
        let got = match SidecarConfig::from_annotations(&annotations, "team-a", &operator) {
            Ok(cfg) => {
                // A valid map also survives the HUSH_CONFIG round trip.
                assert_eq!(SidecarConfig::from_json(&cfg.to_json()).unwrap(), cfg);
                serde_json::Value::Null
            }
            Err(e) => serde_json::Value::String(e.to_string()),
        };
        if bless {
            doc["expect"] = got;
            std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
        } else if doc["expect"] != got {
            failures.push(format!(
                "{}:\n  expected {}\n  got      {}",
                path.file_name().unwrap().to_string_lossy(),
                doc["expect"],
                got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
