//! Interop with the reference `age` CLI, both ways, exactly as FORMAT.md documents it:
//! - a value sealed by hush decrypts with `age -d -i KEY | tail -n +2`;
//! - the MAC key decrypts with `base64 -d | age -d`;
//! - ciphertexts and identities made by `age`/`age-keygen` are accepted by hush.
//!
//! The `age` CLI must be installed (`scripts/test-env up`); these tests fail, never skip, without it.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;

use base64::Engine as _;
use hush_sealed_format::format::{self, Meta, Scope};

use common::*;

fn pipe(cmd: std::process::Command, input: &[u8]) -> Vec<u8> {
    let what = format!("{cmd:?}");
    let out = run_with_stdin(cmd, input);
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn hush_values_decrypt_with_the_age_cli_and_the_documented_header() {
    let secret = sample_secret();
    let cm = hush_sealer::seal(&secret, "prod", Scope::Strict, &[recipient("prod")]).unwrap();
    for (key, value) in &secret.values {
        let mut age = age_cli("age");
        age.arg("-d").arg("-i").arg(identity_path("prod"));
        let plain = pipe(age, cm.data[key].as_bytes());
        // The documented command: `age -d -i KEY | tail -n +2`.
        let mut tail = std::process::Command::new("tail");
        tail.args(["-n", "+2"]);
        let tailed = pipe(tail, &plain);
        assert_eq!(tailed, value.expose(), "key {key}");
        let header = std::str::from_utf8(&plain[..plain.len() - tailed.len()]).unwrap();
        assert!(header.starts_with("hush.dev/sealed:v1 scope=strict namespace=prod name=db "));
    }
    // The MAC key is a base64 binary age file.
    let meta = Meta::parse(&cm.data[format::META_KEY], "t").unwrap();
    let bin = base64::engine::general_purpose::STANDARD
        .decode(&meta.mac_key)
        .unwrap();
    let mut age = age_cli("age");
    age.arg("-d").arg("-i").arg(identity_path("prod"));
    assert_eq!(pipe(age, &bin).len(), 32);
}

#[test]
fn age_cli_ciphertexts_and_age_keygen_identities_open_in_hush() {
    let dir = scratch("interop");
    let key_file = dir.join("key.txt");
    let status = age_cli("age-keygen")
        .arg("-o")
        .arg(&key_file)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let identity =
        hush_sealer::parse_identity(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let r = identity.to_public().to_string();

    // Build a sealed set whose ciphertexts all come from the age CLI, per FORMAT.md.
    let mac_key = [42u8; 32];
    let age_enc = |data: &[u8], armor: bool| {
        let mut age = age_cli("age");
        age.arg("-r").arg(&r);
        if armor {
            age.arg("-a");
        }
        pipe(age, data)
    };
    let mac_key_b64 = base64::engine::general_purpose::STANDARD.encode(age_enc(&mac_key, false));
    let value: &[u8] = &[0, 1, 2, 3, 255, b'\n', b'x'];
    let mut plaintext = format::header_line(
        Scope::Strict,
        "prod",
        "db",
        "blob",
        &format::seal_id(&mac_key),
    )
    .into_bytes();
    plaintext.extend_from_slice(value);
    let mut cts = BTreeMap::new();
    cts.insert(
        "blob".to_owned(),
        String::from_utf8(age_enc(&plaintext, true)).unwrap(),
    );
    let secret = format::SecretMeta {
        type_: "Opaque".into(),
        ..Default::default()
    };
    let recipients = vec![r.clone()];
    let input = format::mac_input(
        Scope::Strict,
        "prod",
        "db",
        &secret,
        &recipients,
        &mac_key_b64,
        &cts,
    );
    let meta = Meta {
        version: 1,
        scope: Scope::Strict,
        namespace: "prod".into(),
        name: Some("db".into()),
        keys: vec!["blob".into()],
        recipients,
        secret,
        mac_key: mac_key_b64,
        mac: base64::engine::general_purpose::STANDARD.encode(format::mac(&mac_key, &input)),
    };
    let mut data = cts;
    data.insert(format::META_KEY.into(), meta.to_json());
    let got = hush_sealer::open_value(&data, "prod", "db", "blob", &identity).unwrap();
    assert_eq!(got.as_slice(), value);

    // And through the CLI, with the age-keygen identity file.
    let cm = hush_sealer::SealedConfigMap {
        namespace: "prod".into(),
        name: "db".into(),
        labels: [(format::LABEL.to_owned(), format::LABEL_VALUE.to_owned())].into(),
        annotations: BTreeMap::new(),
        data,
    };
    let sealed = dir.join("sealed.yaml");
    std::fs::write(&sealed, cm.to_yaml()).unwrap();
    let out = hush()
        .arg("unseal")
        .arg("-i")
        .arg(&key_file)
        .arg(&sealed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = hush_sealer::Secret::parse(std::str::from_utf8(&out.stdout).unwrap(), "t").unwrap();
    assert_eq!(back.values["blob"].expose(), value);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn hush_keygen_identities_work_with_the_age_cli() {
    let out = hush().arg("keygen").output().unwrap();
    assert!(out.status.success());
    let dir = scratch("keygen-interop");
    let key_file = dir.join("k.txt");
    std::fs::write(&key_file, &out.stdout).unwrap();
    let id = hush_sealer::parse_identity(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    let ct = age::encrypt(&id.to_public(), b"interop").unwrap();
    let mut age = age_cli("age");
    age.arg("-d").arg("-i").arg(&key_file);
    assert_eq!(pipe(age, &ct), b"interop");
    std::fs::remove_dir_all(dir).unwrap();
}
