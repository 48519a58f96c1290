//! The annotation parser: fuzzer bytes become a pod's annotation map (lines `key=value`, keys
//! mostly under `hush.dev/`) and go through `annotations::check` with an operator that has both
//! stores. It must never panic; a config it accepts must survive `to_json`/`from_json` unchanged,
//! since that is the injector-to-sidecar handoff.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use hush_config::{AwsSettings, OperatorSettings, SidecarConfig, VaultSettings};
use libfuzzer_sys::fuzz_target;

fn operator() -> &'static OperatorSettings {
    static O: OnceLock<OperatorSettings> = OnceLock::new();
    O.get_or_init(|| OperatorSettings {
        vault: Some(VaultSettings::new("https://vault.example:8200".into())),
        aws: Some(AwsSettings::new("eu-west-1".into())),
        ..OperatorSettings::default()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut annotations = BTreeMap::new();
    // Records separated by NUL so values may hold newlines (templates); a key without a
    // `hush.dev/` prefix gets one unless it starts with `!`.
    for record in text.split('\0') {
        let (k, v) = record.split_once('=').unwrap_or((record, ""));
        let key = match k.strip_prefix('!') {
            Some(raw) => raw.to_string(),
            None => format!("hush.dev/{k}"),
        };
        annotations.insert(key, v.to_string());
    }
    let namespace = "shop";
    let op = operator();
    let checked = hush_config::annotations::check(&annotations, namespace, op);
    let _ = SidecarConfig::from_annotations(&annotations, namespace, op);
    if let Ok(Some(cfg)) = checked {
        let json = cfg.to_json();
        let back = SidecarConfig::from_json(&json);
        assert!(back.is_ok(), "an accepted config does not parse back from its own JSON");
        if let Ok(back) = back {
            assert_eq!(back.to_json(), json, "the HUSH_CONFIG round trip changed the config");
        }
    }
});
