//! Prometheus metrics of the webhook. Labels are bounded enums (path, outcome, denial reason), never
//! names, namespaces or annotation values, so cardinality stays fixed and nothing a tenant writes
//! reaches the metrics. In self-managed TLS mode two more: CA publications by outcome, and when the
//! serving certificate expires (a value, never a label: no certificate data is ever a label).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
    /// Allowed with no change (not ours, not opted in, UPDATE/DELETE, already injected and complete).
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

/// How one read-merge-write of a webhook configuration's caBundle ended (self-managed TLS).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Publication {
    /// The merged bundle was written.
    Written,
    /// The bundle was already what the merge gives; nothing was written.
    Unchanged,
    /// Another writer changed the object in between (`409 Conflict`); merged again.
    Conflict,
    /// Reading or writing failed (or too many conflicts in a row).
    Error,
}

impl Publication {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Publication::Written => "written",
            Publication::Unchanged => "unchanged",
            Publication::Conflict => "conflict",
            Publication::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
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
    /// Registered only in self-managed TLS mode, like the gauge below.
    ca_publications: Family<OutcomeLabels, Counter>,
    serving_cert_expiry: Gauge,
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
    /// Creates and registers the webhook's metrics under the `hush_injector` prefix.
    pub fn new() -> Metrics {
        Self::build(false)
    }

    /// Like [`Metrics::new`], plus the metrics of self-managed TLS: CA publications by outcome and
    /// the serving certificate's expiry. (With certificate files these would only read zero.)
    pub fn with_self_managed_tls() -> Metrics {
        Self::build(true)
    }

    fn build(self_managed_tls: bool) -> Metrics {
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
        let ca_publications = Family::<OutcomeLabels, Counter>::default();
        let serving_cert_expiry = Gauge::default();
        if self_managed_tls {
            registry.register(
                "ca_publications",
                "Self-managed TLS: read-merge-writes of a webhook configuration's caBundle, by \
                 outcome (written, unchanged, conflict, error)",
                ca_publications.clone(),
            );
            registry.register(
                "serving_cert_expiry_timestamp_seconds",
                "Self-managed TLS: when the certificate being served expires, in seconds since \
                 the Unix epoch",
                serving_cert_expiry.clone(),
            );
        }
        Metrics {
            registry: Arc::new(registry),
            requests,
            denials,
            latency,
            ca_publications,
            serving_cert_expiry,
        }
    }

    /// Records how one caBundle read-merge-write ended (self-managed TLS).
    pub fn ca_publication(&self, outcome: Publication) {
        self.ca_publications
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Records when the certificate now being served expires (self-managed TLS).
    pub fn serving_cert_expires(&self, not_after: SystemTime) {
        let secs = not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.serving_cert_expiry.set(secs);
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
