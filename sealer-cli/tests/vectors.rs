//! Versioned test vectors for the sealed format (`testdata/v1/*.txt`), one file per case, in the
//! style of rage's testkit: a header of `name: value` lines (`expect:` first), a `---` line, then a
//! sealed ConfigMap manifest. Each case is opened as the sidecar opens it (with [`open_value`] for
//! the header's `key`, in the manifest's own namespace and name) and, for success cases, unsealed
//! whole. The vectors are committed; `regenerate` (ignored) rebuilds them, including the attacks a
//! Git writer who holds only the recipients' public keys can mount (re-MAC with a fresh MAC key).
//!
//! Regenerate: `cargo test -p hush-sealer --test vectors -- --ignored regenerate`

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use base64::Engine as _;
use hush_sealed_format::format::{self, Meta, Scope};
use hush_sealer::{Error, SealedConfigMap, open_value, unseal};

use common::*;

fn vector_dir() -> PathBuf {
    testdata().join("v1")
}

/// The expectation class of an error.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::Binding { .. } => "binding",
        Error::Integrity { .. } => "integrity",
        Error::Decrypt { .. } => "decrypt",
        Error::InvalidSealed { .. } => "invalid",
        Error::UnsupportedVersion { .. } => "unsupported",
        Error::Yaml { .. } | Error::InputTooLarge { .. } => "yaml",
        Error::MissingKey { .. } => "missing-key",
        _ => "other",
    }
}

struct Vector {
    file: String,
    headers: BTreeMap<String, String>,
    body: String,
}

fn load() -> Vec<Vector> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(vector_dir())
        .expect("testdata/v1 exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        let (head, body) = text.split_once("\n---\n").expect("header, ---, body");
        let mut headers = BTreeMap::new();
        for line in head.lines() {
            let (k, v) = line.split_once(": ").expect("name: value header");
            headers.insert(k.to_owned(), v.to_owned());
        }
        assert!(
            head.starts_with("expect: "),
            "{}: expect first",
            p.display()
        );
        out.push(Vector {
            file: p.file_name().unwrap().to_string_lossy().into_owned(),
            headers,
            body: body.to_owned(),
        });
    }
    out
}

/// Runs one vector; returns the observed outcome (`success` or an error kind).
fn run(v: &Vector) -> Result<&'static str, String> {
    let id = identity(v.headers.get("identity").map_or("prod", String::as_str));
    let key = v.headers.get("key").map_or("password", String::as_str);
    let cm = match SealedConfigMap::parse(&v.body, &v.file) {
        Ok(cm) => cm,
        Err(e) => return Ok(kind(&e)),
    };
    match open_value(&cm.data, &cm.namespace, &cm.name, key, &id) {
        Ok(value) => {
            if let Some(expected) = v.headers.get("value-base64") {
                let expected = base64::engine::general_purpose::STANDARD
                    .decode(expected)
                    .unwrap();
                if value.as_slice() != expected.as_slice() {
                    return Err("wrong value".into());
                }
            } else {
                return Err("success vectors need value-base64".into());
            }
            // `unseal:` gives the expected outcome of unsealing the whole set (default success).
            let want = v.headers.get("unseal").map_or("success", String::as_str);
            match unseal(&cm, std::slice::from_ref(&id)) {
                Ok(secret) if want == "success" => {
                    if secret.values[key].expose() != value.as_slice() {
                        return Err("unseal and open_value disagree".into());
                    }
                }
                Ok(_) => return Err(format!("unseal succeeded, expected {want}")),
                Err(e) if kind(&e) == want => {}
                Err(e) => return Err(format!("unseal: expected {want}, got {e}")),
            }
            Ok("success")
        }
        Err(e) => {
            let msg = e.to_string();
            for secret in ["hunter2", "admin"] {
                if msg.contains(secret) {
                    return Err(format!("error message leaks a value: {msg}"));
                }
            }
            Ok(kind(&e))
        }
    }
}

#[test]
fn every_vector_meets_its_expectation() {
    let vectors = load();
    assert!(
        vectors.len() >= 20,
        "expected the committed vectors, found {}",
        vectors.len()
    );
    let mut failures = Vec::new();
    for v in &vectors {
        let expect = &v.headers["expect"];
        match run(v) {
            Ok(got) if got == expect => {}
            Ok(got) => failures.push(format!("{}: expected {expect}, got {got}", v.file)),
            Err(e) => failures.push(format!("{}: {e}", v.file)),
        }
    }
    assert!(
        failures.is_empty(),
        "vector failures:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Generation (ignored): the honest seals and the attacks.

fn write(name: &str, headers: &[(&str, String)], body: &str) {
    let mut text = String::new();
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push_str("---\n");
    text.push_str(body);
    let mut f = std::fs::File::create(vector_dir().join(format!("{name}.txt"))).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn meta(cm: &SealedConfigMap) -> Meta {
    Meta::parse(&cm.data[format::META_KEY], "x").unwrap()
}

fn set_meta(cm: &mut SealedConfigMap, m: &Meta) {
    cm.data.insert(format::META_KEY.into(), m.to_json());
}

fn age_encrypt(recipients: &[String], data: &[u8], armor: bool) -> Vec<u8> {
    let rs: Vec<age::x25519::Recipient> = recipients.iter().map(|r| r.parse().unwrap()).collect();
    let enc = age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    if armor {
        let a = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
            .unwrap();
        let mut w = enc.wrap_output(a).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap().finish().unwrap();
    } else {
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap();
    }
    out
}

/// What a Git writer with only the public keys can do: pick a fresh MAC key, encrypt it to the
/// listed recipients, and recompute the MAC over the (tampered) set. Returns the new MAC key.
fn remac(cm: &mut SealedConfigMap) -> [u8; 32] {
    let mut m = meta(cm);
    let key = [7u8; 32];
    m.mac_key = b64(&age_encrypt(&m.recipients, &key, false));
    m.keys = cm
        .data
        .keys()
        .filter(|k| *k != format::META_KEY)
        .cloned()
        .collect();
    let cts: BTreeMap<String, String> = cm
        .data
        .iter()
        .filter(|(k, _)| *k != format::META_KEY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let input = format::mac_input(
        m.scope,
        &cm.namespace,
        &cm.name,
        &m.secret,
        &m.recipients,
        &m.mac_key,
        &cts,
    );
    m.mac = b64(&format::mac(&key, &input));
    set_meta(cm, &m);
    key
}

fn sync_keys(cm: &mut SealedConfigMap) {
    let mut m = meta(cm);
    m.keys = cm
        .data
        .keys()
        .filter(|k| *k != format::META_KEY)
        .cloned()
        .collect();
    set_meta(cm, &m);
}

#[test]
#[ignore = "rewrites testdata/v1; run by hand when the format changes"]
fn regenerate() {
    std::fs::create_dir_all(vector_dir()).unwrap();
    for e in std::fs::read_dir(vector_dir()).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let recipients = vec![recipient("prod"), recipient("team")];
    let secret = sample_secret();
    let base = hush_sealer::seal(&secret, "prod", Scope::Strict, &recipients).unwrap();
    let y = |cm: &SealedConfigMap| cm.to_yaml();
    let ok = |key: &str| b64(secret.values[key].expose());
    let c = |s: &str| ("comment", s.to_owned());
    let e = |s: &str| ("expect", s.to_owned());
    let k = |s: &str| ("key", s.to_owned());

    write(
        "ok-strict",
        &[
            e("success"),
            c("honest seal, strict scope"),
            k("password"),
            ("value-base64", ok("password")),
        ],
        &y(&base),
    );
    write(
        "ok-binary",
        &[
            e("success"),
            c("binary value round-trips byte for byte"),
            k("bin"),
            ("value-base64", ok("bin")),
        ],
        &y(&base),
    );
    write(
        "ok-team-identity",
        &[
            e("success"),
            c("any listed recipient can open"),
            ("identity", "team".into()),
            k("config"),
            ("value-base64", ok("config")),
        ],
        &y(&base),
    );

    let ns_scoped = hush_sealer::seal(&secret, "prod", Scope::Namespace, &recipients).unwrap();
    let mut renamed = ns_scoped.clone();
    renamed.name = "db-renamed".into();
    write(
        "ok-namespace-scope-renamed",
        &[
            e("success"),
            c("namespace scope: the ConfigMap may be renamed"),
            k("password"),
            ("value-base64", ok("password")),
        ],
        &y(&renamed),
    );
    let mut ns_moved = ns_scoped.clone();
    ns_moved.namespace = "staging".into();
    write(
        "namespace-scope-moved-namespace",
        &[e("binding"), c("namespace scope still binds the namespace")],
        &y(&ns_moved),
    );

    let mut cm = base.clone();
    cm.name = "db2".into();
    write(
        "strict-renamed",
        &[e("binding"), c("strict ConfigMap renamed")],
        &y(&cm),
    );
    let mut m = meta(&cm);
    m.name = Some("db2".into());
    set_meta(&mut cm, &m);
    write(
        "strict-renamed-meta-edited",
        &[e("integrity"), c("renamed, _hush.name edited to match")],
        &y(&cm),
    );
    remac(&mut cm);
    write(
        "strict-renamed-remac",
        &[
            e("binding"),
            c("renamed and re-MACed with a fresh MAC key: the value headers still bind db"),
        ],
        &y(&cm),
    );

    let mut cm = base.clone();
    cm.namespace = "staging".into();
    write(
        "moved-namespace",
        &[e("binding"), c("copied to another namespace")],
        &y(&cm),
    );
    let mut m = meta(&cm);
    m.namespace = "staging".into();
    set_meta(&mut cm, &m);
    write(
        "moved-namespace-meta-edited",
        &[
            e("integrity"),
            c("copied to another namespace, _hush edited"),
        ],
        &y(&cm),
    );
    remac(&mut cm);
    write(
        "moved-namespace-remac",
        &[e("binding"), c("copied, _hush edited and re-MACed")],
        &y(&cm),
    );

    let mut cm = base.clone();
    let (p, u) = (cm.data["password"].clone(), cm.data["user"].clone());
    cm.data.insert("password".into(), u);
    cm.data.insert("user".into(), p);
    write(
        "value-moved-between-keys",
        &[e("integrity"), c("password and user ciphertexts swapped")],
        &y(&cm),
    );
    remac(&mut cm);
    write(
        "value-moved-between-keys-remac",
        &[e("binding"), c("swapped and re-MACed")],
        &y(&cm),
    );

    let other = hush_sealer::seal(
        &hush_sealer::Secret {
            name: "api".into(),
            ..secret.clone()
        },
        "prod",
        Scope::Strict,
        &recipients,
    )
    .unwrap();
    let mut cm = base.clone();
    cm.data
        .insert("password".into(), other.data["password"].clone());
    write(
        "value-from-other-object",
        &[e("integrity"), c("password taken from prod/api")],
        &y(&cm),
    );
    remac(&mut cm);
    write(
        "value-from-other-object-remac",
        &[e("binding"), c("password taken from prod/api, re-MACed")],
        &y(&cm),
    );

    let mut cm = base.clone();
    let p = cm.data.remove("password").unwrap();
    cm.data.insert("pass".into(), p);
    sync_keys(&mut cm);
    write(
        "key-renamed",
        &[e("integrity"), c("password renamed to pass"), k("pass")],
        &y(&cm),
    );
    remac(&mut cm);
    write(
        "key-renamed-remac",
        &[
            e("binding"),
            c("password renamed to pass, re-MACed"),
            k("pass"),
        ],
        &y(&cm),
    );

    let mut cm = base.clone();
    cm.data.insert("extra".into(), base.data["user"].clone());
    sync_keys(&mut cm);
    write(
        "key-added",
        &[e("integrity"), c("a key added (a copy of user)")],
        &y(&cm),
    );
    let mut cm2 = cm.clone();
    cm2.data.remove("extra");
    write(
        "key-added-not-listed",
        &[e("integrity"), c("key list edited without the data")],
        &y(&{
            let mut x = base.clone();
            x.data.insert("extra".into(), base.data["user"].clone());
            x
        }),
    );
    let _ = cm2;

    let mut cm = base.clone();
    cm.data.remove("user");
    sync_keys(&mut cm);
    write("key-dropped", &[e("integrity"), c("user dropped")], &y(&cm));
    remac(&mut cm);
    write(
        "key-dropped-remac",
        &[
            e("binding"),
            c("user dropped, re-MACed: the remaining values carry the old seal id"),
        ],
        &y(&cm),
    );

    let mut cm = base.clone();
    let v = cm.data["password"].clone();
    let lines: Vec<&str> = v.lines().collect();
    let truncated = format!(
        "{}\n{}\n",
        lines[..lines.len() - 2].join("\n"),
        lines[lines.len() - 1]
    );
    cm.data.insert("password".into(), truncated);
    write(
        "truncated",
        &[e("integrity"), c("last armor body line removed")],
        &y(&cm),
    );
    remac(&mut cm);
    write(
        "truncated-remac",
        &[e("decrypt"), c("truncated and re-MACed: age refuses it")],
        &y(&cm),
    );

    let mut cm = base.clone();
    let v = cm.data["password"].clone();
    let mut lines: Vec<String> = v.lines().map(str::to_owned).collect();
    let i = lines.len() - 2;
    let last = lines[i].clone();
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(&last)
        .unwrap_or_else(|_| {
            let pad = (4 - last.len() % 4) % 4;
            base64::engine::general_purpose::STANDARD
                .decode(format!("{last}{}", "=".repeat(pad)))
                .unwrap()
        });
    bytes[0] ^= 1;
    lines[i] = base64::engine::general_purpose::STANDARD.encode(&bytes)[..last.len()].to_owned();
    cm.data
        .insert("password".into(), format!("{}\n", lines.join("\n")));
    write(
        "bitflip",
        &[e("integrity"), c("one bit of the payload flipped")],
        &y(&cm),
    );
    remac(&mut cm);
    write(
        "bitflip-remac",
        &[
            e("decrypt"),
            c("bit flipped and re-MACed: age's AEAD refuses it"),
        ],
        &y(&cm),
    );

    write(
        "wrong-identity",
        &[
            e("decrypt"),
            c("identity not among the recipients"),
            ("identity", "other".into()),
        ],
        &y(&base),
    );

    let mut cm = base.clone();
    let mut m = meta(&cm);
    m.mac = b64(&[0u8; 32]);
    set_meta(&mut cm, &m);
    write(
        "mac-tampered",
        &[e("integrity"), c("MAC replaced")],
        &y(&cm),
    );

    let mut cm = base.clone();
    let mut m = meta(&cm);
    m.scope = Scope::Namespace;
    m.name = None;
    set_meta(&mut cm, &m);
    write(
        "scope-widened",
        &[
            e("integrity"),
            c("strict scope widened to namespace in _hush"),
        ],
        &y(&cm),
    );
    remac(&mut cm);
    write(
        "scope-widened-remac",
        &[
            e("binding"),
            c("scope widened and re-MACed: headers say strict"),
        ],
        &y(&cm),
    );

    let mut cm = base.clone();
    let mut m = meta(&cm);
    m.recipients.push(recipient("other"));
    m.recipients.sort();
    set_meta(&mut cm, &m);
    write(
        "recipient-list-edited",
        &[e("integrity"), c("attacker added to the recipient list")],
        &y(&cm),
    );

    let mut cm = base.clone();
    let mut m = meta(&cm);
    m.secret.type_ = "kubernetes.io/dockerconfigjson".into();
    set_meta(&mut cm, &m);
    write(
        "secret-type-edited",
        &[e("integrity"), c("Secret type changed")],
        &y(&cm),
    );

    let mut cm = base.clone();
    let h = format::header_line(Scope::Strict, "prod", "db", "password", "0000");
    let mut plain = h.into_bytes();
    plain.extend_from_slice(b"evil");
    let _ = plain;
    cm.data.insert(
        "password".into(),
        String::from_utf8(age_encrypt(&recipients, b"no header here", true)).unwrap(),
    );
    remac(&mut cm);
    write(
        "foreign-age-value-remac",
        &[
            e("binding"),
            c("a value encrypted with plain age, no hush header"),
        ],
        &y(&cm),
    );

    let mut cm = base.clone();
    let key = remac(&mut cm);
    let mut forged = format::header_line(
        Scope::Strict,
        "prod",
        "db",
        "injected",
        &format::seal_id(&key),
    )
    .into_bytes();
    forged.extend_from_slice(b"attacker-chosen");
    cm.data.insert(
        "injected".into(),
        String::from_utf8(age_encrypt(&recipients, &forged, true)).unwrap(),
    );
    remac(&mut cm);
    write(
        "injected-key-remac-genuine-key",
        &[
            e("binding"),
            c("attacker re-MACed and injected a key: the genuine keys no longer open"),
        ],
        &y(&cm),
    );
    write(
        "injected-key-remac-injected-key",
        &[
            e("success"),
            c(
                "RESIDUAL RISK (FORMAT.md): the injected key itself opens, like a file freshly sealed by an attacker; unsealing the whole set fails",
            ),
            ("unseal", "binding".into()),
            k("injected"),
            ("value-base64", b64(b"attacker-chosen")),
        ],
        &y(&cm),
    );

    let mut cm = base.clone();
    let mut m = meta(&cm);
    m.version = 2;
    set_meta(&mut cm, &m);
    write(
        "unknown-version",
        &[e("unsupported"), c("_hush says version 2")],
        &y(&cm),
    );
    let mut cm = base.clone();
    cm.labels.insert(format::LABEL.into(), "v2".into());
    write(
        "unknown-label-version",
        &[e("unsupported"), c("label says v2")],
        &y(&cm),
    );

    write(
        "missing-key",
        &[
            e("missing-key"),
            c("asks for a key that is not there"),
            k("nope"),
        ],
        &y(&base),
    );
    let mut cm = base.clone();
    cm.data.remove(format::META_KEY);
    write("no-meta", &[e("invalid"), c("_hush removed")], &y(&cm));

    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    write(
        "alias-bomb",
        &[
            e("yaml"),
            c("billion laughs in unknown metadata fields (which serde skips node by node)"),
        ],
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db\n  namespace: prod\n  labels: {{hush.dev/sealed: v1}}\n{}",
            bomb.lines().map(|l| format!("  {l}\n")).collect::<String>()
        ),
    );
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    write(
        "deep-nesting",
        &[
            e("yaml"),
            c("100 nested sequences in an unknown metadata field"),
        ],
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db\n  namespace: prod\n  labels: {{hush.dev/sealed: v1}}\n  deep: {deep}\n"
        ),
    );
}
