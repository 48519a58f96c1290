//! The webhook's request path without the server: arbitrary bytes as an AdmissionReview body
//! through `hush_injector::review` on both endpoints, with the test config. It must never panic and
//! always answer a JSON AdmissionReview (2xx or 4xx), never a 5xx.
#![no_main]

use std::sync::OnceLock;

use hush_injector::{Endpoint, InjectorConfig, Metrics};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    cfg: InjectorConfig,
    metrics: Metrics,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        cfg: InjectorConfig::for_tests("registry.example/hush-sidecar:fuzz"),
        metrics: Metrics::new(),
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&selector, body)) = data.split_first() else { return };
    let endpoint = if selector & 1 == 0 { Endpoint::Mutate } else { Endpoint::Validate };
    let answer = hush_injector::review(endpoint, body, &f.cfg, &f.metrics);
    assert!(answer.http_status < 500, "a request body produced a server error");
    let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&answer.body);
    assert!(parsed.is_ok(), "the answer is not JSON");
});
