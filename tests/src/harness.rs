//! Helpers shared by the end-to-end tests that run the built `hush-sidecar` binary as a process:
//! finding the binary, a free loopback port, reading one Prometheus sample, and a loopback HTTP
//! listener that counts the sidecar's on-change notifications. One copy here instead of one per
//! test file.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// A binary of this workspace (`hush`, `hush-sidecar`, ...) built by `cargo build --workspace`.
/// `tests/` does not own those binary targets, so they are found next to the running test
/// executable.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    bin
}

/// The `hush-sidecar` binary ([`workspace_bin`]).
pub fn sidecar_bin() -> PathBuf {
    workspace_bin("hush-sidecar")
}

/// Polls `f` every 250 ms until it returns `Some`; fails naming `what` after `secs` seconds.
pub async fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// The value of one sample line in a Prometheus exposition, matched by its full name and labels.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A loopback listener for `on-change: http:`; returns its URL (`.../reload`) and the number of
/// `POST /reload` requests it received.
pub async fn notification_listener() -> (String, Arc<AtomicUsize>) {
    let (url, posts, _) = failing_notification_listener(0).await;
    (url, posts)
}

/// Like [`notification_listener`], but the app answers its first `fail_first` POSTs with 503, as
/// an app still starting or briefly overloaded would. Returns the URL, every POST received, and
/// the POSTs answered 200.
pub async fn failing_notification_listener(
    fail_first: usize,
) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the notification listener");
    let port = listener
        .local_addr()
        .expect("bound listener has an address")
        .port();
    let url = format!("http://127.0.0.1:{port}/reload");
    let posts = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicUsize::new(0));
    let (p, d) = (posts.clone(), delivered.clone());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let (p, d) = (p.clone(), d.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let mut answer: &[u8] =
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                if got.starts_with(b"POST /reload ") {
                    if p.fetch_add(1, Ordering::SeqCst) < fail_first {
                        answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    } else {
                        d.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let _ = s.write_all(answer).await;
            });
        }
    });
    (url, posts, delivered)
}
