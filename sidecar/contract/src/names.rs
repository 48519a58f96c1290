//! Small, pure validators for the names that reach the file system or the Kubernetes API: file names
//! inside the secrets volume, DNS-1123 names, ConfigMap keys. They exist in one place so that the
//! annotation parser, the `HUSH_CONFIG` re-validation, the atomic writer, the injector's config and
//! the sealed format all apply the very same rules. Each returns a human-readable reason that never
//! repeats a secret value; callers with their own wording use `.is_ok()`.

/// Longest file name allowed in the secrets volume. Annotation keys limit the name part to 63
/// characters (`secret-` leaves 56), so this only matters for configs built in code.
pub const MAX_FILE_NAME_LEN: usize = 63;

/// Checks a file name for the secrets volume.
///
/// Rules: only `[A-Za-z0-9._-]`, starts and ends with a letter or digit, at most
/// [`MAX_FILE_NAME_LEN`] bytes. This excludes `.`, `..`, every `..`-prefixed name (the kubelet's
/// AtomicWriter reserves those for `..data` and the timestamped directories), `/`, NUL and control
/// characters, so a name can never leave the volume root.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the file name is empty".into());
    }
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(format!(
            "the file name is {} characters long; at most {MAX_FILE_NAME_LEN} are allowed",
            name.len()
        ));
    }
    // Name the traversal itself rather than the '/' that comes with it.
    if name.split('/').any(|part| part == "..") || name.starts_with("..") {
        return Err(
            "the file name contains \"..\", which could reach outside the secrets volume (or the kubelet's ..data names); use a plain name such as \"db-password\"".into(),
        );
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the file name contains {}; only letters, digits, '.', '_' and '-' are allowed (no directories)",
            describe_char(c)
        ));
    }
    let bytes = name.as_bytes();
    if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return Err("the file name must start and end with a letter or digit".into());
    }
    Ok(())
}

/// Longest environment variable name `hush.dev/env` accepts.
pub const MAX_ENV_NAME_LEN: usize = 128;

/// Checks an environment variable name for `hush.dev/env` (and again in the launcher).
///
/// Rules: POSIX portable names, `[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_ENV_NAME_LEN`] bytes. Such
/// a name has no `=` and no NUL, so it always survives `execve`, and every shell can read it.
pub fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the environment variable name is empty".into());
    }
    if name.len() > MAX_ENV_NAME_LEN {
        return Err(format!(
            "the environment variable name is {} characters long; at most {MAX_ENV_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "the environment variable name \"{}\" contains {}; only letters, digits and '_' are allowed (POSIX portable names)",
            short(name),
            describe_char(c)
        ));
    }
    if name.as_bytes()[0].is_ascii_digit() {
        return Err(format!(
            "the environment variable name \"{}\" starts with a digit; start it with a letter or '_'",
            short(name)
        ));
    }
    Ok(())
}

/// Checks a DNS-1123 label (container names, namespaces): lowercase letters, digits and `-`,
/// starting and ending alphanumeric, at most 63 characters.
pub fn check_dns1123_label(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!(
            "\"{}\" must be 1 to 63 characters long",
            short(name)
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "\"{}\" may contain only lowercase letters, digits and '-'",
            short(name)
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "\"{}\" must start and end with a letter or digit",
            short(name)
        ));
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain (Secret and ConfigMap names): dot-separated labels, at most 253
/// characters.
pub fn check_dns1123_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!(
            "\"{}\" must be 1 to 253 characters long",
            short(name)
        ));
    }
    for label in name.split('.') {
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!(
                "\"{}\" is not a valid name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
                short(name)
            ));
        }
    }
    Ok(())
}

/// Checks a ConfigMap data key as Kubernetes does: `[-._a-zA-Z0-9]+`, at most 253 characters, not
/// `.` or `..` and not starting with `..`.
pub fn check_configmap_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 253 {
        return Err("the ConfigMap key must be 1 to 253 characters long".into());
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(format!(
            "the ConfigMap key \"{}\" may contain only letters, digits, '-', '.' and '_'",
            short(key)
        ));
    }
    if key == "." || key.starts_with("..") {
        return Err(format!(
            "the ConfigMap key \"{}\" must not be '.' or start with '..'",
            short(key)
        ));
    }
    Ok(())
}

/// Describes a character for an error message without echoing control characters verbatim.
pub fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("the character U+{:04X}", c as u32)
    } else {
        format!("'{c}'")
    }
}

/// Shortens a user-supplied string for an error message: at most 64 characters, control
/// characters replaced, so messages stay readable and bounded.
pub fn short(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        for ok in ["db", "db.env", "a", "A-1_b.c", "config.yaml"] {
            assert_eq!(check_file_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "..data",
            "../x",
            "/abs",
            "a/../../b",
            ".hidden",
            "x.",
            "a b",
            "a\nb",
            "a\0b",
            "-a",
            "a-",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_file_name(&"a".repeat(64)).is_err());
        assert!(check_file_name(&"a".repeat(63)).is_ok());
        // Traversal is named as such, not as the '/' that carries it.
        for traversal in ["../x", "a/../../b", "..", "..data"] {
            let e = check_file_name(traversal).unwrap_err();
            assert!(e.contains("\"..\""), "{traversal:?}: {e}");
        }
    }

    #[test]
    fn dns_names() {
        assert!(check_dns1123_label("app-1").is_ok());
        assert!(check_dns1123_label("App").is_err());
        assert!(check_dns1123_label("-a").is_err());
        assert!(check_dns1123_label(&"a".repeat(64)).is_err());
        assert!(check_dns1123_subdomain("my.secret-1").is_ok());
        assert!(check_dns1123_subdomain("my..secret").is_err());
        assert!(check_dns1123_subdomain("my_secret").is_err());
    }

    #[test]
    fn configmap_keys() {
        assert!(check_configmap_key("password").is_ok());
        assert!(check_configmap_key(".env").is_ok());
        assert!(check_configmap_key("..data").is_err());
        assert!(check_configmap_key("a/b").is_err());
        assert!(check_configmap_key(".").is_err());
    }
}
