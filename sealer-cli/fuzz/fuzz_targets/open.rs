//! The decryptor: a valid sealed set (fixed identity) whose `_hush` and one value are replaced by
//! fuzzer bytes, or spliced with them, goes through `open_value` (MAC check, age streaming
//! decryption, header check). It must fail cleanly or return the right value; never panic.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Fixture {
    identity: hush_sealer::Identity,
    data: BTreeMap<String, String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let identity = hush_sealer::Identity::from(age::x25519::Identity::generate());
        let mut values = BTreeMap::new();
        values.insert(
            "password".to_owned(),
            hush_sealer::SecretValue::new(zeroize::Zeroizing::new(b"hunter2".to_vec())),
        );
        let secret = hush_sealer::Secret {
            name: "db".into(),
            namespace: Some("prod".into()),
            meta: Default::default(),
            values,
        };
        let cm = hush_sealer::seal(
            &secret,
            "prod",
            hush_sealer::Scope::Strict,
            &[identity.to_public().to_string()],
        )
        .expect("fixture seals");
        Fixture { identity, data: cm.data }
    })
}

fuzz_target!(|input: &[u8]| {
    let f = fixture();
    let Some((&selector, rest)) = input.split_first() else { return };
    let text = String::from_utf8_lossy(rest).into_owned();
    let mut data = f.data.clone();
    match selector % 4 {
        0 => {
            data.insert("password".into(), text);
        }
        1 => {
            data.insert("_hush".into(), text);
        }
        2 => {
            // Splice: keep a valid prefix of the ciphertext, then fuzzer bytes.
            let v = &f.data["password"];
            let cut = (usize::from(selector) * 7) % v.len();
            data.insert("password".into(), format!("{}{}", &v[..cut], text));
        }
        _ => {
            let m = &f.data["_hush"];
            let cut = (usize::from(selector) * 13) % m.len();
            data.insert("_hush".into(), format!("{}{}", &m[..cut], text));
        }
    }
    if let Ok(v) = hush_sealer::open_value(&data, "prod", "db", "password", &f.identity) {
        assert_eq!(v.as_slice(), b"hunter2", "a mutated set opened to a different value");
    }
});
