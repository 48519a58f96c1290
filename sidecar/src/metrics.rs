//! Prometheus metrics of one sidecar and the tiny HTTP endpoint that serves them. Operators alert on
//! a sidecar that keeps failing while the app runs on old files, so the counters are by source kind
//! and file name, and a gauge says when the last complete refresh succeeded. Labels never carry a
//! value or a secret path: file names and source kinds only (docs/threat-model.md, "Secrets in
//! logs, metrics and panics"). The endpoint is plain hyper http1 with one route, no framework, and
//! answers on the operator-set port.
//!
//! `/healthz` is honest: 200 while the last complete refresh is recent (at most [`STALE_AFTER`]
//! refresh intervals old), 503 with the age before the first success or once it is older, so a
//! monitor sees a sidecar that serves stale files. No probe is wired to it: Hush injects only a
//! startup probe, so a store that is down never restarts the sidecar (which would lose nothing, but
//! would re-login on every restart). `/livez` answers 200 while the process serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use hush_config::ErrorClass;

type Labels = Vec<(&'static str, String)>;

/// The sidecar's metrics. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    fetches: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    lease_ttl: Family<Labels, Gauge>,
    file_updates: Family<Labels, Counter>,
    updates: Counter,
    lease_renewals: Counter,
    token_renewals: Counter,
    lease_revocations: Family<Labels, Counter>,
    notifications: Family<Labels, Counter>,
    healthy: Gauge,
    cycles: Counter,
    /// `/healthz` reports stale after this long without a complete refresh.
    stale_after: Duration,
}

/// `/healthz` turns 503 after this many refresh intervals without a complete refresh.
pub const STALE_AFTER: u32 = 3;

/// The staleness limit for a refresh interval: [`STALE_AFTER`] intervals, and never under 15 s (a
/// short interval must not turn one slow cycle into an alert).
pub fn stale_after(refresh: Duration) -> Duration {
    (refresh * STALE_AFTER).max(Duration::from_secs(15))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `hush_sidecar` prefix.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("hush_sidecar");
        // AWS API requests by operation (the provider counts them; registered here so that
        // "at most ceil(N/20) calls per unchanged cycle" can be watched in production).
        r.register(
            "aws_api_calls",
            "AWS API requests sent, by operation",
            crate::aws::api_calls(),
        );
        let fetches = Family::<Labels, Counter>::default();
        r.register(
            "fetches",
            "Secrets fetched from a store, by source kind and file",
            fetches.clone(),
        );
        let errors = Family::<Labels, Counter>::default();
        r.register(
            "errors",
            "Failed fetches or checks, by source kind, file and class (transient or permanent)",
            errors.clone(),
        );
        let last_success = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the last refresh in which every secret was current",
            last_success.clone(),
        );
        let lease_ttl = Family::<Labels, Gauge>::default();
        r.register(
            "lease_ttl_remaining_seconds",
            "Seconds until the lease behind a file expires if not renewed",
            lease_ttl.clone(),
        );
        let file_updates = Family::<Labels, Counter>::default();
        r.register(
            "file_updates",
            "Times a file's content changed, by file",
            file_updates.clone(),
        );
        let updates = Counter::default();
        r.register(
            "updates",
            "Consistent updates of the secrets volume (each fires one notification)",
            updates.clone(),
        );
        let lease_renewals = Counter::default();
        r.register("lease_renewals", "Leases renewed", lease_renewals.clone());
        let token_renewals = Counter::default();
        r.register(
            "token_renewals",
            "Vault token renewals or fresh logins",
            token_renewals.clone(),
        );
        let lease_revocations = Family::<Labels, Counter>::default();
        r.register(
            "replaced_lease_revocations",
            "Revocations of leases whose secret was replaced by a new fetch, by outcome (revoked, forbidden by the policy, failed)",
            lease_revocations.clone(),
        );
        let notifications = Family::<Labels, Counter>::default();
        r.register(
            "notifications",
            "On-change notification attempts, by outcome (delivered or failed; a failed one is retried)",
            notifications.clone(),
        );
        let healthy = Gauge::default();
        r.register(
            "healthy",
            "1 when the last refresh had no error, else 0",
            healthy.clone(),
        );
        let cycles = Counter::default();
        r.register(
            "refresh_cycles",
            "Refresh cycles run (cheap checks plus fetches of what changed)",
            cycles.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            fetches,
            errors,
            last_success,
            lease_ttl,
            file_updates,
            updates,
            lease_renewals,
            token_renewals,
            lease_revocations,
            notifications,
            healthy,
            cycles,
            stale_after: stale_after(Duration::ZERO),
        }
    }

    /// Sets when `/healthz` reports stale (see [`stale_after`]).
    pub fn with_stale_after(mut self, d: Duration) -> Metrics {
        self.stale_after = d;
        self
    }

    /// `/healthz`: the status and a one-line reason.
    fn health(&self) -> (StatusCode, String) {
        let last = self.last_success.get();
        if last <= 0.0 {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: no refresh has completed yet\n".into(),
            );
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        let age = (now - last).max(0.0);
        let limit = self.stale_after.as_secs_f64();
        if age > limit {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "stale: the last complete refresh was {age:.0} s ago (limit {limit:.0} s); the files are the last good ones\n"
                ),
            )
        } else {
            (
                StatusCode::OK,
                format!("ok: the last complete refresh was {age:.0} s ago\n"),
            )
        }
    }

    /// One refresh cycle ran.
    pub fn cycle(&self) {
        self.cycles.inc();
    }

    fn labels(kind: &str, file: &str) -> Labels {
        vec![("source", kind.to_string()), ("file", file.to_string())]
    }

    /// A successful fetch for `file`.
    pub fn fetched(&self, kind: &str, file: &str) {
        self.fetches.get_or_create(&Self::labels(kind, file)).inc();
    }

    /// A failed fetch or check for `file`.
    pub fn failed(&self, kind: &str, file: &str, class: ErrorClass) {
        let mut l = Self::labels(kind, file);
        l.push(("class", class.as_str().to_string()));
        self.errors.get_or_create(&l).inc();
        self.healthy.set(0);
    }

    /// Every secret is current as of now.
    pub fn succeeded(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        self.last_success.set(now);
        self.healthy.set(1);
    }

    /// Time left on the lease behind `file`.
    pub fn lease_ttl(&self, file: &str, left: Duration) {
        self.lease_ttl
            .get_or_create(&vec![("file", file.to_string())])
            .set(i64::try_from(left.as_secs()).unwrap_or(i64::MAX));
    }

    /// `file`'s content changed.
    pub fn file_updated(&self, file: &str) {
        self.file_updates
            .get_or_create(&vec![("file", file.to_string())])
            .inc();
    }

    /// One consistent update of the volume.
    pub fn updated(&self) {
        self.updates.inc();
    }

    /// Renewals done by one maintenance round.
    pub fn renewed(&self, leases: u32, token: bool) {
        self.lease_renewals.inc_by(u64::from(leases));
        if token {
            self.token_renewals.inc();
        }
    }

    /// One notification attempt and its outcome.
    pub(crate) fn notification(&self, outcome: &'static str) {
        self.notifications
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    /// Revocations of replaced leases, by outcome.
    pub(crate) fn replaced_leases(&self, outcomes: &[(&'static str, u32)]) {
        for &(outcome, n) in outcomes {
            if n > 0 {
                self.lease_revocations
                    .get_or_create(&vec![("outcome", outcome.to_string())])
                    .inc_by(u64::from(n));
            }
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Binds `addr` and serves `GET /metrics` until the runtime stops. Returns the bound address.
    pub async fn serve(&self, addr: SocketAddr) -> Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await.map_err(|e| Error::Io {
            path: format!("metrics listener {addr}"),
            source: e,
        })?;
        let local = listener.local_addr().map_err(|e| Error::Io {
            path: "metrics listener".into(),
            source: e,
        })?;
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let me = me.clone();
                        async move { Ok::<_, std::convert::Infallible>(me.respond(&req)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(5))
                        .serve_connection(TokioIo::new(stream), svc);
                    let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
                });
            }
        });
        tracing::info!(addr = %local, "metrics listening");
        Ok(local)
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, ctype, body) = match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.render(),
            ),
            (&Method::GET, "/healthz") => {
                let (status, body) = self.health();
                (status, "text/plain", body)
            }
            (&Method::GET, "/livez") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_string(),
            ),
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
            resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        resp
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_labels_but_no_paths() {
        let m = Metrics::new();
        m.fetched("vault", "db-password");
        m.failed("vault", "db-password", ErrorClass::Transient);
        m.lease_ttl("db-password", Duration::from_secs(42));
        m.succeeded();
        let text = m.render();
        assert!(
            text.contains(r#"hush_sidecar_fetches_total{source="vault",file="db-password"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"class="transient""#));
        assert!(
            text.contains(r#"hush_sidecar_lease_ttl_remaining_seconds{file="db-password"} 42"#)
        );
        assert!(text.contains("hush_sidecar_last_success_timestamp_seconds"));
    }
}
