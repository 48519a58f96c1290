//! Property tests: any valid Secret (random keys, binary and text values, labels, annotations,
//! scope) seals and opens back to exactly itself; its plaintext YAML rendering (both the `data`
//! form `unseal` writes and the editable `stringData` form `edit` writes) parses back to itself;
//! and arbitrary bytes never make the parsers panic.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use hush_sealed_format::format::{Scope, SecretMeta};
use hush_sealer::{SealedConfigMap, Secret};
use proptest::prelude::*;

use common::*;

fn key() -> impl Strategy<Value = String> {
    "[-._a-zA-Z0-9]{1,20}".prop_filter("valid, not reserved", |k| {
        hush_sealed_format::format::validate_key(k).is_ok()
    })
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "(?s).{0,80}".prop_map(String::into_bytes),
        "[a-z \n]{0,40}".prop_map(String::into_bytes),
    ]
}

fn secret() -> impl Strategy<Value = Secret> {
    (
        "[a-z][a-z0-9-]{0,10}[a-z0-9]",
        proptest::collection::btree_map(key(), value(), 0..6),
        proptest::collection::btree_map("[a-z./]{1,12}", ".{0,20}", 0..3),
        proptest::collection::btree_map("[a-z.]{1,12}", "(?s).{0,30}", 0..3),
        prop_oneof![Just("Opaque".to_owned()), "[a-z./]{1,20}"],
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(name, values, labels, annotations, type_, immutable)| Secret {
                name,
                namespace: Some("prod".into()),
                meta: SecretMeta {
                    type_,
                    labels,
                    annotations: annotations
                        .into_iter()
                        .filter(|(k, _)| k != hush_sealed_format::secret::LAST_APPLIED)
                        .collect(),
                    immutable,
                },
                values: values.into_iter().map(|(k, v)| (k, val(&v))).collect(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn seal_open_round_trip(s in secret(), namespace_scope in any::<bool>()) {
        let scope = if namespace_scope { Scope::Namespace } else { Scope::Strict };
        let cm = hush_sealer::seal(&s, "prod", scope, &[recipient("prod"), recipient("team")]).unwrap();
        // Through the rendered manifest, as Git would store it.
        let parsed = SealedConfigMap::parse(&cm.to_yaml(), "t").unwrap();
        prop_assert_eq!(&parsed, &cm);
        let back = hush_sealer::unseal(&parsed, &[identity("team")]).unwrap();
        prop_assert_eq!(&back, &s);
        for (k, v) in &s.values {
            let got = hush_sealer::open_value(&parsed.data, "prod", &s.name, k, &identity("prod")).unwrap();
            prop_assert_eq!(got.as_slice(), v.expose());
        }
    }

    #[test]
    fn plaintext_rendering_round_trips(s in secret(), editable in any::<bool>()) {
        let text = s.to_yaml(editable);
        let back = Secret::parse(&text, "t").unwrap();
        prop_assert_eq!(back, s);
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Secret::parse(&text, "t");
        let _ = SealedConfigMap::parse(&text, "t");
        let _ = hush_sealer::parse_identity(&text);
        let mut data = BTreeMap::new();
        data.insert("_hush".to_owned(), text.clone().into_owned());
        data.insert("k".to_owned(), text.into_owned());
        let _ = hush_sealer::open_value(&data, "prod", "db", "k", &identity("prod"));
    }
}
