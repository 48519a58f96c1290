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
