//! Rendering formats checked by reading the output back the way a user's program would: JSON and
//! YAML parsers, a POSIX shell sourcing the env file, and the template sandbox's limits.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::process::Command;

use hush_config::{FileSpec, Format, SourceRef};
use hush_sidecar::Error;
use hush_sidecar::{SecretBytes, SecretFields, SecretValue};
use hush_sidecar::{render, render_capped};

const CANARY: &str = "CANARY-8d1c";

fn spec(format: Format, template: Option<&str>) -> FileSpec {
    FileSpec {
        name: "out.txt".into(),
        source: Some(SourceRef::Vault {
            path: "secret/data/app".into(),
            field: None,
            version: None,
        }),
        format,
        template: template.map(str::to_string),
        mode: 0o444,
    }
}

fn fields(pairs: &[(&str, &[u8])]) -> SecretValue {
    SecretValue::Fields(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretBytes::from_slice(v)))
            .collect::<SecretFields>(),
    )
}

fn tricky() -> SecretValue {
    fields(&[
        ("user", b"app"),
        (
            "password",
            format!("{CANARY} it's \"q\" $HOME `id` \\n\n\ttab").as_bytes(),
        ),
        ("unicode", "żółw ☃ \u{1}".as_bytes()),
        ("empty", b""),
    ])
}

fn tricky_map() -> BTreeMap<String, String> {
    let SecretValue::Fields(f) = tricky() else {
        unreachable!()
    };
    f.iter()
        .map(|(k, v)| (k.to_string(), v.expose_str().unwrap().to_string()))
        .collect()
}

fn assert_no_canary(e: &Error) {
    let msg = format!("{e} {e:?}");
    assert!(!msg.contains(CANARY), "{msg}");
}

#[test]
fn raw_is_byte_for_byte() {
    let bin: Vec<u8> = (0..=255u8).collect();
    let out = render(
        &spec(Format::Raw, None),
        &SecretValue::Single(SecretBytes::from_slice(&bin)),
    )
    .unwrap();
    assert_eq!(*out, bin);
    let out = render(&spec(Format::Raw, None), &fields(&[("only", b"v\n")])).unwrap();
    assert_eq!(*out, b"v\n");
}

#[test]
fn raw_with_several_fields_names_the_file_and_fields_only() {
    let e = render(&spec(Format::Raw, None), &tricky()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("out.txt") && msg.contains("password") && msg.contains("#field"),
        "{msg}"
    );
    assert_no_canary(&e);
}

#[test]
fn json_parses_back_to_the_fields() {
    let out = render(&spec(Format::Json, None), &tricky()).unwrap();
    let back: BTreeMap<String, String> = serde_json::from_slice(&out).unwrap();
    assert_eq!(back, tricky_map());
}

#[test]
fn yaml_parses_back_to_the_fields() {
    let out = render(&spec(Format::Yaml, None), &tricky()).unwrap();
    let text = std::str::from_utf8(&out).unwrap();
    let back: BTreeMap<String, String> = serde_saphyr::from_str(text).unwrap();
    assert_eq!(back, tricky_map());
}

#[test]
fn env_file_is_safe_to_source_in_a_shell() {
    // The shell must read back exactly the bytes, with no expansion or command substitution.
    let out = render(&spec(Format::Env, None), &tricky()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.env");
    std::fs::write(&path, &*out).unwrap();
    for (k, v) in tricky_map() {
        let got = Command::new("sh")
            .arg("-c")
            .arg(format!("set -a; . \"$1\"; printf %s \"${k}\""))
            .arg("sh")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(String::from_utf8(got.stdout).unwrap(), v, "field {k}");
    }
}

#[test]
fn env_refuses_keys_that_are_not_variable_names() {
    let e = render(
        &spec(Format::Env, None),
        &fields(&[("db-password", CANARY.as_bytes())]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("db-password"), "{e}");
    assert_no_canary(&e);
}

#[test]
fn structured_formats_need_fields() {
    for f in [Format::Json, Format::Env, Format::Yaml] {
        let e = render(
            &spec(f, None),
            &SecretValue::Single(SecretBytes::from_slice(CANARY.as_bytes())),
        )
        .unwrap_err();
        assert!(e.to_string().contains("single value"), "{e}");
        assert_no_canary(&e);
    }
    let e = render(
        &spec(Format::Json, None),
        &fields(&[("bin", &[0xff, 0xfe])]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("\"bin\" is not UTF-8"), "{e}");
}

#[test]
fn templates_render_fields_and_single_values() {
    let t = "user={{ data.user }}\npass={{ data.password | tojson }}\n{% for k in data %}{{ k }};{% endfor %}";
    let out = render(&spec(Format::Template, Some(t)), &tricky()).unwrap();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.starts_with("user=app\npass=\""), "{text}");
    assert!(text.ends_with("empty;password;unicode;user;"), "{text}");
    let out = render(
        &spec(Format::Template, Some("[{{ value }}]")),
        &SecretValue::Single(SecretBytes::from_slice(b"v")),
    )
    .unwrap();
    assert_eq!(*out, b"[v]");
    // No auto-escaping: the value is written as is.
    let out = render(
        &spec(Format::Template, Some("{{ value }}")),
        &SecretValue::Single(SecretBytes::from_slice(b"<&>\"'")),
    )
    .unwrap();
    assert_eq!(*out, b"<&>\"'");
}

#[test]
fn template_errors_are_strict_and_never_quote_values() {
    let cases = [
        "{{ data.nope }}",
        "{{ value }}",
        "{{ data.password | int }}",
        "{{ data.password + 1 }}",
        "{% include 'x' %}",
        "{% import 'x' as y %}",
        "{{ data.password.foo.bar }}",
    ];
    for t in cases {
        let e = render(&spec(Format::Template, Some(t)), &tricky()).unwrap_err();
        assert!(matches!(e, Error::Render { .. }), "{t}: {e}");
        assert!(e.to_string().contains("out.txt"), "{e}");
        assert_no_canary(&e);
    }
}

#[test]
fn template_output_and_work_are_capped() {
    let big = "{% for i in range(10000) %}0123456789{% endfor %}";
    let e = render_capped(&spec(Format::Template, Some(big)), &tricky(), 4096).unwrap_err();
    assert!(
        e.to_string()
            .contains("larger than the limit of 4096 bytes"),
        "{e}"
    );
    let spin = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let e = render(&spec(Format::Template, Some(spin)), &tricky()).unwrap_err();
    assert!(e.to_string().contains("out.txt"), "{e}");
    // The cap applies to every format.
    let e = render_capped(
        &spec(Format::Raw, None),
        &SecretValue::Single(SecretBytes::from_slice(&[b'x'; 100])),
        99,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("larger than the limit of 99 bytes"),
        "{e}"
    );
    assert_eq!(
        render_capped(
            &spec(Format::Raw, None),
            &SecretValue::Single(SecretBytes::from_slice(&[b'x'; 100])),
            100
        )
        .unwrap()
        .len(),
        100
    );
}

/// A template over other files: `files["x"]` is x's fields (a mapping), its single value (a
/// string) or a template-only file's text, and only the files handed in exist.
#[test]
fn a_template_reads_the_files_it_is_handed() {
    let creds = fields(&[("username", b"v-app-1"), ("password", CANARY.as_bytes())]);
    let host = SecretValue::Single(SecretBytes::from_slice(b"db:5432"));
    let mut dsn = spec(
        Format::Template,
        Some(
            r#"postgres://{{ files["db-creds"].username }}:{{ files["db-creds"].password }}@{{ files.host }}/{{ files["name"] }}"#,
        ),
    );
    dsn.source = None;
    let mut inputs = hush_sidecar::Inputs::new();
    inputs.insert("db-creds", hush_sidecar::Input::Secret(&creds));
    inputs.insert("host", hush_sidecar::Input::Secret(&host));
    inputs.insert("name", hush_sidecar::Input::Text(b"app"));
    let out = hush_sidecar::render_with(&dsn, None, &inputs, 1 << 20).unwrap();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        format!("postgres://v-app-1:{CANARY}@db:5432/app")
    );
    // A file that is not handed in is undefined (strict): an error naming no value.
    inputs.remove("name");
    let e = hush_sidecar::render_with(&dsn, None, &inputs, 1 << 20).unwrap_err();
    assert!(e.to_string().contains("out.txt"), "{e}");
    assert_no_canary(&e);
    // A missing field of a file read is an error too.
    let mut bad = spec(Format::Template, Some(r#"{{ files["db-creds"].user }}"#));
    bad.source = None;
    let e = hush_sidecar::render_with(&bad, None, &inputs, 1 << 20).unwrap_err();
    assert_no_canary(&e);
}

/// `pem` writes a PKI certificate as one bundle in the order TLS servers read it (certificate,
/// chain, key), each block on its own lines; a secret without those fields is refused by name and
/// the refusal quotes no value.
#[test]
fn pem_writes_certificate_chain_and_key_in_order() {
    let v = fields(&[
        ("certificate", b"-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----"),
        (
            "ca_chain",
            b"-----BEGIN CERTIFICATE-----\nINT\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n",
        ),
        ("private_key", b"-----BEGIN EC PRIVATE KEY-----\nKEY\n-----END EC PRIVATE KEY-----\n"),
        ("serial_number", b"01:02"),
    ]);
    let out = render(&spec(Format::Pem, None), &v).unwrap();
    let text = std::str::from_utf8(&out).unwrap();
    let order: Vec<&str> = text.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(order, ["LEAF", "INT", "ROOT", "KEY"]);
    assert!(text.ends_with("-----END EC PRIVATE KEY-----\n"));
    let e = render(&spec(Format::Pem, None), &tricky()).unwrap_err();
    assert!(e.to_string().contains("no field \"certificate\""), "{e}");
    assert_no_canary(&e);
}
