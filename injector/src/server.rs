//! The two listeners: HTTPS (hyper + rustls, HTTP/1.1 and HTTP/2) for `/mutate` and `/validate`,
//! and plain HTTP for `/healthz`, `/readyz` and `/metrics`. Bodies over the limit are answered 413
//! before any parsing (by `Content-Length` when present, else while reading). On shutdown the HTTPS
//! listener stops accepting, `/readyz` turns 503, and open connections finish their in-flight
//! requests within the grace period. The certificate comes from files (re-read when they change) or,
//! in self-managed mode, from [`crate::self_managed`], whose background task publishes the CA; then
//! `/readyz` also stays 503 until that CA is published, and on shutdown, only after the drain, the
//! task stops and the replica withdraws its CA (at most a few seconds more).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::InjectorConfig;
use crate::error::{Error, Result};
use crate::metrics::{Endpoint, Metrics};
use crate::review::{bad_request, review};
use crate::self_managed::{self, SelfManaged};
use crate::tls::{ReloadingCert, server_config};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (slowloris), as the apiserver's own
/// webhook timeout is at most 30 s.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's accept queue. The apiserver needs a few
/// (HTTP/2, or a small HTTP/1.1 pool); each costs 13 to 28 KiB (TLS buffers, `scripts/faults` case
/// 4), so the cap bounds that memory to under 28 MiB whatever a client opens, while leaving room
/// for the apiserver beside a few hundred idle or slow connections (slow ones are closed after
/// [`HEADER_TIMEOUT`]).
const MAX_CONNECTIONS: usize = 1024;
/// Memory budget for request bodies being read and parsed at once, in KiB. Each request holds
/// [`BODY_FACTOR`] times its declared length (the body limit when none is declared) until it is
/// answered: a realistic review (tens of KiB) never waits, a few multi-MiB ones take turns, and
/// the whole stays near 48 MiB, under the chart's 64 MiB memory limit.
const BODY_BUDGET_KIB: u32 = 48 * 1024;
/// What one request may cost, in multiples of its body: the body itself, plus what answering it
/// allocates at most. Reviews are parsed into borrowed views that skip what is not read
/// (`crate::pod`), so a body of values nobody reads costs almost nothing (0.1 times the body), but
/// a body made of the smallest values the view keeps still costs up to about 8 times (3 MiB of
/// `{"name":"cN"}` containers); `tests/parse_memory.rs` measures the shapes and holds this bound.
const BODY_FACTOR: usize = 10;

struct Shared {
    cfg: InjectorConfig,
    metrics: Metrics,
    /// False once shutdown starts.
    ready: AtomicBool,
    /// False until the apiserver can verify our certificate (self-managed TLS: our CA is in the
    /// caBundle); always true with certificate files.
    tls_ready: Arc<AtomicBool>,
    /// [`MAX_CONNECTIONS`] permits.
    connections: Arc<tokio::sync::Semaphore>,
    /// [`BODY_BUDGET_KIB`] permits.
    body_budget: tokio::sync::Semaphore,
}

/// A started injector: its bound addresses and a handle to stop it.
pub struct RunningServer {
    /// Where `/mutate` and `/validate` listen (HTTPS).
    pub https_addr: SocketAddr,
    /// Where `/healthz`, `/readyz`, `/metrics` listen (HTTP).
    pub health_addr: SocketAddr,
    /// The certificate resolver (tests trigger reloads on it).
    pub certs: Arc<ReloadingCert>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    https: JoinHandle<()>,
    health: JoinHandle<()>,
    keeper: Keeper,
}

/// What keeps the certificate fresh.
enum Keeper {
    /// The task that re-reads the certificate files.
    Files(JoinHandle<()>),
    /// Self-managed TLS: its task, and the CA to withdraw on shutdown.
    SelfManaged(Box<SelfManaged>),
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("https_addr", &self.https_addr)
            .field("health_addr", &self.health_addr)
            .finish_non_exhaustive()
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr: addr.to_string(),
        source,
    })
}

impl RunningServer {
    /// Binds both listeners, loads or makes the certificate and starts serving. In self-managed TLS
    /// mode the Kubernetes client comes from the pod's service account (or `KUBECONFIG`).
    pub async fn start(cfg: InjectorConfig) -> Result<RunningServer> {
        let client = match cfg.server.self_managed_tls {
            Some(_) => Some(
                kube::Client::try_default()
                    .await
                    .map_err(Error::KubeConfig)?,
            ),
            None => None,
        };
        Self::start_inner(cfg, client).await
    }

    /// Like [`Self::start`] in self-managed TLS mode, with the Kubernetes client given (tests pass
    /// one that holds only a `patch`-only token).
    pub async fn start_with_client(
        cfg: InjectorConfig,
        client: kube::Client,
    ) -> Result<RunningServer> {
        if cfg.server.self_managed_tls.is_none() {
            return Err(Error::config(
                "server.selfManagedTls",
                "a Kubernetes client is only used by self-managed TLS, which is off",
            ));
        }
        Self::start_inner(cfg, Some(client)).await
    }

    async fn start_inner(
        cfg: InjectorConfig,
        client: Option<kube::Client>,
    ) -> Result<RunningServer> {
        let https = bind(cfg.server.listen).await?;
        let health = bind(cfg.server.health_listen).await?;
        let https_addr = https.local_addr().map_err(|source| Error::Bind {
            addr: cfg.server.listen.to_string(),
            source,
        })?;
        let health_addr = health.local_addr().map_err(|source| Error::Bind {
            addr: cfg.server.health_listen.to_string(),
            source,
        })?;
        let metrics = match cfg.server.self_managed_tls {
            Some(_) => Metrics::with_self_managed_tls(),
            None => Metrics::new(),
        };
        let (certs, keeper, tls_ready) = match (&cfg.server.self_managed_tls, client) {
            (Some(sm), Some(client)) => {
                let tls_ready = Arc::new(AtomicBool::new(false));
                let sm = self_managed::start(sm, client, Arc::clone(&tls_ready), metrics.clone())?;
                (
                    Arc::clone(sm.certs()),
                    Keeper::SelfManaged(Box::new(sm)),
                    tls_ready,
                )
            }
            _ => {
                let (Some(cert), Some(key)) = (&cfg.server.tls_cert_file, &cfg.server.tls_key_file)
                else {
                    return Err(Error::config(
                        "server.tlsCertFile",
                        "the webhook serves HTTPS only: give tlsCertFile and tlsKeyFile \
                         (--tls-cert/--tls-key), or turn on self-managed TLS (--self-managed-tls)",
                    ));
                };
                let certs = ReloadingCert::load(cert, key)?;
                let watcher = certs.spawn_watcher(cfg.server.tls_reload_interval);
                (
                    certs,
                    Keeper::Files(watcher),
                    Arc::new(AtomicBool::new(true)),
                )
            }
        };
        let acceptor = TlsAcceptor::from(server_config(Arc::clone(&certs))?);
        let shared = Arc::new(Shared {
            cfg,
            metrics,
            ready: AtomicBool::new(true),
            tls_ready,
            connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            body_budget: tokio::sync::Semaphore::new(BODY_BUDGET_KIB as usize),
        });
        let (stop, stop_rx) = watch::channel(false);
        let https_task = tokio::spawn(serve_https(https, acceptor, Arc::clone(&shared), stop_rx));
        let health_task = tokio::spawn(serve_health(health, Arc::clone(&shared)));
        tracing::info!(%https_addr, %health_addr, "hush-injector listening");
        Ok(RunningServer {
            https_addr,
            health_addr,
            certs,
            shared,
            stop,
            https: https_task,
            health: health_task,
            keeper,
        })
    }

    /// Whether `/readyz` answers 200 now.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst) && self.shared.tls_ready.load(Ordering::SeqCst)
    }

    /// The metrics of this server.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period), then returns. In
    /// self-managed TLS mode it then stops the publishing task and withdraws this replica's CA
    /// from the webhook configurations (bounded by [`self_managed::WITHDRAW_TIMEOUT`]): only now,
    /// because until the drain ends the apiserver may still be calling this replica. `/readyz`
    /// keeps answering 503 meanwhile.
    pub async fn shutdown(self) {
        self.shared.ready.store(false, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let _ = self.https.await;
        match self.keeper {
            Keeper::Files(watcher) => watcher.abort(),
            Keeper::SelfManaged(sm) => sm.shutdown().await,
        }
        self.health.abort();
        tracing::info!("hush-injector stopped");
    }
}

/// Runs until SIGTERM or SIGINT, then drains. The entry point of `hush-injector`.
pub async fn run(cfg: InjectorConfig) -> Result<()> {
    let server = RunningServer::start(cfg).await?;
    wait_for_signal().await;
    tracing::info!("signal received; draining");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn serve_https(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = Arc::clone(&shared.connections).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let svc = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle_admission(req, &shared).await) }
            });
            let conn = builder
                .serve_connection(TokioIo::new(tls), svc)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = shared.cfg.server.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "connections still open after the grace period; closing them"
        );
    }
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    let answer = bad_request(
        None,
        format!("hush-injector: request body is larger than {limit} bytes"),
    );
    respond(
        StatusCode::PAYLOAD_TOO_LARGE,
        "application/json",
        answer.body,
    )
}

async fn handle_admission(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let endpoint = match req.uri().path() {
        "/mutate" => Endpoint::Mutate,
        "/validate" => Endpoint::Validate,
        _ => return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    };
    if req.method() != Method::POST {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use POST\n");
    }
    let limit = shared.cfg.server.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        shared.metrics.observe(
            endpoint,
            crate::metrics::Outcome::BadRequest,
            Duration::ZERO,
        );
        return too_large(limit);
    }
    let expected = declared.map_or(limit, |n| usize::try_from(n).unwrap_or(limit));
    let kib = u32::try_from(expected.saturating_mul(BODY_FACTOR) / 1024 + 1)
        .unwrap_or(BODY_BUDGET_KIB)
        .min(BODY_BUDGET_KIB);
    let Ok(_budget) = shared.body_budget.acquire_many(kib).await else {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "shutting down\n",
        );
    };
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            shared.metrics.observe(
                endpoint,
                crate::metrics::Outcome::BadRequest,
                Duration::ZERO,
            );
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return too_large(limit);
            }
            let answer = bad_request(
                None,
                "hush-injector: could not read the request body".into(),
            );
            return respond(StatusCode::BAD_REQUEST, "application/json", answer.body);
        }
    };
    let answer = review(endpoint, &body, &shared.cfg, &shared.metrics);
    let status = StatusCode::from_u16(answer.http_status).unwrap_or(StatusCode::BAD_REQUEST);
    respond(status, "application/json", answer.body)
}

/// Serves until aborted: it keeps answering `/readyz` (503) and `/metrics` while HTTPS drains.
async fn serve_health(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle_health(&req, &shared)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn handle_health(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            if !shared.ready.load(Ordering::SeqCst) {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "shutting down\n",
                )
            } else if !shared.tls_ready.load(Ordering::SeqCst) {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "self-managed TLS: CA not yet in the webhook configurations' caBundle\n",
                )
            } else {
                respond(StatusCode::OK, "text/plain", "ready\n")
            }
        }
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}
