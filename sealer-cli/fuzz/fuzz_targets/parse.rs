//! Arbitrary bytes through every parser of untrusted input: Secret manifests, sealed ConfigMaps,
//! `_hush` metadata, identity files and `.hush.yaml` rules. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = hush_sealer::Secret::parse(&text, "fuzz");
    if let Ok(cm) = hush_sealer::SealedConfigMap::parse(&text, "fuzz") {
        let _ = hush_sealed_format::sealed::check_structure(&cm.data, &cm.namespace, &cm.name, "k");
        let _ = hush_sealed_format::sealed::check_ciphertext_headers(&cm.data, "fuzz");
    }
    let _ = hush_sealed_format::format::Meta::parse(&text, "fuzz");
    let _ = hush_sealer::parse_identity(&text);
    let _ = hush_sealer::Rules::parse(&text, std::path::Path::new("/fuzz/.hush.yaml"));
});
