//! The binary's cheap entry points, run as a process: the exec startup probe and `check-config`
//! (which the injector's end-to-end test uses), plus the metrics endpoint served in-process on a
//! loopback port. No secret store is needed for these.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use hush_config::ErrorClass;
use hush_sidecar::Metrics;

const BIN: &str = env!("CARGO_BIN_EXE_hush-sidecar");

#[test]
fn probe_passes_only_once_the_marker_exists() {
    let dir = tempfile::tempdir().unwrap();
    let probe = || {
        Command::new(BIN)
            .arg("probe")
            .env_clear()
            .env("HUSH_ROOT", dir.path())
            .status()
            .unwrap()
    };
    assert_eq!(probe().code(), Some(1));
    let state = dir.path().join("hush/state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("started"), "ok\n").unwrap();
    assert_eq!(probe().code(), Some(0));
}

#[test]
fn check_config_reports_the_problem_and_exit_code() {
    let out = Command::new(BIN)
        .arg("check-config")
        .env_clear()
        .env("HUSH_CONFIG", r#"{"version":2}"#)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("version 2") && err.contains("version 1"),
        "{err}"
    );

    let out = Command::new(BIN)
        .arg("check-config")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HUSH_CONFIG") && err.contains("is not set"),
        "{err}"
    );
}

#[test]
fn metrics_are_served_over_http_on_loopback() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = Metrics::new();
        m.fetched("vault", "db-password");
        m.failed("vault", "db-password", ErrorClass::Permanent);
        let addr = m.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let get = |path: &'static str| {
            tokio::task::spawn_blocking(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            })
        };
        let body = get("/metrics").await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.contains(r#"hush_sidecar_errors_total{source="vault",file="db-password",class="permanent"} 1"#),
            "{body}"
        );
        assert!(body.contains("# EOF"));
        let other = get("/secrets").await.unwrap();
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    });
}
