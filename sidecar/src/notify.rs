//! Telling the app that its files changed (`hush.dev/on-change`). The refresh loop calls
//! [`Notifier::notify`] once after each write that changed the volume, never after an unchanged
//! refresh. Two ways, both local to the pod:
//! - `http:<url>`: one `POST` with an empty body to a loopback URL. The URL was checked at parse
//!   time and is checked again here, so a hand-made config cannot point it off the pod.
//! - `signal:<SIG>:<process>`: the process is found by name (`/proc/<pid>/comm`) in the pod's shared
//!   PID namespace and signalled with rustix; the operator allows this mode only with
//!   `shareProcessNamespace`, and the sidecar then runs as the app's UID.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustix::process::{Pid, Signal as RSignal};

use crate::error::{Error, Result};
use hush_config::{OnChange, Signal};

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed on-change target.
#[derive(Clone, Debug)]
pub(crate) enum Notifier {
    /// Nothing to do.
    None,
    /// POST to a loopback address.
    Http {
        /// Where to connect (always loopback).
        addr: SocketAddr,
        /// `Host` header value.
        host: String,
        /// Path and query.
        path: String,
    },
    /// Signal a process by name.
    Signal {
        /// The signal.
        signal: Signal,
        /// `/proc/<pid>/comm` to match.
        process: String,
    },
}

impl Notifier {
    /// Builds the notifier; refuses any HTTP target that is not loopback.
    pub(crate) fn new(on_change: &OnChange) -> Result<Notifier> {
        match on_change {
            OnChange::None => Ok(Notifier::None),
            OnChange::Http { url } => parse_loopback(url),
            OnChange::Signal { signal, process } => Ok(Notifier::Signal {
                signal: *signal,
                process: process.clone(),
            }),
        }
    }

    /// Fires once. Errors are reported, never fatal: the files are already in place.
    pub(crate) async fn notify(&self) -> Result<()> {
        match self {
            Notifier::None => Ok(()),
            Notifier::Http { addr, host, path } => {
                tokio::time::timeout(HTTP_TIMEOUT, post(*addr, host, path))
                    .await
                    .map_err(|_| Error::Notify {
                        reason: format!("POST to {addr} timed out"),
                    })?
            }
            Notifier::Signal { signal, process } => signal_by_name(*signal, process),
        }
    }
}

fn bad(reason: &str) -> Error {
    Error::Notify {
        reason: reason.to_string(),
    }
}

/// `http://127.0.0.1:<port>/p`, `http://[::1]:<port>/p` or `http://localhost:<port>/p`.
pub(crate) fn parse_loopback(url: &str) -> Result<Notifier> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("the on-change URL must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once("]:")
            .ok_or_else(|| bad("the on-change URL needs a port"))?
    } else {
        authority
            .rsplit_once(':')
            .ok_or_else(|| bad("the on-change URL needs a port"))?
    };
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "127.0.0.1" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "::1" => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => {
            return Err(bad(
                "the on-change URL must be loopback (127.0.0.1, [::1] or localhost)",
            ));
        }
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("the on-change URL has an invalid port"))?;
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'#')
    {
        return Err(bad("the on-change URL path has invalid characters"));
    }
    Ok(Notifier::Http {
        addr: SocketAddr::new(ip, port),
        host: authority.to_string(),
        path: path.to_string(),
    })
}

async fn post(addr: SocketAddr, host: &str, path: &str) -> Result<()> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::Notify {
        reason: format!("POST to {addr}: {what}: {e}"),
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail("connect", &e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail("handshake", &e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_LENGTH, "0")
        .header(hyper::header::USER_AGENT, "hush-sidecar")
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail("request", &e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail("send", &e))?;
    if !resp.status().is_success() {
        return Err(Error::Notify {
            reason: format!("POST to {addr} answered {}", resp.status()),
        });
    }
    tracing::info!(%addr, status = resp.status().as_u16(), "on-change notification sent");
    Ok(())
}

fn to_rustix(s: Signal) -> RSignal {
    match s {
        Signal::Hup => RSignal::HUP,
        Signal::Usr1 => RSignal::USR1,
        Signal::Usr2 => RSignal::USR2,
        Signal::Term => RSignal::TERM,
        Signal::Int => RSignal::INT,
        Signal::Quit => RSignal::QUIT,
    }
}

/// Signals every process whose `comm` is `name` (except this one). Finding none is an error.
pub(crate) fn signal_by_name(signal: Signal, name: &str) -> Result<()> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let dir = std::fs::read_dir("/proc").map_err(|e| Error::Io {
        path: "/proc".into(),
        source: e,
    })?;
    let mut sent = 0usize;
    let mut last_err = None;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end_matches('\n') != name {
            continue;
        }
        let Some(p) = Pid::from_raw(pid) else {
            continue;
        };
        match rustix::process::kill_process(p, to_rustix(signal)) {
            Ok(()) => {
                sent += 1;
                tracing::info!(pid, signal = signal.name(), "on-change signal sent");
            }
            Err(e) => last_err = Some(e),
        }
    }
    if sent > 0 {
        return Ok(());
    }
    Err(Error::Notify {
        reason: match last_err {
            Some(e) => format!(
                "cannot signal process {name}: {e} (run the sidecar as the app's runAsUser)"
            ),
            None => format!("no process named {name} in the shared process namespace"),
        },
    })
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        assert!(parse_loopback("http://127.0.0.1:8080/-/reload").is_ok());
        assert!(parse_loopback("http://[::1]:9/x").is_ok());
        assert!(parse_loopback("http://localhost:1").is_ok());
        for bad in [
            "http://10.0.0.1:80/",
            "https://127.0.0.1:80/",
            "http://127.0.0.1.nip.io:80/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1/",
            "http://user@127.0.0.1:80/",
        ] {
            assert!(parse_loopback(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn http_notification_posts_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        let n = Notifier::new(&OnChange::Http {
            url: format!("http://127.0.0.1:{port}/reload"),
        })
        .unwrap();
        n.notify().await.unwrap();
        let req = server.await.unwrap();
        assert!(req.starts_with("POST /reload HTTP/1.1"), "{req}");
    }

    #[test]
    fn a_process_is_signalled_by_name() {
        // A copy of `sleep` under a unique name, so no other process on the machine matches.
        let dir = tempfile::tempdir().unwrap();
        let name = format!("hushsig{}", std::process::id() % 100_000);
        let bin = dir.path().join(&name);
        std::fs::copy("/bin/sleep", &bin).unwrap();
        let mut child = std::process::Command::new(&bin).arg("30").spawn().unwrap();
        // Wait until the kernel reports the new name.
        let comm = format!("/proc/{}/comm", child.id());
        for _ in 0..200 {
            if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == name) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        signal_by_name(Signal::Term, &name).unwrap();
        let st = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(15), "{st}");
    }

    #[test]
    fn signalling_a_missing_process_is_an_error() {
        let e = signal_by_name(Signal::Hup, "no-such-proc-xyz").unwrap_err();
        assert!(e.to_string().contains("no process named"));
    }
}
