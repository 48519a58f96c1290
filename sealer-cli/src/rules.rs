//! `.hush.yaml` creation rules, as SOPS users know them: the first rule whose `path_regex` or
//! `path_glob` matches the sealed file's path (relative to the directory holding `.hush.yaml`,
//! with `/` separators) gives its `age` recipients. The file is found by walking up from the
//! sealed file's directory. Unknown fields are refused so a typo cannot silently drop a recipient.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};
use hush_sealed_format::keys::parse_recipient;

/// File name searched for.
pub(crate) const RULES_FILE: &str = ".hush.yaml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    creation_rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AgeField {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    path_regex: Option<String>,
    #[serde(default)]
    path_glob: Option<String>,
    age: AgeField,
}

/// One validated rule.
#[derive(Debug)]
struct Rule {
    pattern: Option<regex::Regex>,
    recipients: Vec<String>,
}

/// Validated creation rules from one `.hush.yaml`.
#[derive(Debug)]
pub struct Rules {
    /// The `.hush.yaml` file.
    pub path: PathBuf,
    rules: Vec<Rule>,
}

/// Turns a glob into an anchored regex: `**/` matches any directories, `**` anything, `*` anything
/// but `/`, `?` one character but `/`.
fn glob_to_regex(glob: &str) -> String {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                    re.push_str("(?:.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

impl Rules {
    /// Parses `.hush.yaml` text.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let err = |reason: String| Error::Rules {
            path: shown.clone(),
            reason,
        };
        let raw: RawRules = hush_sealed_format::yaml::parse(text, &shown)?;
        let mut rules = Vec::new();
        for (i, r) in raw.creation_rules.into_iter().enumerate() {
            let pattern = match (r.path_regex, r.path_glob) {
                (Some(_), Some(_)) => {
                    return Err(err(format!(
                        "rule {}: give path_regex or path_glob, not both",
                        i + 1
                    )));
                }
                (Some(re), None) => Some(re),
                (None, Some(g)) => Some(glob_to_regex(&g)),
                (None, None) => None,
            };
            let pattern = pattern
                .map(|p| {
                    regex::RegexBuilder::new(&p)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| err(format!("rule {}: bad pattern: {e}", i + 1)))
                })
                .transpose()?;
            let recipients: Vec<String> = match r.age {
                AgeField::One(s) => s
                    .split([',', '\n', ' '])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                AgeField::Many(v) => v.into_iter().map(|s| s.trim().to_owned()).collect(),
            };
            if recipients.is_empty() {
                return Err(err(format!("rule {} has no age recipients", i + 1)));
            }
            for r in &recipients {
                parse_recipient(r).map_err(|e| err(format!("rule {}: {e}", i + 1)))?;
            }
            rules.push(Rule {
                pattern,
                recipients,
            });
        }
        Ok(Rules {
            path: path.to_owned(),
            rules,
        })
    }

    /// Finds `.hush.yaml` in `start` or its ancestors and parses it.
    pub fn find(start: &Path) -> Result<Option<Self>> {
        let start = std::path::absolute(start).map_err(|e| Error::io(start, e))?;
        for dir in start.ancestors() {
            let candidate = dir.join(RULES_FILE);
            match std::fs::read_to_string(&candidate) {
                Ok(text) => return Self::parse(&text, &candidate).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {}
                Err(e) => return Err(Error::io(&candidate, e)),
            }
        }
        Ok(None)
    }

    /// The recipients of the first rule matching `file` (any path; made relative to the rules'
    /// directory), or `None`.
    pub fn recipients_for(&self, file: &Path) -> Result<Option<&[String]>> {
        let abs = std::path::absolute(file).map_err(|e| Error::io(file, e))?;
        let base = self.path.parent().unwrap_or(Path::new("/"));
        let rel = abs.strip_prefix(base).unwrap_or(&abs);
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        Ok(self
            .rules
            .iter()
            .find(|r| r.pattern.as_ref().is_none_or(|p| p.is_match(&rel)))
            .map(|r| r.recipients.as_slice()))
    }
}

/// Looks up recipients for `file` from the nearest `.hush.yaml` at or above its directory.
pub(crate) fn recipients_for(file: &Path) -> Result<Vec<String>> {
    let dir = std::path::absolute(file)
        .map_err(|e| Error::io(file, e))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let rules = Rules::find(&dir)?.ok_or_else(|| Error::NoRecipients {
        hint: format!(
            "pass -r age1... or -R FILE, or create a {RULES_FILE} with creation_rules in {} or a \
             parent directory",
            dir.display()
        ),
    })?;
    match rules.recipients_for(file)? {
        Some(r) => Ok(r.to_vec()),
        None => Err(Error::NoRecipients {
            hint: format!(
                "no creation rule in {} matches {}; add one, or pass -r/-R",
                rules.path.display(),
                file.display()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R1: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const R2: &str = "age10mfpnzh5g3v773rfm8xqd0fdv6ns60z0722m25pegnr70hwc4ajq56sf8s";

    #[test]
    fn first_matching_rule_wins_and_globs_work() {
        let text = format!(
            "creation_rules:\n  - path_glob: 'prod/**/*.yaml'\n    age: {R1}\n  - path_regex: \
             '^staging/'\n    age: [{R1}, {R2}]\n  - age: '{R2}'\n"
        );
        let rules = Rules::parse(&text, Path::new("/repo/.hush.yaml")).unwrap();
        let r = |p: &str| {
            rules
                .recipients_for(Path::new(p))
                .unwrap()
                .unwrap()
                .to_vec()
        };
        assert_eq!(r("/repo/prod/a/b/db.yaml"), vec![R1]);
        assert_eq!(r("/repo/prod/db.yaml"), vec![R1]);
        assert_eq!(r("/repo/staging/x.yaml"), vec![R1, R2]);
        assert_eq!(r("/repo/other.yaml"), vec![R2]);
    }

    #[test]
    fn typos_and_bad_recipients_are_refused() {
        assert!(
            Rules::parse(
                "creation_rules:\n  - path_regx: x\n    age: a\n",
                Path::new("/x")
            )
            .is_err()
        );
        assert!(Rules::parse("creation_rules:\n  - age: notakey\n", Path::new("/x")).is_err());
        assert!(Rules::parse("creation_rules:\n  - age: ''\n", Path::new("/x")).is_err());
    }

    #[test]
    fn glob_semantics() {
        let re = regex::Regex::new(&glob_to_regex("a/*.yaml")).unwrap();
        assert!(re.is_match("a/x.yaml"));
        assert!(!re.is_match("a/b/x.yaml"));
        let re = regex::Regex::new(&glob_to_regex("**/*.yaml")).unwrap();
        assert!(re.is_match("x.yaml") && re.is_match("a/b/x.yaml"));
    }
}
