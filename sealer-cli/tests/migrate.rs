//! `hush migrate` as a user runs it: a vault-k8s manifest on standard input, the Hush annotations
//! on standard output, notes and refusals on standard error, and exit 1 with nothing on standard
//! output when any annotation cannot be translated (so `hush migrate | kubectl apply` never
//! applies half a translation).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::process::Output;

use common::*;

fn migrate(stdin: &str) -> Output {
    let mut cmd = hush();
    cmd.arg("migrate");
    run_with_stdin(cmd, stdin.as_bytes())
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  annotations:
    vault.hashicorp.com/agent-inject: "true"
    vault.hashicorp.com/role: web
    vault.hashicorp.com/agent-inject-secret-tls.key: secret/data/web/tls
    vault.hashicorp.com/agent-inject-template-tls.key: |
      {{- with secret "secret/data/web/tls" -}}
      {{ .Data.data.key }}
      {{- end }}
    vault.hashicorp.com/agent-inject-command-tls.key: "pkill -HUP nginx"
spec:
  shareProcessNamespace: true
  containers: [{name: nginx, image: nginx}]
"#;

#[test]
fn a_translatable_pod_prints_its_hush_annotations() {
    let out = migrate(POD);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("# Pod shop/web (metadata.annotations): replace"),
        "{stdout}"
    );
    for line in [
        "hush.dev/inject: \"true\"",
        "hush.dev/role: \"web\"",
        "hush.dev/mount-path: \"/vault/secrets\"",
        "hush.dev/secret-tls.key: \"vault:secret/data/web/tls\"",
        "hush.dev/on-change: \"signal:HUP:nginx\"",
        "hush.dev/template-tls.key: |+",
        "  {{ data.key }}",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} missing from\n{stdout}"
        );
    }
    assert!(stderr.contains("note: Pod shop/web"), "{stderr}");
    assert!(stderr.contains("allowShareProcessNamespace"), "{stderr}");
}

#[test]
fn anything_untranslatable_fails_with_every_problem_and_prints_nothing() {
    let manifest = format!(
        "{POD}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: worker\n  annotations:\n    \
         vault.hashicorp.com/agent-inject: \"true\"\n    vault.hashicorp.com/agent-inject-token: \"true\"\n    \
         vault.hashicorp.com/agent-inject-secret-a: secret/data/a\n    \
         vault.hashicorp.com/agent-inject-template-a: '{{{{ with secret \"secret/data/a\" }}}}{{{{ .Data.data.x | base64Decode }}}}{{{{ end }}}}'\n"
    );
    let out = migrate(&manifest);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing is printed when anything is refused"
    );
    assert!(
        stderr.contains("cannot translate: Pod worker (metadata.annotations): vault.hashicorp.com/agent-inject-token"),
        "{stderr}"
    );
    assert!(stderr.contains("base64Decode"), "{stderr}");
    assert!(stderr.contains("docs/migrating.md"), "{stderr}");
}

#[test]
fn a_manifest_without_vault_k8s_annotations_is_not_an_error() {
    let out = migrate("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n");
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("no vault.hashicorp.com/ annotations")
    );
}
