//! Prometheus metrics of the webhook. Labels are bounded enums (path, outcome, denial reason), never
//! names, namespaces or annotation values, so cardinality stays fixed and nothing a tenant writes
//! reaches the metrics.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Which endpoint answered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    Validate,
}

/// How a review ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with no change (not ours, not opted in, UPDATE/DELETE, already injected).
    Allowed,
    /// Allowed with a patch.
    Patched,
    /// Denied with our message.
    Denied,
    /// The request itself was bad (malformed, wrong apiVersion, too large).
    BadRequest,
}

impl Endpoint {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Patched => "patched",
            Outcome::Denied => "denied",
            Outcome::BadRequest => "bad_request",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

/// The webhook's metrics and their registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    denials: Family<ReasonLabels, Counter>,
    latency: Family<PathLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers all metrics under the `hush_injector` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hush_injector");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "AdmissionReviews answered, by endpoint and outcome",
            requests.clone(),
        );
        let denials = Family::<ReasonLabels, Counter>::default();
        registry.register("denials", "Admission denials, by reason", denials.clone());
        let latency = Family::<PathLabels, Histogram>::new_with_constructor(|| {
            // 50 µs .. ~400 ms
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.00005, 2.0, 14,
            ))
        });
        registry.register(
            "admission_duration_seconds",
            "Time from a complete request body to the encoded answer",
            latency.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            requests,
            denials,
            latency,
        }
    }

    /// Records one answered review.
    pub fn observe(&self, path: Endpoint, outcome: Outcome, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                path: path.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.latency
            .get_or_create(&PathLabels {
                path: path.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records a denial reason (a fixed, bounded label).
    pub fn denied(&self, reason: &'static str) {
        self.denials.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
