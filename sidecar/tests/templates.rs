//! Templates over several files (`files["name"]`) at the annotation parser: what `kubectl apply`
//! answers for unknown names, self-reads and cycles, and the config a template-only file gives.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;

use hush_config::{Error, Format, OperatorSettings, SidecarConfig, VaultSettings};

fn operator() -> OperatorSettings {
    OperatorSettings {
        vault: Some(VaultSettings::new("https://127.0.0.1:8200".into())),
        ..OperatorSettings::default()
    }
}

const DSN: &str = r#"postgres://{{ files["db-creds"].username }}:{{ files["db-creds"].password }}@{{ files["db-host"].host }}/app"#;

fn pod(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [
        ("hush.dev/inject", "true"),
        ("hush.dev/role", "app"),
        ("hush.dev/secret-db-creds", "vault:database/creds/app"),
        ("hush.dev/secret-db-host", "vault:secret/data/app/db"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

/// The problems, as (annotation, reason).
fn refused(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    match SidecarConfig::from_annotations(&pod(extra), "ns", &operator()) {
        Err(Error::Annotations(p)) => p.into_iter().map(|p| (p.annotation, p.reason)).collect(),
        Err(e) => panic!("expected a list of problems, got {e}"),
        Ok(_) => panic!("expected a refusal"),
    }
}

#[test]
fn a_template_only_file_renders_from_other_files() {
    let cfg = SidecarConfig::from_annotations(
        &pod(&[
            ("hush.dev/template-dsn", DSN),
            ("hush.dev/mode-dsn", "0400"),
        ]),
        "ns",
        &operator(),
    )
    .unwrap();
    let dsn = cfg.files.iter().find(|f| f.name == "dsn").unwrap();
    assert_eq!(dsn.source, None);
    assert_eq!(dsn.format, Format::Template);
    assert_eq!(dsn.mode, 0o400);
    // The sidecar gets the same config back from HUSH_CONFIG, and checks it again.
    assert_eq!(SidecarConfig::from_json(&cfg.to_json()).unwrap(), cfg);
    assert_eq!(
        cfg.read_by_templates().into_iter().collect::<Vec<_>>(),
        ["db-creds", "db-host"]
    );
}

#[test]
fn an_unknown_file_name_is_refused_naming_the_file_and_the_fix() {
    let p = refused(&[(
        "hush.dev/template-dsn",
        r#"{{ files["db-cred"].password }}"#,
    )]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "hush.dev/template-dsn");
    assert!(
        p[0].1
            .contains(r#"files["db-cred"] names no file of this pod"#)
            && p[0].1.contains("db-creds, db-host")
            && p[0].1.contains("add hush.dev/secret-db-cred"),
        "{}",
        p[0].1
    );
}

#[test]
fn a_template_reading_its_own_file_is_refused() {
    let p = refused(&[(
        "hush.dev/template-db-host",
        r#"{{ files["db-host"].host }}"#,
    )]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "hush.dev/template-db-host");
    assert!(p[0].1.contains("reads its own file"), "{}", p[0].1);
    assert!(p[0].1.contains("`data`"), "{}", p[0].1);
}

#[test]
fn template_only_files_reading_each_other_are_refused_as_a_cycle() {
    let p = refused(&[
        (
            "hush.dev/template-a",
            r#"{{ files.b }}{{ files["db-creds"].username }}"#,
        ),
        ("hush.dev/template-b", r#"{{ files["c"] }}"#),
        ("hush.dev/template-c", r#"{{ files["a"] }}"#),
    ]);
    let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "hush.dev/template-a",
            "hush.dev/template-b",
            "hush.dev/template-c"
        ],
        "{p:?}"
    );
    assert!(p[0].1.contains("a -> b -> c -> a"), "{}", p[0].1);
}

#[test]
fn files_with_their_own_secrets_may_read_each_other() {
    // Each reads the other's secret, not its output: no cycle.
    let cfg = SidecarConfig::from_annotations(
        &pod(&[
            (
                "hush.dev/template-db-creds",
                r#"{{ data.username }}@{{ files["db-host"].host }}"#,
            ),
            (
                "hush.dev/template-db-host",
                r#"{{ data.host }} for {{ files["db-creds"].username }}"#,
            ),
        ]),
        "ns",
        &operator(),
    )
    .unwrap();
    assert_eq!(cfg.files.len(), 2);
}

#[test]
fn a_template_only_file_must_read_another_file() {
    let p = refused(&[("hush.dev/template-dsn", "constant")]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "hush.dev/template-dsn");
    assert!(p[0].1.contains("reads none"), "{}", p[0].1);
    // And a format alone still needs a secret.
    let p = refused(&[("hush.dev/format-x", "json")]);
    assert!(
        p[0].1
            .contains("there is no hush.dev/secret-x (or hush.dev/template-x)"),
        "{}",
        p[0].1
    );
}

#[test]
fn a_computed_lookup_is_refused_at_admission() {
    let p = refused(&[(
        "hush.dev/template-dsn",
        r#"{% for n in ["db-creds"] %}{{ files[n].username }}{% endfor %}"#,
    )]);
    assert_eq!(p[0].0, "hush.dev/template-dsn");
    assert!(p[0].1.contains(r#"files["<file>"]"#), "{}", p[0].1);
}
