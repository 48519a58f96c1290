//! Property tests of the mutation: it never panics on arbitrary annotation maps, every patch it
//! produces applies to the pod it was made for, and admitting the patched pod again changes
//! nothing (applying the patch twice equals applying it once).

use std::collections::BTreeMap;

use hush_injector::InjectorConfig;
use hush_injector::RawConfig;
use hush_injector::mutate;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use serde_json::Value;

fn config() -> InjectorConfig {
    RawConfig::from_yaml(
        "sidecar: {image: 'hush-sidecar:test'}\noperator: {vault: {addr: 'https://vault:8200'}, aws: {region: eu-west-1}}\npodSecurity: {allowFsGroup: true, allowShareProcessNamespace: true}\n",
        "inline",
    )
    .and_then(RawConfig::build)
    .expect("valid config")
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("hush.dev/inject".to_string()),
        Just("hush.dev/role".to_string()),
        Just("hush.dev/refresh".to_string()),
        Just("hush.dev/mode".to_string()),
        Just("hush.dev/containers".to_string()),
        Just("hush.dev/mount-path".to_string()),
        Just("hush.dev/on-change".to_string()),
        Just("hush.dev/aws-role-arn".to_string()),
        Just("hush.dev/vault-auth".to_string()),
        Just("hush.dev/vault-auth-secret".to_string()),
        Just("hush.dev/status".to_string()),
        "hush\\.dev/(secret|template|format|mode)-[a-z0-9._/-]{0,12}",
        "hush\\.dev/[a-z-]{0,20}",
        "[a-z./]{1,20}",
        ".{0,70}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        Just("app".to_string()),
        Just("init-only".to_string()),
        Just("sidecar".to_string()),
        Just("5m".to_string()),
        Just("web,worker,init".to_string()),
        Just("signal:HUP:nginx".to_string()),
        Just("http:http://127.0.0.1:9000/reload".to_string()),
        Just("json".to_string()),
        Just("0400".to_string()),
        Just("/etc/secrets".to_string()),
        Just("arn:aws:iam::123456789012:role/app".to_string()),
        "vault:[a-z/#?=.0-9]{0,30}",
        "aws:[a-zA-Z/#?=.-]{0,30}",
        "sealed:[a-z-]{1,10}/[a-z.]{1,10}",
        ".{0,40}",
    ]
}

fn container(name: &str, uid: Option<i64>) -> Container {
    Container {
        name: name.to_string(),
        image: Some("app:1".into()),
        security_context: uid.map(|u| k8s_openapi::api::core::v1::SecurityContext {
            run_as_user: Some(u),
            ..Default::default()
        }),
        ..Container::default()
    }
}

fn pod_strategy() -> impl Strategy<Value = Pod> {
    (
        proptest::collection::btree_map(key(), value(), 0..12),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(1i64..70000),
    )
        .prop_map(
            |(mut annotations, with_init, with_volumes, uid): (
                BTreeMap<String, String>,
                bool,
                bool,
                Option<i64>,
            )| {
                if !annotations.contains_key("hush.dev/inject") && annotations.len() % 2 == 0 {
                    annotations.insert("hush.dev/inject".into(), "true".into());
                }
                Pod {
                    metadata: ObjectMeta {
                        name: Some("p".into()),
                        namespace: Some("ns".into()),
                        annotations: Some(annotations),
                        ..ObjectMeta::default()
                    },
                    spec: Some(PodSpec {
                        containers: vec![container("web", uid), container("worker", None)],
                        init_containers: with_init.then(|| vec![container("init", uid)]),
                        volumes: with_volumes.then(|| {
                            vec![Volume {
                                name: "data".into(),
                                ..Volume::default()
                            }]
                        }),
                        ..PodSpec::default()
                    }),
                    status: None,
                }
            },
        )
}

fn apply(pod: &Pod, patch: &json_patch::Patch) -> Value {
    let mut doc = serde_json::to_value(pod).expect("pod json");
    json_patch::patch(&mut doc, &patch.0).expect("the patch applies to the pod it was made for");
    doc
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutate_never_panics_and_is_idempotent(pod in pod_strategy()) {
        let cfg = config();
        if let Ok(patch) = mutate(&pod, &cfg, "ns") {
            let once = apply(&pod, &patch);
            let patched: Pod = serde_json::from_value(once.clone()).expect("patched pod decodes");
            let second = mutate(&patched, &cfg, "ns").expect("a patched pod is admitted again");
            prop_assert!(second.0.is_empty(), "second patch not empty: {second:?}");
            let twice = apply(&patched, &second);
            prop_assert_eq!(once, twice);
        }
    }

    #[test]
    fn well_formed_opt_in_is_always_injected(file in "[a-z][a-z0-9]{0,10}", path in "[a-z]{1,8}/data/[a-z]{1,8}") {
        let cfg = config();
        let pod = Pod {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([
                    ("hush.dev/inject".to_string(), "true".to_string()),
                    ("hush.dev/role".to_string(), "app".to_string()),
                    (format!("hush.dev/secret-{file}"), format!("vault:{path}")),
                ])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { containers: vec![container("web", None)], ..PodSpec::default() }),
            status: None,
        };
        let patch = mutate(&pod, &cfg, "ns").expect("valid pod is admitted");
        let doc = apply(&pod, &patch);
        prop_assert_eq!(&doc["spec"]["initContainers"][0]["name"], "hush-sidecar");
        prop_assert_eq!(&doc["spec"]["containers"][0]["volumeMounts"][0]["readOnly"], true);
    }
}
