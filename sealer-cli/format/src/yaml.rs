//! Bounded YAML/JSON parsing and safe YAML emission. Every manifest hush reads comes from a user or
//! from Git, so it goes through one parser with hard limits: a byte cap checked before parsing, a
//! nesting depth of 64, few aliases and a small replay budget (alias bombs fail fast), and errors that
//! carry a line and column but never a snippet of the input (which could hold a secret value).
//! Emission is done by hand with JSON-quoted scalars, which are valid YAML double-quoted scalars, so
//! no user string can change the structure of what we write.

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Largest manifest hush will parse (4 MiB): a Secret is capped at 1 MiB by the API server, so
/// anything bigger is a mistake or an attack.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Deepest nesting accepted. Kubernetes manifests are shallow.
pub const MAX_DEPTH: usize = 64;

/// Most documents one multi-document stream may hold (`hush migrate` reads whole manifests).
pub const MAX_DOCUMENTS: usize = 1000;

/// Parser options with the budgets described in the module docs.
fn options() -> serde_saphyr::Options {
    options_for(1)
}

fn options_for(documents: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = 64;
    budget.max_anchors = 64;
    budget.max_recorded_anchor_events = 10_000;
    budget.max_recorded_anchor_bytes = 1024 * 1024;
    budget.max_documents = documents;
    budget.max_nodes = 100_000;
    budget.max_total_scalar_bytes = MAX_INPUT_BYTES;
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = 10_000;
    alias_limits.max_replay_stack_depth = MAX_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits = alias_limits;
    options.with_snippet = false;
    options
}

/// Parses `text` (YAML or JSON) into `T`, enforcing the byte cap and budgets. `what` names the
/// input in errors ("the Secret in secret.yaml").
pub fn parse<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    check_size(text.len(), what)?;
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| yaml_error(&e, what))
}

/// Parses every document of a `---`-separated stream (at most [`MAX_DOCUMENTS`]) into `T`, with
/// the same caps and budgets as [`parse`].
pub fn parse_all<T: DeserializeOwned>(text: &str, what: &str) -> Result<Vec<T>> {
    check_size(text.len(), what)?;
    serde_saphyr::from_multiple_with_options(text, options_for(MAX_DOCUMENTS))
        .map_err(|e| yaml_error(&e, what))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

/// Checks that `text` is a Kubernetes object of `kind` (apiVersion v1) before the full parse, so a
/// wrong file gets "expected X, found Y" instead of a field error. `hint` is added when it is not.
pub fn expect_kind(text: &str, what: &str, kind: &str, hint: &str) -> Result<()> {
    let probe: TypeMeta = parse(text, what)?;
    let api = probe.api_version.unwrap_or_default();
    let found = probe.kind.unwrap_or_default();
    if api != "v1" || found != kind {
        let mut reason = format!(
            "expected apiVersion v1, kind {kind}; found {}, {}",
            shown("apiVersion", &api, KNOWN_API_VERSIONS),
            shown("kind", &found, KNOWN_KINDS)
        );
        if !hint.is_empty() {
            reason.push_str("; ");
            reason.push_str(hint);
        }
        return Err(Error::Yaml {
            what: what.to_owned(),
            detail: reason,
        });
    }
    Ok(())
}

/// Parses a manifest of `kind` as `T`: one parse when it succeeds and `is_kind` holds (`T`'s own
/// `apiVersion` and `kind`). Only a file that fails pays for [`expect_kind`] first (with
/// `hint()`), so a file of another kind is named as such rather than by its first unknown field.
pub fn parse_manifest<T: DeserializeOwned>(
    text: &str,
    what: &str,
    kind: &str,
    hint: impl FnOnce() -> &'static str,
    is_kind: impl FnOnce(&T) -> bool,
) -> Result<T> {
    match parse::<T>(text, what) {
        Ok(v) if is_kind(&v) => Ok(v),
        other => {
            expect_kind(text, what, kind, hint())?;
            other
        }
    }
}

/// Kinds a misplaced file commonly has: named in errors. Anything else is input that may be a
/// secret (a stray line of a value), so it is never repeated.
const KNOWN_KINDS: &[&str] = &[
    "Secret",
    "ConfigMap",
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Service",
    "ServiceAccount",
    "Namespace",
    "List",
    "SealedSecret",
];
const KNOWN_API_VERSIONS: &[&str] = &[
    "v1",
    "apps/v1",
    "batch/v1",
    "bitnami.com/v1alpha1",
    "networking.k8s.io/v1",
];

/// `field "value"` when the value is one of `known` (or absent), else `another field` (never
/// the value itself).
fn shown(field: &str, value: &str, known: &[&str]) -> String {
    if value.is_empty() {
        format!("no {field}")
    } else if known.contains(&value) {
        format!("{field} {value:?}")
    } else {
        format!("another {field} (not repeated here: it could be a secret)")
    }
}

/// Fails with [`Error::InputTooLarge`] when `size` is over [`MAX_INPUT_BYTES`].
pub fn check_size(size: usize, what: &str) -> Result<()> {
    if size > MAX_INPUT_BYTES {
        return Err(Error::InputTooLarge {
            what: what.to_owned(),
            size,
            limit: MAX_INPUT_BYTES,
            hint: "a Kubernetes object is at most 1 MiB; check that this is the right file",
        });
    }
    Ok(())
}

/// Turns a parser error into a message with a location only. serde errors such as
/// `invalid type: string "hunter2"` quote input, so we never forward their text, except for
/// messages we know carry only field names.
fn yaml_error(e: &serde_saphyr::Error, what: &str) -> Error {
    let at = e
        .location()
        .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
        .unwrap_or_default();
    let detail = match e {
        serde_saphyr::Error::Budget { breach, .. } => {
            format!(
                "rejected{at}: it exceeds a parser limit ({breach:?}); hush refuses YAML alias \
                 bombs, nesting deeper than {MAX_DEPTH} and oversized documents"
            )
        }
        _ => {
            let text = e.to_string();
            if let Some(rest) = text.split("budget breached: ").nth(1) {
                // The breach description holds names and counts only.
                let breach = rest.split(" at line").next().unwrap_or("").to_owned();
                return Error::Yaml {
                    what: what.to_owned(),
                    detail: format!(
                        "rejected{at}: it exceeds a parser limit ({breach}); hush refuses YAML \
                         alias bombs, nesting deeper than {MAX_DEPTH} and oversized documents"
                    ),
                };
            }
            // Names from our schema (a missing or duplicate field, the fields an object may have)
            // are safe and helpful. The name of an unknown field is input: a misplaced line of a
            // value can put a secret exactly there, so it is never repeated; the message lists the
            // fields allowed instead, and names the one it is a typo of when it is that close.
            let safe = if text.contains("unknown field") {
                Some(unknown_field_hint(&text))
            } else {
                ["missing field", "duplicate field"]
                    .iter()
                    .find(|p| text.contains(*p))
                    .and_then(|_| text.split('`').nth(1).map(|f| format!(" (field `{f}`)")))
            };
            let kind = if text.contains("unknown field") {
                "unknown field"
            } else if text.contains("missing field") {
                "missing field"
            } else if text.to_ascii_lowercase().contains("alias")
                || text.to_ascii_lowercase().contains("recursion")
                || text.to_ascii_lowercase().contains("depth")
            {
                "alias or nesting limit exceeded"
            } else if text.to_ascii_lowercase().contains("multiple documents") {
                "more than one YAML document; give one object per file"
            } else {
                "not valid YAML/JSON for this kind of object"
            };
            format!("{kind}{}{at}", safe.unwrap_or_default())
        }
    };
    Error::Yaml {
        what: what.to_owned(),
        detail,
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": the allowed fields, and `did you mean`
/// when `x` is one or two edits from one of them. `x` itself is never part of the result.
fn unknown_field_hint(text: &str) -> String {
    let unknown = text.split('`').nth(1).unwrap_or("");
    let list = text
        .split_once("expected ")
        .map_or("", |(_, rest)| rest.split(" at line").next().unwrap_or(""));
    let list = list.strip_prefix("one of ").unwrap_or(list);
    let expected: Vec<&str> = list
        .split([',', ' '])
        .map(|f| f.trim_matches('`'))
        .filter(|f| !f.is_empty() && *f != "or")
        .collect();
    if expected.is_empty() {
        return String::new();
    }
    let close = expected
        .iter()
        .find(|f| edit_distance(unknown, f) <= 2)
        .map(|f| format!("did you mean `{f}`? "))
        .unwrap_or_default();
    format!(" ({close}allowed here: {})", expected.join(", "))
}

/// Levenshtein distance, for short field names only.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Quotes `s` as a JSON string with every non-ASCII or non-printable character escaped. The result
/// is a valid YAML double-quoted scalar and a valid JSON string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// A YAML mapping key or plain value, quoted unless it is obviously a plain string.
pub fn scalar(s: &str) -> String {
    let plain = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain { s.to_owned() } else { quote(s) }
}

/// Escapes every non-ASCII character of a JSON document so that it is printable YAML content.
/// Non-ASCII characters only occur inside JSON strings, where `\uXXXX` means the same.
pub fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && (c == '\n' || !c.is_ascii_control()) {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Appends `text` as a YAML literal block (`|`, `|-` or `|+`) indented by `indent` spaces, or
/// returns `false` when `text` cannot be written as a literal block byte for byte (the caller then
/// quotes it).
pub fn push_literal_block(out: &mut String, text: &str, indent: usize) -> bool {
    // ASCII (every armored ciphertext) is checked a byte at a time; the rules are the same.
    let printable = if text.is_ascii() {
        // Without short-circuiting, so the loop is vectorised.
        text.bytes().fold(true, |ok, b| {
            ok & (b == b'\n' || (b' '..=b'~').contains(&b))
        })
    } else {
        text.chars().all(|c| {
            c == '\n'
                || (!c.is_control()
                    && c != '\t'
                    && c != '\u{feff}'
                    && c != '\u{2028}'
                    && c != '\u{2029}')
        })
    };
    if text.is_empty() || !printable || text.starts_with(' ') || text.starts_with('\n') {
        return false;
    }
    // A line holding only spaces before the content would confuse indentation detection.
    let trailing = text.len() - text.trim_end_matches('\n').len();
    let body = &text[..text.len() - trailing];
    let chomp = match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    };
    out.push_str(chomp);
    out.push('\n');
    let pad = " ".repeat(indent);
    out.reserve(body.len() + body.len() / 16 * indent + indent + 1);
    for line in body.split('\n') {
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    for _ in 1..trailing {
        out.push('\n');
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn an_unknown_field_is_named_only_through_the_schema() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            metadata: Option<u8>,
            kind: Option<String>,
        }
        let typo = parse::<S>("metdata: 1\n", "x").unwrap_err().to_string();
        assert!(typo.contains("did you mean `metadata`?"), "{typo}");
        assert!(typo.contains("allowed here: metadata, kind"), "{typo}");
        assert!(typo.contains("line 1"), "{typo}");
        let stray = parse::<S>("hunter2-canary: 1\n", "x")
            .unwrap_err()
            .to_string();
        assert!(!stray.contains("hunter2"), "{stray}");
        assert!(stray.contains("allowed here: metadata, kind"), "{stray}");
    }

    #[test]
    fn quote_round_trips_through_the_parser() {
        for s in [
            "plain",
            "with \"quotes\" and \\",
            "tab\tnl\n",
            "é ✓ 😀",
            "\u{7f}\u{85}\u{feff}",
        ] {
            let doc = format!("v: {}\n", quote(s));
            let m: BTreeMap<String, String> = parse(&doc, "test").unwrap();
            assert_eq!(m["v"], s);
        }
    }

    #[test]
    fn literal_blocks_round_trip() {
        for s in ["a", "a\n", "a\n\n", "a\n\nb", "x: y\n  z\n", "end\n\n\n"] {
            let mut doc = String::from("v: ");
            assert!(push_literal_block(&mut doc, s, 2), "{s:?}");
            let m: BTreeMap<String, String> = parse(&doc, "test").unwrap();
            assert_eq!(m["v"], s, "{doc}");
        }
        let mut doc = String::new();
        assert!(!push_literal_block(&mut doc, " leading space", 2));
        assert!(!push_literal_block(&mut doc, "", 2));
    }

    #[test]
    fn alias_bomb_in_ignored_fields_hits_the_budget() {
        let mut bomb = String::from("name: x\na0: &a0 [lol, lol]\n");
        for i in 1..40 {
            bomb.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 9].join(", ")
            ));
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Meta {
            name: String,
        }
        let err = parse::<Meta>(&bomb, "bomb").unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn errors_never_quote_values() {
        let err = parse::<BTreeMap<String, BTreeMap<String, String>>>("v: hunter2-canary\n", "x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
