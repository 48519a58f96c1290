//! A counting HTTP proxy on loopback, so requests are counted on the wire, the same way for Hush,
//! its floor and its peer: `https` terminates TLS with a throwaway CA (the client under test
//! trusts it instead of the store's) and forwards each request over a fresh TLS connection per
//! client connection to the store (OpenBao), verified with the store's CA; `http` does the same in
//! plain HTTP (moto). HTTP/1.1 only, one upstream connection per client connection, bodies
//! buffered: simple, and the store sees the same request sequence the client sent. Each request is
//! recorded with its arrival time and a key: the `x-amz-target` header when present (an AWS API
//! call), else the method and the path without its query; and, once answered, with the size of the
//! response body and whether it carried a secret value (`SecretString`/`SecretBinary`, AWS), so a
//! bench can say what crossed the wire, not only how many calls.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::{Pki, client_config, server_config};

/// Where the proxy forwards to.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `host:port`.
    pub host_port: String,
    /// The CA PEM that signs the upstream's certificate; `None` for plain HTTP.
    pub ca_pem: Option<String>,
}

/// What the proxy saw.
#[derive(Debug, Default)]
pub struct Log {
    events: Mutex<Vec<(Instant, String)>>,
    answers: Mutex<Vec<Answer>>,
}

/// The response to one request, at the same index as the request in [`Log`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Answer {
    /// Response body bytes.
    pub body_bytes: usize,
    /// Secret values in the body: `"SecretString"` and `"SecretBinary"` members (AWS JSON).
    pub values: usize,
}

impl Log {
    /// Records a request; the index is where its [`Answer`] goes (none when the log's lock is
    /// poisoned, after a panic elsewhere).
    fn push(&self, key: String) -> Option<usize> {
        let mut e = self.events.lock().ok()?;
        e.push((Instant::now(), key));
        Some(e.len() - 1)
    }

    fn answered(&self, at: Option<usize>, body: &[u8]) {
        let (Some(at), Ok(mut a)) = (at, self.answers.lock()) else {
            return;
        };
        let count = |needle: &[u8]| body.windows(needle.len()).filter(|w| *w == needle).count();
        if a.len() <= at {
            a.resize(at + 1, Answer::default());
        }
        a[at] = Answer {
            body_bytes: body.len(),
            values: count(b"\"SecretString\"") + count(b"\"SecretBinary\""),
        };
    }

    /// The answers to the requests from index `from` on (a request still in flight counts as an
    /// empty answer).
    pub fn answers_since(&self, from: usize) -> Vec<Answer> {
        let n = self.len();
        let Ok(a) = self.answers.lock() else {
            return Vec::new();
        };
        (from..n)
            .map(|i| a.get(i).copied().unwrap_or_default())
            .collect()
    }

    /// Requests seen so far.
    pub fn len(&self) -> usize {
        self.events.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether no request was seen yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The requests from index `from` on, with their arrival times.
    pub fn since(&self, from: usize) -> Vec<(Instant, String)> {
        self.events
            .lock()
            .map(|e| e.get(from..).map(<[_]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Requests from index `from` on, counted by key.
    pub fn counts_since(&self, from: usize) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (_, k) in self.since(from) {
            *m.entry(k).or_insert(0) += 1;
        }
        m
    }
}

/// A running proxy; it stops with the runtime.
#[derive(Debug)]
pub struct Proxy {
    /// Its loopback address.
    pub addr: SocketAddr,
    /// The CA PEM clients must trust (`https` proxies only).
    pub ca_pem: Option<String>,
    /// The requests it forwarded.
    pub log: Arc<Log>,
}

impl Proxy {
    /// The URL clients use.
    pub fn url(&self) -> String {
        match self.ca_pem {
            Some(_) => format!("https://{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// Starts a TLS-terminating proxy to `upstream` (which must be TLS too).
    pub async fn https(upstream: Upstream) -> Result<Proxy> {
        let pki = Pki::loopback()?;
        let acceptor =
            TlsAcceptor::from(server_config(&pki.cert_pem, &pki.key_pem, &[b"http/1.1"])?);
        Proxy::start(Some(acceptor), Some(pki.ca_pem), upstream).await
    }

    /// Starts a plain HTTP proxy to plain-HTTP `upstream`.
    pub async fn http(upstream: Upstream) -> Result<Proxy> {
        Proxy::start(None, None, upstream).await
    }

    async fn start(
        acceptor: Option<TlsAcceptor>,
        ca_pem: Option<String>,
        upstream: Upstream,
    ) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Log::default());
        let connector = match &upstream.ca_pem {
            Some(ca) => Some(TlsConnector::from(client_config(ca, &[b"http/1.1"])?)),
            None => None,
        };
        let shared = Arc::new(Shared {
            upstream,
            connector,
            log: Arc::clone(&log),
        });
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                serve(tls, shared).await;
                            }
                        }
                        None => serve(tcp, shared).await,
                    }
                });
            }
        });
        Ok(Proxy { addr, ca_pem, log })
    }
}

struct Shared {
    upstream: Upstream,
    connector: Option<TlsConnector>,
    log: Arc<Log>,
}

type Upstreams = Arc<tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>>;

async fn serve<S>(io: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let up: Upstreams = Arc::new(tokio::sync::Mutex::new(None));
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let up = Arc::clone(&up);
        async move {
            let resp = match forward(req, &shared, &up).await {
                Ok(r) => r,
                Err(e) => {
                    let mut r = Response::new(Full::new(Bytes::from(format!("proxy: {e:#}"))));
                    *r.status_mut() = StatusCode::BAD_GATEWAY;
                    r
                }
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

async fn connect_upstream(shared: &Shared) -> Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(&shared.upstream.host_port)
        .await
        .with_context(|| format!("connecting to {}", shared.upstream.host_port))?;
    let _ = tcp.set_nodelay(true);
    match &shared.connector {
        Some(c) => {
            let host = shared
                .upstream
                .host_port
                .rsplit_once(':')
                .map_or(shared.upstream.host_port.as_str(), |(h, _)| h);
            let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
            let tls = c.connect(name, tcp).await.context("TLS to the upstream")?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            Ok(send)
        }
        None => {
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            Ok(send)
        }
    }
}

async fn forward(
    req: Request<Incoming>,
    shared: &Shared,
    up: &Upstreams,
) -> Result<Response<Full<Bytes>>> {
    let key = match req.headers().get("x-amz-target") {
        Some(t) => t.to_str().unwrap_or("?").to_string(),
        None => format!("{} {}", req.method(), req.uri().path()),
    };
    let at = shared.log.push(key);
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut out = Request::builder().method(parts.method).uri(
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
    );
    for (k, v) in &parts.headers {
        if k != hyper::header::HOST && k != hyper::header::CONNECTION {
            out = out.header(k, v);
        }
    }
    let out = out
        .header(hyper::header::HOST, &shared.upstream.host_port)
        .body(Full::new(body))?;
    let mut guard = up.lock().await;
    let sender = match guard.as_mut() {
        Some(s) if !s.is_closed() => s,
        _ => guard.insert(connect_upstream(shared).await?),
    };
    sender.ready().await?;
    let resp = sender.send_request(out).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    shared.log.answered(at, &body);
    let mut r = Response::from_parts(parts, Full::new(body));
    r.headers_mut().remove(hyper::header::TRANSFER_ENCODING);
    Ok(r)
}
