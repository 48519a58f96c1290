//! Source references (`vault:`, `aws:`, `sealed:`): arbitrary strings through `SourceRef::parse`.
//! It must never panic, and a reference it accepts must also pass `validate` (the check the
//! sidecar repeats on a deserialised config).
#![no_main]

use hush_config::SourceRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = SourceRef::parse(&text) {
        let _ = r.kind();
        let _ = r.selects_single_value();
        assert!(r.validate().is_ok(), "a parsed reference fails its own validation");
    }
});
