//! The template sandbox, shared by the check at admission and the rendering in the pod: no loader
//! (so no `include`, `import` or `extends` of files), no environment or network access (MiniJinja
//! has none), strict undefined, a fuel limit on instructions, a recursion limit and no
//! auto-escaping. It lives with the parser so that `hush.dev/template-<file>` is refused at
//! `kubectl apply` by exactly the engine settings that would later render it.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// Instructions a template may run.
pub const TEMPLATE_FUEL: u64 = 200_000;
/// Nesting depth a template may reach.
pub const TEMPLATE_RECURSION_LIMIT: usize = 32;

/// Checks that a template parses, without rendering it (used at admission).
pub fn check_template_syntax(template: &str) -> std::result::Result<(), String> {
    sandbox()
        .template_from_str(template)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "the template does not parse: {} (line {})",
                e.detail().unwrap_or("syntax error"),
                e.line().unwrap_or(0)
            )
        })
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
