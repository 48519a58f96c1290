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

/// The OpenBao CLI against the test environment's server, with its root token (the tests' admin
/// actions: mounts, policies, roles, secrets). `VAULT_SKIP_VERIFY` is removed so the CA is checked.
pub fn bao_command(env: &TestEnv) -> Command {
    let mut c = Command::new(&env.bao_bin);
    c.env("VAULT_ADDR", &env.vault_addr)
        .env("VAULT_CACERT", &env.vault_cacert)
        .env("VAULT_TOKEN", &env.vault_token)
        .env_remove("VAULT_SKIP_VERIFY");
    c
}

/// `bao <args>` with `stdin`; its standard output. Panics with its output when it fails.
pub fn bao(env: &TestEnv, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(bao_command(env).args(args), stdin);
    assert!(out.status.success(), "bao {args:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`bao`] with nothing on standard input.
pub fn bao_ok(env: &TestEnv, args: &[&str]) -> String {
    bao(env, args, None)
}

/// [`bao`] with `stdin` on standard input (policies, CSRs, certificates).
pub fn bao_stdin(env: &TestEnv, args: &[&str], stdin: &str) -> String {
    bao(env, args, Some(stdin))
}

/// Standard output and standard error, one after the other, for messages and assertions.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
