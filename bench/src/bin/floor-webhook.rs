//! The injector's floor: the least an HTTPS admission webhook can do on Hush's stack (tokio's
//! multi-threaded runtime, hyper with HTTP/1.1 and HTTP/2, rustls on aws-lc-rs, TLS 1.2 and 1.3).
//! It reads each AdmissionReview's `request.uid` and answers with a fixed JSON patch, the very
//! bytes Hush's injector answered for the benchmark pod, so the response has the same size. No
//! annotation parsing, no pod model, no config: what is left is TLS, HTTP and JSON framing, which
//! any webhook pays.
//!
//! Usage: floor-webhook --listen 127.0.0.1:PORT --cert tls.crt --key tls.key --patch-file patch.b64

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
struct Args {
    /// Address of the HTTPS listener.
    #[arg(long)]
    listen: SocketAddr,
    /// PEM certificate.
    #[arg(long)]
    cert: PathBuf,
    /// PEM private key.
    #[arg(long)]
    key: PathBuf,
    /// The base64 JSON patch to answer with.
    #[arg(long)]
    patch_file: PathBuf,
}

#[derive(Deserialize)]
struct Review {
    request: Req,
}

#[derive(Deserialize)]
struct Req {
    uid: String,
}

#[derive(serde::Serialize)]
struct Answer<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: Resp<'a>,
}

#[derive(serde::Serialize)]
struct Resp<'a> {
    uid: String,
    allowed: bool,
    #[serde(rename = "patchType")]
    patch_type: &'static str,
    patch: &'a str,
}

const MAX_BODY: usize = 3 << 20;

async fn handle(req: Request<Incoming>, patch: Arc<str>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new()),
    };
    let Ok(review) = serde_json::from_slice::<Review>(&body) else {
        return reply(StatusCode::BAD_REQUEST, Bytes::new());
    };
    let answer = Answer {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: Resp {
            uid: review.request.uid,
            allowed: true,
            patch_type: "JSONPatch",
            patch: &patch,
        },
    };
    match serde_json::to_vec(&answer) {
        Ok(v) => {
            let mut r = reply(StatusCode::OK, Bytes::from(v));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new()),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let cert = std::fs::read_to_string(&args.cert).context("reading --cert")?;
    let key = std::fs::read_to_string(&args.key).context("reading --key")?;
    let patch: Arc<str> = std::fs::read_to_string(&args.patch_file)
        .context("reading --patch-file")?
        .trim()
        .into();
    let acceptor = TlsAcceptor::from(hush_bench::tls::server_config(
        &cert,
        &key,
        &[b"h2", b"http/1.1"],
    )?);
    let listener = TcpListener::bind(args.listen).await?;
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (tcp, _) = tokio::select! {
            _ = term.recv() => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let patch = Arc::clone(&patch);
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let patch = Arc::clone(&patch);
                async move { Ok::<_, Infallible>(handle(req, patch).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
        });
    }
}
