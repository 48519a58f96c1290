//! `HUSH_CONFIG`: arbitrary bytes through `SidecarConfig::from_json`, the sidecar's entry point
//! (version probe, unknown fields, full re-validation). It must never panic, and a document it
//! accepts must serialise to JSON that parses back to the same config.
#![no_main]

use hush_config::SidecarConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = SidecarConfig::from_json(text) {
        let json = cfg.to_json();
        let back = SidecarConfig::from_json(&json);
        assert!(back.is_ok(), "an accepted HUSH_CONFIG does not parse back from its own JSON");
        if let Ok(back) = back {
            assert_eq!(back.to_json(), json, "the HUSH_CONFIG round trip changed the config");
        }
    }
});
