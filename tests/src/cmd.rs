//! Running the command-line tools the end-to-end tests drive (kubectl, bao, hush, helm): one
//! runner that feeds standard input and collects the output, and `kubectl` against the test
//! environment's apiserver, instead of a copy in every test file.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::env::TestEnv;

/// Runs `cmd` with `stdin` on its standard input (none: `/dev/null`) and collects its output.
/// Panics, naming the command, when it cannot be started or waited for.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {shown}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin was piped")
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("write stdin of {shown}: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {shown}: {e}"))
}

/// `kubectl` with the test environment's kubeconfig.
pub fn kubectl(env: &TestEnv, args: &[&str], stdin: Option<&str>) -> Output {
    run(
        Command::new(&env.kubectl)
            .arg("--kubeconfig")
            .arg(&env.kubeconfig)
            .args(args),
        stdin,
    )
}

/// Standard output and standard error, one after the other, for messages and assertions.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
