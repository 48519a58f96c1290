//! The template sandbox, shared by the check at admission and the rendering in the pod: no loader
//! (so no `include`, `import` or `extends` of files), no environment or network access (MiniJinja
//! has none), strict undefined, a fuel limit on instructions, a recursion limit and no
//! auto-escaping. It lives with the parser so that `hush.dev/template-<file>` is refused at
//! `kubectl apply` by exactly the engine settings that would later render it.
//!
//! The admission check compiles each template in one shared sandbox (building an environment
//! registers every builtin filter and test, which cost more than compiling a short template), and
//! remembers the last [`PARSED_CACHE`] sources that compiled, as keyed 64-bit hashes: every replica
//! of a Deployment carries the same template, and the annotation parser checks it twice per pod
//! (once as it builds the config, once when it validates the result).
//!
//! A template may also read other files of the same pod as `files["name"]` (or `files.name` when
//! the name is an identifier). Which files it reads must be known at admission, to refuse unknown
//! names and cycles with a clear `kubectl apply` error, and at render time, so that the template
//! is handed exactly those files and nothing else. MiniJinja's own variable listing does not see
//! through `files["db-creds"]` (a subscript, not an attribute), so [`file_references`] reads the
//! template's expressions itself and accepts `files` only in those two literal forms; MiniJinja's
//! listing is then used as a cross-check that no use of `files` went unseen.

use std::collections::BTreeSet;
use std::hash::BuildHasher as _;
use std::sync::{Mutex, OnceLock};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// Instructions a template may run.
pub const TEMPLATE_FUEL: u64 = 200_000;
/// Nesting depth a template may reach.
pub const TEMPLATE_RECURSION_LIMIT: usize = 32;
/// How many template sources that compiled are remembered (hashes only, a few hundred bytes).
pub const PARSED_CACHE: usize = 32;

/// The sources that compiled: hashes under this process's random key, newest at `next - 1`.
struct Parsed {
    hashes: [u64; PARSED_CACHE],
    used: usize,
    next: usize,
}

fn parsed() -> &'static (std::hash::RandomState, Mutex<Parsed>) {
    static PARSED: OnceLock<(std::hash::RandomState, Mutex<Parsed>)> = OnceLock::new();
    PARSED.get_or_init(|| {
        (
            std::hash::RandomState::new(),
            Mutex::new(Parsed {
                hashes: [0; PARSED_CACHE],
                used: 0,
                next: 0,
            }),
        )
    })
}

/// The sandbox the admission check compiles in (compiling does not touch the environment's state,
/// so one is shared).
fn shared_sandbox() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(sandbox)
}

/// Checks that a template parses, without rendering it (used at admission).
///
/// A source that compiled before is not compiled again. The key is SipHash under a random
/// per-process key, so a collision cannot be aimed at; if one happened, a template that does not
/// parse would pass admission and the sidecar, which checks its config again at start (in its own
/// process, with its own key), would refuse it with this same message.
pub fn check_template_syntax(template: &str) -> std::result::Result<(), String> {
    let (keys, cache) = parsed();
    let hash = keys.hash_one(template);
    // A poisoned lock only means another thread panicked while holding it: the hashes are still
    // a valid (if stale) list.
    let seen = |p: &Parsed| p.hashes[..p.used].contains(&hash);
    if seen(
        &cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    ) {
        return Ok(());
    }
    shared_sandbox()
        .template_from_str(template)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "the template does not parse: {} (line {})",
                e.detail().unwrap_or("syntax error"),
                e.line().unwrap_or(0)
            )
        })?;
    let mut p = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !seen(&p) {
        let next = p.next;
        p.hashes[next] = hash;
        p.next = (next + 1) % PARSED_CACHE;
        p.used = (p.used + 1).min(PARSED_CACHE);
    }
    Ok(())
}

/// The name under which a template reads the other files of its pod.
pub const FILES_VAR: &str = "files";

/// How a template may name another file, for error messages.
const FILES_FORMS: &str = "files[\"<file>\"] or files.<file>";

/// The files a template reads through `files`, sorted and without duplicates.
///
/// Only `files["name"]`, `files['name']` and `files.name` are accepted: a computed subscript
/// (`files[x]`), a loop over `files`, passing `files` to a filter or assigning to it is refused,
/// because the set of files read must be known before the template runs. The template must parse
/// (see [`check_template_syntax`]); a parse error is returned as is.
pub fn file_references(template: &str) -> std::result::Result<BTreeSet<String>, String> {
    let refs = scan_references(template)?;
    if !refs.is_empty() || !template.contains(FILES_VAR) {
        return Ok(refs);
    }
    // Cross-check with MiniJinja's parser: if it sees `files` used and the scan found no
    // reference, some syntax the scan does not know hid it. (Only then is the template
    // compiled: a template without the word cannot name the variable.)
    let tmpl = shared_sandbox().template_from_str(template).map_err(|e| {
        format!(
            "the template does not parse: {} (line {})",
            e.detail().unwrap_or("syntax error"),
            e.line().unwrap_or(0)
        )
    })?;
    if tmpl.undeclared_variables(false).contains(FILES_VAR) && refs.is_empty() {
        return Err(format!(
            "the template uses `{FILES_VAR}` in a form Hush cannot read before rendering; name each file literally as {FILES_FORMS}"
        ));
    }
    Ok(refs)
}

/// The scan behind [`file_references`]: walks the `{{ }}` and `{% %}` blocks (skipping text,
/// `{# #}` comments and `{% raw %}` sections), reads string literals whole, and looks at every
/// identifier `files` that is not itself an attribute (`x.files`).
fn scan_references(t: &str) -> std::result::Result<BTreeSet<String>, String> {
    let b = t.as_bytes();
    let mut refs = BTreeSet::new();
    let mut i = 0;
    let line = |at: usize| t[..at.min(t.len())].matches('\n').count() + 1;
    while i + 1 < b.len() {
        if b[i] != b'{' || !matches!(b[i + 1], b'{' | b'%' | b'#') {
            i += 1;
            continue;
        }
        let open = b[i + 1];
        i += 2;
        if open == b'#' {
            i = match t[i..].find("#}") {
                Some(end) => i + end + 2,
                None => b.len(),
            };
            continue;
        }
        let close: &[u8] = if open == b'{' { b"}}" } else { b"%}" };
        // The tokens of this block, up to its closing delimiter.
        let mut prev_dot = false;
        let mut first_word: Option<&str> = None;
        while i < b.len() {
            let c = b[i];
            if b[i..].starts_with(close) {
                i += 2;
                break;
            }
            if c == b'"' || c == b'\'' {
                i = skip_string(b, i);
                prev_dot = false;
                continue;
            }
            if c.is_ascii_alphabetic() || c == b'_' {
                let s = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &t[s..i];
                first_word.get_or_insert(word);
                if word == FILES_VAR && !prev_dot {
                    match file_lookup(t, i) {
                        Some((name, end)) => {
                            refs.insert(name);
                            i = end;
                        }
                        None => {
                            return Err(format!(
                                "line {}: `{FILES_VAR}` can only be read as {FILES_FORMS}, with the file name written out",
                                line(s)
                            ));
                        }
                    }
                }
                prev_dot = false;
                continue;
            }
            if !c.is_ascii_whitespace() {
                prev_dot = c == b'.';
            }
            i += 1;
        }
        // `{% raw %}` ... `{% endraw %}`: text, whatever it looks like.
        if open == b'%' && first_word == Some("raw") {
            i = match find_endraw(t, i) {
                Some(end) => end,
                None => b.len(),
            };
        }
    }
    Ok(refs)
}

/// The end of a string literal starting at `i` (its quote), past the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    let q = b[i];
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == q => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// After `files` ending at `i`: `["name"]`, `['name']` or `.name`, as (name, end).
fn file_lookup(t: &str, i: usize) -> Option<(String, usize)> {
    let b = t.as_bytes();
    let ws = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    let j = ws(i);
    match b.get(j)? {
        b'.' => {
            let s = ws(j + 1);
            let mut e = s;
            while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'_') {
                e += 1;
            }
            (e > s && !b[s].is_ascii_digit()).then(|| (t[s..e].to_string(), e))
        }
        b'[' => {
            let s = ws(j + 1);
            let q = *b.get(s)?;
            if q != b'"' && q != b'\'' {
                return None;
            }
            let e = s + 1 + t[s + 1..].find(q as char)?;
            let name = &t[s + 1..e];
            if name.contains('\\') {
                return None;
            }
            let close = ws(e + 1);
            (b.get(close) == Some(&b']')).then(|| (name.to_string(), close + 1))
        }
        _ => None,
    }
}

/// The position after the `%}` of the `{% endraw %}` that ends a raw section starting at `i`.
fn find_endraw(t: &str, mut i: usize) -> Option<usize> {
    while let Some(at) = t[i..].find("{%") {
        let s = i + at + 2;
        let inner = t[s..].trim_start_matches(['-', '+', ' ', '\t', '\n', '\r']);
        if inner.starts_with("endraw") {
            return t[s..].find("%}").map(|e| s + e + 2);
        }
        i = s;
    }
    None
}

/// The template environment: no loader, strict undefined, fuel, no auto-escape.
pub fn sandbox() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_recursion_limit(TEMPLATE_RECURSION_LIMIT);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_source_is_still_checked_exactly() {
        let good = "x{{ value }}y";
        assert_eq!(check_template_syntax(good), Ok(()));
        // Again, from the cache.
        assert_eq!(check_template_syntax(good), Ok(()));
        // A broken one is never remembered: refused every time, with the same message.
        let bad = "{{ value ";
        let first = check_template_syntax(bad).expect_err("unterminated");
        assert!(first.starts_with("the template does not parse:"), "{first}");
        assert_eq!(check_template_syntax(bad), Err(first));
    }

    fn refs(t: &str) -> Vec<String> {
        file_references(t)
            .unwrap_or_else(|e| panic!("{t}: {e}"))
            .into_iter()
            .collect()
    }

    #[test]
    fn file_references_reads_the_literal_forms() {
        assert_eq!(
            refs(
                r#"postgres://{{ files["db-creds"].username }}:{{ files['db-creds'].password }}@{{ files.host.host }}/app"#
            ),
            ["db-creds", "host"]
        );
        assert_eq!(refs(r#"{% if files [ "a.b" ] %}x{% endif %}"#), ["a.b"]);
        // Text, comments, raw sections and string literals are not expressions.
        assert!(
            refs("files[x] {# files[y] #} {% raw %}{{ files[z] }}{% endraw %} {{ 'files[w]' }}")
                .is_empty()
        );
        // An attribute named files belongs to something else.
        assert!(refs("{{ data.files }}").is_empty());
        assert!(refs("{{ value }}").is_empty());
    }

    #[test]
    fn file_references_refuses_what_it_cannot_read_before_rendering() {
        for t in [
            "{{ files[name] }}",
            "{% for f in files %}{{ f }}{% endfor %}",
            "{{ files | length }}",
            "{% set files = 1 %}{{ files }}",
            "{{ files[\"a\" ~ \"b\"] }}",
            "{{ files }}",
        ] {
            let e = file_references(t).expect_err(t);
            assert!(e.contains("files[\"<file>\"]"), "{t}: {e}");
        }
        let e = file_references("{{ files[ ").expect_err("unterminated");
        assert!(e.contains("files"), "{e}");
    }

    #[test]
    fn the_cache_forgets_the_oldest_source_and_stays_correct() {
        let sources: Vec<String> = (0..PARSED_CACHE * 2 + 3)
            .map(|i| format!("t{i} {{{{ value }}}}"))
            .collect();
        for s in &sources {
            assert_eq!(check_template_syntax(s), Ok(()), "{s}");
        }
        for s in &sources {
            assert_eq!(check_template_syntax(s), Ok(()), "{s}");
        }
        let (_, cache) = parsed();
        let p = cache.lock().expect("not poisoned");
        assert_eq!(p.used, PARSED_CACHE);
    }
}
