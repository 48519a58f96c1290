//! Property tests of the annotation parser: it never panics on arbitrary annotation maps, every
//! error names `hush.dev/` annotations only, and every config it accepts survives the
//! `HUSH_CONFIG` round trip unchanged.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;

use hush_config::Error;
use hush_config::{AwsSettings, OperatorSettings, VaultSettings};
use hush_config::{SidecarConfig, annotations};
use proptest::prelude::*;

fn operator(allow_signal: bool, fs_group: Option<i64>) -> OperatorSettings {
    OperatorSettings {
        vault: Some(VaultSettings {
            addr: "https://vault:8200".into(),
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
        allow_signal,
        fs_group,
        allowed_roles: Some(vec!["app".into()]),
        ..OperatorSettings::default()
    }
}

/// Keys: mostly plausible hush.dev keys (every row of the annotation table), some noise.
fn key() -> impl Strategy<Value = String> {
    let table = annotations::reference_table();
    let whole: Vec<&'static str> = table
        .iter()
        .filter(|a| a.scope != annotations::Scope::PerFile)
        .map(|a| a.key)
        .collect();
    let mut prefixes: Vec<&'static str> = annotations::file_rows().map(|(_, a)| a.name()).collect();
    prefixes.push("secrets-");
    prop_oneof![
        prop::sample::select(whole).prop_map(str::to_string),
        (prop::sample::select(prefixes), "[a-zA-Z0-9._/-]{0,12}")
            .prop_map(|(p, f)| format!("hush.dev/{p}{f}")),
        "hush\\.dev/.{0,70}",
        ".{0,20}",
    ]
}

/// Values: mostly plausible, some arbitrary.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "true",
            "false",
            "app",
            "5m",
            "30s",
            "1h30m",
            "none",
            "sidecar",
            "init-only",
            "raw",
            "json",
            "env",
            "yaml",
            "0440",
            "0400",
            "0777",
            "kubernetes",
            "approle",
            "token",
            "creds",
            "app,web",
            "/etc/app",
            "http:http://127.0.0.1:8080/r",
            "signal:HUP:nginx",
            "arn:aws:iam::123456789012:role/app",
            "{{ data.x }}",
            "{% if",
        ])
        .prop_map(str::to_string),
        (
            prop::sample::select(vec!["vault:", "aws:", "sealed:"]),
            "[a-zA-Z0-9/._#?=%-]{0,30}"
        )
            .prop_map(|(s, r)| format!("{s}{r}")),
        ".{0,80}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_and_accepted_configs_round_trip(
        ann in prop::collection::btree_map(key(), value(), 0..12),
        with_inject in any::<bool>(),
        allow_signal in any::<bool>(),
        fs_group in prop::option::of(0i64..70000),
    ) {
        let mut ann: BTreeMap<String, String> = ann;
        if with_inject {
            ann.insert("hush.dev/inject".into(), "true".into());
        }
        let op = operator(allow_signal, fs_group);
        match annotations::check(&ann, "team-a", &op) {
            Ok(Some(cfg)) => {
                let json = cfg.to_json();
                prop_assert_eq!(SidecarConfig::from_json(&json).unwrap(), cfg.clone());
                prop_assert!(!cfg.files.is_empty());
            }
            Ok(None) => prop_assert!(!annotations::inject_requested(&ann)),
            Err(Error::Annotations(problems)) => {
                prop_assert!(!problems.is_empty());
                for p in problems {
                    prop_assert!(p.annotation.starts_with("hush.dev/"), "{}", p.annotation);
                    prop_assert!(!p.reason.is_empty());
                }
            }
            Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
        }
    }

    #[test]
    fn from_json_never_panics(s in ".{0,200}") {
        let _ = SidecarConfig::from_json(&s);
    }
}

/// A valid `secret-` value and a format that fits it.
fn source_and_format() -> impl Strategy<Value = (String, Option<&'static str>)> {
    let vault = (
        "[a-z]{1,8}(/[a-z0-9_-]{1,8}){0,3}",
        prop::option::of("[a-z_]{1,8}"),
        prop::option::of(1u64..1000),
    )
        .prop_map(|(p, f, v)| {
            let mut s = format!("vault:{p}");
            let single = f.is_some();
            if let Some(f) = f {
                s.push('#');
                s.push_str(&f);
            }
            if let Some(v) = v {
                s.push_str(&format!("?version={v}"));
            }
            (s, single)
        });
    let aws = ("[A-Za-z0-9/_+=.@-]{1,20}", prop::option::of("[a-z]{1,6}"))
        .prop_map(|(id, k)| match k {
            Some(k) => (format!("aws:{id}#{k}"), true),
            None => (format!("aws:{id}"), false),
        })
        .prop_filter("no dot segments", |(s, _)| {
            !s[4..].split(['/', '#']).any(|x| x == "." || x == "..")
        });
    let sealed = (
        "[a-z][a-z0-9-]{0,10}[a-z0-9]",
        "[A-Za-z0-9_][A-Za-z0-9._-]{0,10}",
    )
        .prop_map(|(c, k)| (format!("sealed:{c}/{k}"), true));
    (
        prop_oneof![vault, aws, sealed],
        prop::sample::select(vec![
            None,
            Some("raw"),
            Some("json"),
            Some("env"),
            Some("yaml"),
        ]),
    )
        .prop_map(|((s, single), f)| (s, if single { f.filter(|f| *f == "raw") } else { f }))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn valid_maps_are_accepted_and_round_trip(
        files in prop::collection::btree_map(
            "[a-zA-Z0-9][a-zA-Z0-9._-]{0,20}[a-zA-Z0-9]",
            (source_and_format(), prop::option::of(prop::sample::select(vec!["0400", "0440", "0444", "0600", "0644"]))),
            1..6,
        ),
        refresh in prop::option::of(prop::sample::select(vec!["10s", "5m", "1h", "1h30m", "24h"])),
        on_change in prop::option::of(prop::sample::select(vec!["none", "http:http://127.0.0.1:9000/reload", "http:http://[::1]:1/x"])),
        mount in prop::option::of("/[a-z]{1,8}(/[a-z0-9_-]{1,8}(\\.[a-z]{1,3})?){0,2}"),
        fs_group in prop::option::of(0i64..70000),
    ) {
        let mut ann = BTreeMap::new();
        ann.insert("hush.dev/inject".to_string(), "true".to_string());
        let mut any_vault = false;
        for (name, ((src, fmt), mode)) in &files {
            any_vault |= src.starts_with("vault:");
            ann.insert(format!("hush.dev/secret-{name}"), src.clone());
            if let Some(f) = fmt {
                ann.insert(format!("hush.dev/format-{name}"), f.to_string());
            }
            if let Some(m) = mode {
                ann.insert(format!("hush.dev/mode-{name}"), m.to_string());
            }
        }
        if any_vault {
            ann.insert("hush.dev/role".into(), "app".into());
        }
        if let Some(r) = refresh { ann.insert("hush.dev/refresh".into(), r.into()); }
        if let Some(o) = on_change { ann.insert("hush.dev/on-change".into(), o.into()); }
        let mount_ok = mount.as_deref().is_none_or(|m| m != "/hush" && !m.starts_with("/hush/") && m != "/var" && m != "/run");
        prop_assume!(mount_ok);
        if let Some(m) = &mount { ann.insert("hush.dev/mount-path".into(), m.clone()); }

        let op = operator(false, fs_group);
        let cfg = SidecarConfig::from_annotations(&ann, "team-a", &op)
            .unwrap_or_else(|e| panic!("{e}\n{ann:#?}"));
        prop_assert_eq!(cfg.files.len(), files.len());
        for f in &cfg.files {
            let (_, mode) = &files[&f.name];
            let want = match mode {
                Some(m) => u32::from_str_radix(m, 8).unwrap(),
                None if fs_group.is_some() => 0o440,
                None => 0o444,
            };
            prop_assert_eq!(f.mode, want);
            prop_assert_eq!(
                hush_config::SourceRef::parse(&f.source.as_ref().unwrap().to_string()).unwrap(),
                f.source.clone().unwrap()
            );
        }
        prop_assert_eq!(SidecarConfig::from_json(&cfg.to_json()).unwrap(), cfg);
    }
}
