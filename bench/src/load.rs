//! The HTTPS load driver of the webhook benchmarks (it replaces oha): `conns` keep-alive HTTP/1.1
//! connections over rustls, each sending one POST at a time. At a fixed rate, request `i` is due at
//! `start + i / rate` and its latency is measured from when it was due, not when it was sent, so a
//! slow server cannot hide its queueing delay (coordinated omission; oha's
//! `--latency-correction`). Without a rate every connection sends as fast as answers come back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::proc::percentile;

/// Where and what to send.
#[derive(Clone)]
pub struct Target {
    /// The server's loopback address (its certificate must name `127.0.0.1`).
    pub addr: SocketAddr,
    /// A client config trusting the server's CA.
    pub tls: Arc<ClientConfig>,
    /// Request path, e.g. `/mutate`.
    pub path: String,
    /// The JSON body of every request.
    pub body: Bytes,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({}{})", self.addr, self.path)
    }
}

/// One open connection.
pub struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    target: Target,
}

impl Conn {
    /// Connects (TCP, TLS handshake, HTTP/1.1).
    pub async fn open(target: &Target) -> Result<Conn> {
        let tcp = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        let tls = TlsConnector::from(Arc::clone(&target.tls))
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(Conn {
            send,
            target: target.clone(),
        })
    }

    /// Sends the target's request and returns the status and the body.
    pub async fn request(&mut self) -> Result<(u16, Bytes)> {
        let req = Request::post(&self.target.path)
            .header(hyper::header::HOST, self.target.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(self.target.body.clone()))?;
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// The outcome of one load run.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    /// Requests answered (any status).
    pub answered: u64,
    /// Requests answered with 200.
    pub ok: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latencies in ms, sorted.
    pub latencies_ms: Vec<f64>,
}

impl LoadResult {
    /// Achieved requests per second.
    pub fn rate(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// The `p`-th latency percentile in ms.
    pub fn p(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p)
    }
}

/// Runs `conns` connections for `duration`, at `rate` requests per second in total if given.
pub async fn run(
    target: &Target,
    conns: usize,
    rate: Option<f64>,
    duration: Duration,
) -> Result<LoadResult> {
    let mut open = Vec::with_capacity(conns);
    for _ in 0..conns {
        open.push(Conn::open(target).await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::with_capacity(conns);
    for mut c in open {
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut answered, mut ok) = (0u64, 0u64);
            loop {
                let due = match rate {
                    Some(r) => {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let due = start + Duration::from_secs_f64(i as f64 / r);
                        if due >= end {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        now
                    }
                };
                let (status, _) = c.request().await?;
                lat.push(due.elapsed().as_secs_f64() * 1000.0);
                answered += 1;
                ok += u64::from(status == 200);
            }
            anyhow::Ok((lat, answered, ok))
        }));
    }
    let mut out = LoadResult::default();
    for t in tasks {
        let (lat, answered, ok) = t.await??;
        out.latencies_ms.extend(lat);
        out.answered += answered;
        out.ok += ok;
    }
    out.elapsed = start.elapsed();
    out.latencies_ms.sort_by(f64::total_cmp);
    Ok(out)
}
