//! Byte writers for the hot end of an admission: a JSON string literal and base64, written
//! straight into the answer's buffer. A patched answer is mostly the sidecar's JSON (its
//! `HUSH_CONFIG` is JSON inside a JSON string, a quote every few bytes) and then all of it again
//! as base64; through serde_json's generic serializer and the `base64` engine these two steps were
//! about a fifth of an admission's instructions. The output is byte for byte what serde_json and
//! the standard base64 alphabet give (the tests below compare them on every kind of input, and
//! `tests/golden.rs` compares whole patches).

/// The standard base64 alphabet.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Two base64 characters for every 12-bit value: one lookup per half of a 3-byte group.
static PAIRS: [[u8; 2]; 4096] = {
    let mut t = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = [ALPHABET[i >> 6], ALPHABET[i & 63]];
        i += 1;
    }
    t
};

/// The length of the padded base64 of `n` bytes.
pub(crate) const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The base64 of one 3-byte group.
fn quad(g: &[u8; 3]) -> [u8; 4] {
    let n = (usize::from(g[0]) << 16) | (usize::from(g[1]) << 8) | usize::from(g[2]);
    let [a, b] = PAIRS[(n >> 12) & 0xfff];
    let [c, d] = PAIRS[n & 0xfff];
    [a, b, c, d]
}

/// Appends the padded standard base64 of `input` to `out`: 48 input bytes at a time through a
/// 64-byte block on the stack, then the last groups, then the padding.
pub(crate) fn push_base64(out: &mut Vec<u8>, input: &[u8]) {
    out.reserve(base64_len(input.len()));
    let (blocks, tail) = input.as_chunks::<48>();
    for block in blocks {
        let mut buf = [[0u8; 4]; 16];
        for (q, g) in buf.iter_mut().zip(block.as_chunks::<3>().0) {
            *q = quad(g);
        }
        out.extend_from_slice(buf.as_flattened());
    }
    let (groups, rest) = tail.as_chunks::<3>();
    for g in groups {
        out.extend_from_slice(&quad(g));
    }
    match *rest {
        [x] => {
            let [a, b, _, _] = quad(&[x, 0, 0]);
            out.extend_from_slice(&[a, b, b'=', b'=']);
        }
        [x, y] => {
            let [a, b, c, _] = quad(&[x, y, 0]);
            out.extend_from_slice(&[a, b, c, b'=']);
        }
        _ => {}
    }
}

/// What a byte becomes inside a JSON string: 0 for itself, or the letter after the backslash
/// (`u` for `\u00XX`). The same escapes serde_json writes.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` as a JSON string literal (quotes included), escaped as serde_json escapes it.
/// Room for two bytes per byte is made first, so the loop pushes bytes one by one without growing
/// the buffer or copying short runs (a config's JSON has a quote every few bytes).
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 * s.len() + 2);
    out.push(b'"');
    for &b in s.as_bytes() {
        match ESCAPE[usize::from(b)] {
            0 => out.push(b),
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
            e => out.extend_from_slice(&[b'\\', e]),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn base64_is_the_standard_padded_alphabet() {
        // Every length through three full groups and every remainder, over bytes that cover
        // every 6-bit value in every position.
        let data: Vec<u8> = (0..=255u8)
            .chain((0..=255u8).rev())
            .cycle()
            .take(1000)
            .collect();
        for len in (0..40).chain([255, 256, 257, 999, 1000]) {
            let mut out = b"prefix".to_vec();
            push_base64(&mut out, &data[..len]);
            let want = base64::engine::general_purpose::STANDARD.encode(&data[..len]);
            assert_eq!(&out[6..], want.as_bytes(), "length {len}");
            assert_eq!(out.len() - 6, base64_len(len));
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let every_ascii: String = (0u8..128).map(char::from).collect();
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "\"",
            "\\",
            "{\"version\":1,\"template\":\"x\\n{{ a }}\"}",
            "tab\tnew\nline\rret\u{8}bs\u{c}ff\u{0}nul\u{1f}us\u{7f}del",
            "ünïcødé ✓ \u{2028} 🦀",
            &every_ascii,
        ] {
            let mut out = b"[".to_vec();
            push_str(&mut out, s);
            let want = serde_json::to_string(s).unwrap();
            assert_eq!(std::str::from_utf8(&out[1..]).unwrap(), want, "{s:?}");
        }
    }
}
