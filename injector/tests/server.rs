//! The real HTTPS server, in process on port 0, with certificates made by rcgen: request limits,
//! error answers with the uid echoed, the AdmissionReview wire format (base64 patch), health and
//! metrics, graceful drain, and certificate rotation without dropping an open connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hush_injector::RawConfig;
use hush_injector::RunningServer;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Pki {
    ca_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(cn: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        Pki {
            ca_pem: ca.pem(),
            ca,
        }
    }

    /// A leaf for 127.0.0.1: (cert PEM, key PEM, cert DER).
    fn leaf(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// A scratch directory, removed on drop so test runs leave nothing in /tmp.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!(
        "hush-injector-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).expect("mkdir");
    TempDir(d)
}

/// Replaces a file atomically, the way a Secret volume update does.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

struct Harness {
    server: RunningServer,
    pki: Pki,
    dir: TempDir,
}

async fn start(tag: &str, extra: &str) -> Harness {
    let pki = Pki::new("hush test CA");
    let (cert, key, _) = pki.leaf();
    let dir = tempdir(tag);
    std::fs::write(dir.join("tls.crt"), cert).expect("write");
    std::fs::write(dir.join("tls.key"), key).expect("write");
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  healthListen: 127.0.0.1:0\n  tlsCertFile: {}\n  tlsKeyFile: {}\n  tlsReloadIntervalSeconds: 1\n  shutdownGraceSeconds: 10\n{extra}sidecar:\n  image: hush-sidecar:test\noperator:\n  vault:\n    addr: https://vault.example:8200\nallowedRoles:\n  team-a: [app]\n",
        dir.join("tls.crt").display(),
        dir.join("tls.key").display()
    );
    let cfg = RawConfig::from_yaml(&yaml, "test")
        .and_then(RawConfig::build)
        .expect("config");
    let server = RunningServer::start(cfg).await.expect("server starts");
    Harness { server, pki, dir }
}

struct Client {
    send: SendRequest<Full<Bytes>>,
    peer_cert: Vec<u8>,
}

async fn connect(addr: SocketAddr, ca_pem: &str) -> Client {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("add root");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("TLS handshake with the test CA");
    let peer_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("server cert");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    Client { send, peer_cert }
}

impl Client {
    async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> (StatusCode, Value) {
        let req = Request::post(path)
            .header("content-type", "application/json")
            .header("host", "127.0.0.1")
            .body(Full::new(body.into()))
            .expect("request");
        self.send.ready().await.expect("connection usable");
        let resp = self.send.send_request(req).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = send.send_request(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn pod_review(uid: &str, annotations: Value, operation: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a",
            "operation": operation,
            "userInfo": {"username": "alice"},
            "dryRun": false,
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}
            }
        }
    })
}

fn good_annotations() -> Value {
    json!({
        "hush.dev/inject": "true",
        "hush.dev/role": "app",
        "hush.dev/secret-db": "vault:secret/data/db#password"
    })
}

#[tokio::test]
async fn mutate_returns_a_base64_json_patch_and_echoes_the_uid() {
    let h = start("mutate", "").await;
    let mut c = connect(h.server.https_addr, &h.pki.ca_pem).await;
    let review = pod_review("uid-1", good_annotations(), "CREATE");
    let (status, v) = c.post("/mutate", review.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "uid-1");
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(v["response"]["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(
            v["response"]["patch"]
                .as_str()
                .expect("patch is a base64 string"),
        )
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("JSON patch");
    let mut pod = review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch.0).expect("applies");
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "hush-sidecar");

    // Dry-run: the same answer.
    let mut dry = review.clone();
    dry["request"]["dryRun"] = json!(true);
    dry["request"]["uid"] = json!("uid-dry");
    let (status, v2) = c.post("/mutate", dry.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v2["response"]["uid"], "uid-dry");
    assert_eq!(v2["response"]["patch"], v["response"]["patch"]);
    h.server.shutdown().await;
}

#[tokio::test]
async fn update_delete_and_other_kinds_pass_unchanged() {
    let h = start("passthrough", "").await;
    let mut c = connect(h.server.https_addr, &h.pki.ca_pem).await;
    for op in ["UPDATE", "DELETE"] {
        let (status, v) = c
            .post(
                "/mutate",
                pod_review("u", good_annotations(), op).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["response"]["allowed"], true, "{op}");
        assert!(v["response"].get("patch").is_none(), "{op}: no patch");
    }
    let mut cm = pod_review("u-cm", good_annotations(), "CREATE");
    cm["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    let (_, v) = c.post("/mutate", cm.to_string()).await;
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("patch").is_none());
    h.server.shutdown().await;
}

#[tokio::test]
async fn bad_annotations_are_denied_with_our_message() {
    let h = start("deny", "").await;
    let mut c = connect(h.server.https_addr, &h.pki.ca_pem).await;
    let mut ann = good_annotations();
    ann["hush.dev/refersh"] = json!("5m");
    let (status, v) = c
        .post("/mutate", pod_review("u-deny", ann, "CREATE").to_string())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["response"]["uid"], "u-deny");
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 403);
    let msg = v["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        msg.contains("hush.dev/refersh") && msg.contains("hush.dev/refresh"),
        "{msg}"
    );
    let (_, metrics) = get(h.server.health_addr, "/metrics").await;
    assert!(
        metrics.contains("hush_injector_denials_total{reason=\"annotations\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"denied\""), "{metrics}");
    assert!(
        metrics.contains("hush_injector_admission_duration_seconds"),
        "{metrics}"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn validate_denies_a_deployment_with_a_bad_template() {
    let h = start("validate", "").await;
    let mut c = connect(h.server.https_addr, &h.pki.ca_pem).await;
    let deploy = |ann: Value| {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "d-1",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "namespace": "team-a",
                "operation": "CREATE",
                "object": {
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web"},
                    "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                        "metadata": {"labels": {"a": "b"}, "annotations": ann},
                        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
                    }}
                }
            }
        })
    };
    let (_, ok) = c
        .post("/validate", deploy(good_annotations()).to_string())
        .await;
    assert_eq!(ok["response"]["allowed"], true);
    assert!(
        ok["response"].get("patch").is_none(),
        "validation never patches"
    );
    let mut bad = good_annotations();
    bad["hush.dev/role"] = json!("root");
    let (_, v) = c.post("/validate", deploy(bad).to_string()).await;
    assert_eq!(v["response"]["allowed"], false);
    let msg = v["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        msg.contains("Deployment web") && msg.contains("hush.dev/role"),
        "{msg}"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn malformed_and_wrong_version_get_clear_errors_with_uid() {
    let h = start("malformed", "").await;
    let mut c = connect(h.server.https_addr, &h.pki.ca_pem).await;
    let (status, v) = c.post("/mutate", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = v["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(msg.contains("malformed AdmissionReview"), "{msg}");

    let mut review = pod_review("uid-old", good_annotations(), "CREATE");
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (status, v) = c.post("/mutate", review.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["response"]["uid"], "uid-old");
    let msg = v["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        msg.contains("admission.k8s.io/v1beta1") && msg.contains("admission.k8s.io/v1"),
        "{msg}"
    );

    // Valid JSON but a broken request: the uid is still found and echoed.
    let broken = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "uid-broken", "kind": "Pod"}});
    let (status, v) = c.post("/mutate", broken.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["response"]["uid"], "uid-broken");
    h.server.shutdown().await;
}

#[tokio::test]
async fn oversized_body_gets_413_before_parsing() {
    let h = start("large", "").await;
    let mut c = connect(h.server.https_addr, &h.pki.ca_pem).await;
    // Not JSON at all: a 413 (not a 400) shows the size was refused before parsing.
    let body = vec![b'x'; 3 * 1024 * 1024 + 1];
    let (status, v) = c.post("/mutate", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("larger than")
    );
    // Just under the limit is read (and then refused as malformed, with 400). The 413 closed
    // the first connection, since its body was never read.
    let mut c = connect(h.server.https_addr, &h.pki.ca_pem).await;
    let (status, _) = c.post("/mutate", vec![b' '; 3 * 1024 * 1024]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    h.server.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let h = start("health", "").await;
    assert_eq!(
        get(h.server.health_addr, "/healthz").await.0,
        StatusCode::OK
    );
    assert_eq!(get(h.server.health_addr, "/readyz").await.0, StatusCode::OK);
    assert_eq!(
        get(h.server.health_addr, "/nope").await.0,
        StatusCode::NOT_FOUND
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn certificate_rotation_keeps_open_connections_and_serves_the_new_cert() {
    let h = start("rotate", "").await;
    let cert_path = h.dir.join("tls.crt");
    let key_path = h.dir.join("tls.key");
    let mut old = connect(h.server.https_addr, &h.pki.ca_pem).await;
    let (s, _) = old
        .post(
            "/mutate",
            pod_review("a", good_annotations(), "CREATE").to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // A half-written rotation (new cert, old key) is refused; the old pair keeps serving.
    let (new_cert, new_key, new_der) = h.pki.leaf();
    replace(&cert_path, &new_cert);
    assert!(
        !h.server.certs.reload(),
        "a mismatched pair must not be used"
    );
    let c = connect(h.server.https_addr, &h.pki.ca_pem).await;
    assert_eq!(c.peer_cert, old.peer_cert, "still the old certificate");

    // Completing it: the file watcher swaps the pair in (polled, bounded).
    replace(&key_path, &new_key);
    let mut fresh = None;
    for _ in 0..100 {
        let c = connect(h.server.https_addr, &h.pki.ca_pem).await;
        if c.peer_cert == new_der {
            fresh = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut fresh = fresh.expect("the watcher picked up the new certificate");
    let (s, v) = fresh
        .post(
            "/mutate",
            pod_review("b", good_annotations(), "CREATE").to_string(),
        )
        .await;
    assert_eq!(
        (s, v["response"]["uid"].as_str()),
        (StatusCode::OK, Some("b"))
    );

    // The connection opened before the rotation still works.
    let (s, v) = old
        .post(
            "/mutate",
            pod_review("c", good_annotations(), "CREATE").to_string(),
        )
        .await;
    assert_eq!(
        (s, v["response"]["uid"].as_str()),
        (StatusCode::OK, Some("c"))
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn in_memory_swap_keeps_open_connections_and_refuses_a_bad_pair() {
    // Self-managed TLS renews through `swap`, not through files: same guarantees.
    let h = start("swap", "").await;
    let mut old = connect(h.server.https_addr, &h.pki.ca_pem).await;
    let (cert, key, der) = h.pki.leaf();
    let (_, other_key, _) = h.pki.leaf();
    assert!(
        h.server
            .certs
            .swap(cert.as_bytes(), other_key.as_bytes())
            .is_err(),
        "a mismatched pair must not be used"
    );
    assert_eq!(
        connect(h.server.https_addr, &h.pki.ca_pem).await.peer_cert,
        old.peer_cert
    );
    h.server
        .certs
        .swap(cert.as_bytes(), key.as_bytes())
        .expect("a good pair swaps in");
    let mut fresh = connect(h.server.https_addr, &h.pki.ca_pem).await;
    assert_eq!(
        fresh.peer_cert, der,
        "new handshakes get the new certificate"
    );
    for (client, uid) in [(&mut fresh, "new"), (&mut old, "old")] {
        let (s, v) = client
            .post(
                "/mutate",
                pod_review(uid, good_annotations(), "CREATE").to_string(),
            )
            .await;
        assert_eq!(
            (s, v["response"]["uid"].as_str()),
            (StatusCode::OK, Some(uid))
        );
    }
    h.server.shutdown().await;
}

/// A request body fed by a channel, so a test controls when its bytes arrive.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let h = start("drain", "").await;
    let addr = h.server.https_addr;
    let c = connect(addr, &h.pki.ca_pem).await;
    drop(c);
    // A second client whose request body arrives in two parts, with shutdown in between.
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::pem::PemObject;
        for cert in CertificateDer::pem_slice_iter(h.pki.ca_pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("tls");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, ChannelBody>(TokioIo::new(tls))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let review = pod_review("slow", good_annotations(), "CREATE").to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let req = Request::post("/mutate")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("content-length", review.len().to_string())
        .body(ChannelBody(rx))
        .expect("request");
    let in_flight = tokio::spawn(async move { send.send_request(req).await });
    let (first, rest) = review.split_at(10);
    tx.send(Bytes::from(first.to_string())).await.expect("send");
    // Wait until the server has the request (its metrics see nothing yet, so poll readiness
    // of the connection by giving the runtime a moment), then start draining.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = h.server.health_addr;
    let shutdown = tokio::spawn(h.server.shutdown());
    // While draining, /readyz says so and new HTTPS connections are refused.
    let mut refused = false;
    for _ in 0..50 {
        if get(health, "/readyz").await.0 == StatusCode::SERVICE_UNAVAILABLE
            && TcpStream::connect(addr).await.is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "draining: not ready and not accepting");
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the in-flight request"
    );
    tx.send(Bytes::from(rest.to_string()))
        .await
        .expect("send rest");
    drop(tx);
    let resp = in_flight
        .await
        .expect("join")
        .expect("in-flight request answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["response"]["uid"], "slow");
    shutdown.await.expect("shutdown completes");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn binary_refuses_a_bad_config_naming_the_field() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hush-injector"))
        .args(["--sidecar-image", "img:1", "--sidecar-uid", "0"])
        .output()
        .expect("run hush-injector");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sidecar.runAsUser"), "{err}");
}

#[test]
fn binary_drains_and_exits_zero_on_sigterm() {
    let pki = Pki::new("hush test CA");
    let (cert, key, _) = pki.leaf();
    let dir = tempdir("sigterm");
    std::fs::write(dir.join("tls.crt"), cert).expect("write");
    std::fs::write(dir.join("tls.key"), key).expect("write");
    let health = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_hush-injector"))
        .args(["--sidecar-image", "img:1"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--health-listen")
        .arg(format!("127.0.0.1:{health}"))
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let addr: SocketAddr = format!("127.0.0.1:{health}").parse().expect("addr");
    let mut ready = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok()
            && rt.block_on(get(addr, "/readyz")).0 == StatusCode::OK
        {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready, "the injector became ready");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    let logs =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit 0 after SIGTERM: {logs}");
    assert!(
        logs.contains("draining") && logs.contains("stopped"),
        "{logs}"
    );
}
