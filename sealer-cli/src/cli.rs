//! The `hush` command line, in the style of age/rage: read standard input and write standard output
//! by default, `-o FILE` writes atomically, errors say what to do next. `main.rs` only parses the
//! arguments with [`Cli`] and calls [`run`].

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::rules;
use crate::{Error, Result, edit, fsio};
use hush_sealed_format::format::Scope;
use hush_sealed_format::keys;
use hush_sealed_format::sealed::{self, SealedConfigMap};
use hush_sealed_format::secret::Secret;

/// Seal Kubernetes Secrets with age for Git, bound to their namespace and name.
#[derive(Parser, Debug)]
#[command(name = "hush", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The scope of a sealed Secret.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScopeArg {
    /// Bound to its namespace and name (default).
    Strict,
    /// Bound to its namespace only; the ConfigMap may be renamed.
    Namespace,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Strict => Scope::Strict,
            ScopeArg::Namespace => Scope::Namespace,
        }
    }
}

/// Identity files.
#[derive(Args, Debug)]
pub struct IdentityArgs {
    /// Identity file (from `hush keygen` or `age-keygen`); repeatable.
    #[arg(
        short = 'i',
        long = "identity",
        value_name = "FILE",
        env = "HUSH_IDENTITY_FILE"
    )]
    pub identity: Vec<PathBuf>,
}

/// Recipients.
#[derive(Args, Debug)]
pub struct RecipientArgs {
    /// Recipient (age1...); repeatable. Without -r/-R, .hush.yaml creation rules decide.
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipient: Vec<String>,
    /// File with one recipient per line; repeatable.
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_file: Vec<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate an age identity; with --namespace, print its hush-identity Secret.
    Keygen {
        /// Write to FILE (mode 0600; refuses to overwrite).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Print the `hush-identity` Secret for this namespace instead of a bare identity.
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
    },
    /// Seal a Secret manifest (YAML or JSON) into a ConfigMap manifest.
    Seal {
        /// Secret manifest; standard input if absent or `-`.
        input: Option<PathBuf>,
        /// Write the sealed manifest to FILE atomically.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        recipients: RecipientArgs,
        /// What the values are bound to.
        #[arg(long, value_enum, default_value = "strict")]
        scope: ScopeArg,
        /// Namespace, when the Secret has none.
        #[arg(short, long, value_name = "NS")]
        namespace: Option<String>,
        /// Write output over the 1 MiB ConfigMap limit (benchmarks, files kept outside Kubernetes).
        #[arg(long, hide = true)]
        allow_oversize: bool,
    },
    /// Decrypt a sealed ConfigMap back into the original Secret.
    Unseal {
        /// Sealed manifest; standard input if absent or `-`.
        input: Option<PathBuf>,
        /// Write the Secret to FILE atomically (mode 0600).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        identities: IdentityArgs,
    },
    /// Edit a sealed file with $EDITOR, re-sealing only the changed values.
    Edit {
        /// Sealed manifest to edit in place.
        file: PathBuf,
        #[command(flatten)]
        identities: IdentityArgs,
    },
    /// Add or remove recipients of a sealed file without changing its values or scope.
    Rekey {
        /// Sealed manifest; standard input if absent or `-`.
        input: Option<PathBuf>,
        /// Write to FILE atomically.
        #[arg(short, long, value_name = "FILE", conflicts_with = "in_place")]
        output: Option<PathBuf>,
        /// Rewrite INPUT in place.
        #[arg(short = 'w', long, requires = "input")]
        in_place: bool,
        /// Recipient to add; repeatable.
        #[arg(short = 'a', long = "add", value_name = "RECIPIENT")]
        add: Vec<String>,
        /// Recipient to remove; repeatable.
        #[arg(short = 'd', long = "remove", value_name = "RECIPIENT")]
        remove: Vec<String>,
        #[command(flatten)]
        identities: IdentityArgs,
    },
    /// Re-seal sealed files (or every sealed file under a directory) for the current recipients,
    /// in place, keeping each file's scope.
    Rotate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        recipients: RecipientArgs,
        #[command(flatten)]
        identities: IdentityArgs,
    },
    /// Check sealed files: structure and binding; with -i also the MAC and every value.
    Verify {
        /// Sealed manifests; standard input if none.
        inputs: Vec<PathBuf>,
        #[command(flatten)]
        identities: IdentityArgs,
    },
    /// Translate vault-k8s (Vault Agent Injector) annotations into Hush annotations
    ///
    /// Prints the hush.dev/ annotations for every pod template of the manifest; refuses, naming
    /// each one with its fix, what it cannot translate, and then prints nothing (exit 1).
    Migrate {
        /// Manifest (YAML or JSON, several documents allowed); standard input if absent or `-`.
        input: Option<PathBuf>,
    },
    /// Check the cluster: pods that missed injection or run an old sidecar, webhook, sealed refs.
    ///
    /// Read-only (get and list); prints each finding with its fix and exits 1 on any.
    Doctor(crate::doctor::DoctorArgs),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn load_identities(args: &IdentityArgs) -> Result<Vec<hush_sealed_format::Identity>> {
    if args.identity.is_empty() {
        return Err(Error::Usage {
            message: "no identity: pass -i FILE or set HUSH_IDENTITY_FILE".into(),
        });
    }
    let mut out = Vec::new();
    for p in &args.identity {
        out.extend(keys::read_identity_file(p)?);
    }
    Ok(out)
}

/// Recipients from -r/-R, or else from the creation rules for `rule_path`.
fn resolve_recipients(args: &RecipientArgs, rule_path: Option<&Path>) -> Result<Vec<String>> {
    let mut out = args.recipient.clone();
    for f in &args.recipients_file {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
        out.extend(keys::parse_recipients_file(
            &text,
            &f.display().to_string(),
        )?);
    }
    if !out.is_empty() {
        return Ok(out);
    }
    match rule_path {
        Some(p) => rules::recipients_for(p),
        None => Err(Error::NoRecipients {
            hint: "pass -r age1... or -R FILE; .hush.yaml creation rules need a file path (give \
                   the input as a file, or -o)"
                .into(),
        }),
    }
}

fn display(path: Option<&Path>) -> String {
    match path {
        Some(p) if p != Path::new("-") => p.display().to_string(),
        _ => "standard input".into(),
    }
}

fn stdin_path(p: &Option<PathBuf>) -> Option<&Path> {
    p.as_deref().filter(|p| *p != Path::new("-"))
}

/// Runs a parsed command line. Returns the process exit code.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Keygen { output, namespace } => {
            let generated = keys::generate();
            let content = match &namespace {
                Some(ns) => {
                    hush_sealed_format::format::validate_namespace(ns)
                        .map_err(|message| Error::Usage { message })?;
                    keys::identity_manifest(ns, &generated)
                }
                None => generated.identity_file.clone(),
            };
            if let Some(out) = &output {
                if out.exists() {
                    return Err(Error::Usage {
                        message: format!(
                            "{} exists; hush keygen never overwrites an identity. Choose another path or remove it first",
                            out.display()
                        ),
                    });
                }
                fsio::write_output(Some(out), content.as_bytes(), fsio::PRIVATE)?;
                eprintln!("Public key: {}", generated.recipient);
            } else {
                fsio::write_output(None, content.as_bytes(), fsio::PRIVATE)?;
            }
            Ok(0)
        }
        Command::Seal {
            input,
            output,
            recipients,
            scope,
            namespace,
            allow_oversize,
        } => {
            let input_path = stdin_path(&input);
            let text = fsio::read_input(input_path)?;
            let secret = Secret::parse(&text, &display(input_path))?;
            drop(text);
            let rule_path = output.as_deref().or(input_path);
            let recipients = resolve_recipients(&recipients, rule_path)?;
            let ns = sealed::resolve_namespace(&secret, namespace.as_deref())?;
            // Rendered once: `to_yaml_checked` is the same 1 MiB check `sealed::seal` makes.
            let sealed = sealed::seal_without_size_limit(&secret, &ns, scope.into(), &recipients)?;
            let text = if allow_oversize {
                sealed.to_yaml()
            } else {
                sealed.to_yaml_checked()?
            };
            fsio::write_output(output.as_deref(), text.as_bytes(), fsio::PUBLIC)?;
            Ok(0)
        }
        Command::Unseal {
            input,
            output,
            identities,
        } => {
            let ids = load_identities(&identities)?;
            let input_path = stdin_path(&input);
            let text = fsio::read_input(input_path)?;
            let cm = SealedConfigMap::parse(&text, &display(input_path))?;
            let secret = sealed::unseal(&cm, &ids)?;
            fsio::write_output(
                output.as_deref(),
                secret.to_yaml(false).as_bytes(),
                fsio::PRIVATE,
            )?;
            Ok(0)
        }
        Command::Edit { file, identities } => {
            let ids = load_identities(&identities)?;
            let editor = std::env::var("VISUAL")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .or_else(|| {
                    std::env::var("EDITOR")
                        .ok()
                        .filter(|s| !s.trim().is_empty())
                })
                .unwrap_or_else(|| "vi".into());
            match edit::edit(&file, &ids, &editor)? {
                edit::Outcome::Unchanged => {
                    eprintln!("No changes; {} left as it was.", file.display())
                }
                edit::Outcome::Resealed {
                    changed,
                    added,
                    removed,
                } => eprintln!(
                    "Re-sealed {}: {changed} changed, {added} added, {removed} removed.",
                    file.display()
                ),
            }
            Ok(0)
        }
        Command::Rekey {
            input,
            output,
            in_place,
            add,
            remove,
            identities,
        } => {
            if add.is_empty() && remove.is_empty() {
                return Err(Error::Usage {
                    message: "nothing to do: pass -a RECIPIENT to add or -d RECIPIENT to remove"
                        .into(),
                });
            }
            let ids = load_identities(&identities)?;
            let input_path = stdin_path(&input);
            let (cm, meta) = read_checked(input_path)?;
            let mut recipients = meta.recipients.clone();
            for a in &add {
                recipients.push(keys::parse_recipient(a)?.to_string());
            }
            for d in &remove {
                let d = keys::parse_recipient(d)?.to_string();
                if !recipients.contains(&d) {
                    return Err(Error::Usage {
                        message: format!(
                            "{d} is not a recipient of {}; `hush verify` lists them",
                            cm.object()
                        ),
                    });
                }
                recipients.retain(|r| *r != d);
            }
            if recipients.is_empty() {
                return Err(Error::NoRecipients {
                    hint: "that would remove every recipient; add one with -a".into(),
                });
            }
            let out = sealed::reseal(&cm, &ids, &recipients)?;
            let target = if in_place {
                input_path
            } else {
                output.as_deref()
            };
            fsio::write_output(target, out.to_yaml_checked()?.as_bytes(), fsio::PUBLIC)?;
            Ok(0)
        }
        Command::Rotate {
            paths,
            recipients,
            identities,
        } => {
            let ids = load_identities(&identities)?;
            let mut files = Vec::new();
            for p in &paths {
                collect_sealed(p, &mut files)?;
            }
            if files.is_empty() {
                return Err(Error::Usage {
                    message: "no sealed files found (files labelled hush.dev/sealed)".into(),
                });
            }
            let mut failed = 0;
            for f in &files {
                let result = (|| -> Result<String> {
                    let text = fsio::read_input(Some(f))?;
                    let cm = SealedConfigMap::parse(&text, &f.display().to_string())?;
                    let r = resolve_recipients(&recipients, Some(f))?;
                    let out = sealed::reseal(&cm, &ids, &r)?;
                    fsio::write_atomic(f, out.to_yaml_checked()?.as_bytes(), fsio::PUBLIC)?;
                    Ok(cm.object())
                })();
                match result {
                    Ok(obj) => println!("rotated {}: {obj}", f.display()),
                    Err(e) => {
                        failed += 1;
                        eprintln!("FAIL {}: {e}", f.display());
                    }
                }
            }
            Ok(if failed == 0 { 0 } else { 1 })
        }
        Command::Verify { inputs, identities } => {
            let ids = if identities.identity.is_empty() {
                None
            } else {
                Some(load_identities(&identities)?)
            };
            let inputs: Vec<Option<PathBuf>> = if inputs.is_empty() {
                vec![None]
            } else {
                inputs.into_iter().map(Some).collect()
            };
            let mut failed = 0;
            for input in &inputs {
                let path = stdin_path(input);
                match verify_one(path, ids.as_deref()) {
                    Ok(line) => println!("OK {}: {line}", display(path)),
                    Err(e) => {
                        failed += 1;
                        eprintln!("FAIL {}: {e}", display(path));
                    }
                }
            }
            Ok(if failed == 0 { 0 } else { 1 })
        }
        Command::Migrate { input } => {
            let path = stdin_path(&input);
            let text = fsio::read_input(path)?;
            let report = crate::migrate::migrate_manifest(&text, &display(path))?;
            for note in &report.notes {
                eprintln!("note: {note}");
            }
            for problem in &report.problems {
                eprintln!("cannot translate: {problem}");
            }
            if !report.problems.is_empty() {
                eprintln!(
                    "{} problem(s); nothing printed. docs/migrating.md maps every vault-k8s annotation.",
                    report.problems.len()
                );
                return Ok(1);
            }
            if report.objects == 0 {
                eprintln!(
                    "no vault.hashicorp.com/ annotations found in {}",
                    display(path)
                );
            }
            fsio::write_output(None, report.output.as_bytes(), fsio::PUBLIC)?;
            Ok(0)
        }
        Command::Doctor(args) => crate::doctor::run(args),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut cmd, "hush", &mut out);
            out.flush().map_err(|e| Error::io("standard output", e))?;
            Ok(0)
        }
    }
}

/// Reads a sealed ConfigMap (a file or stdin) and checks its structure: its `_hush` metadata.
fn read_checked(
    path: Option<&Path>,
) -> Result<(SealedConfigMap, hush_sealed_format::format::Meta)> {
    let text = fsio::read_input(path)?;
    let cm = SealedConfigMap::parse(&text, &display(path))?;
    let meta = sealed::check_structure(
        &cm.data,
        &cm.namespace,
        &cm.name,
        hush_sealed_format::format::META_KEY,
    )?;
    Ok((cm, meta))
}

fn verify_one(path: Option<&Path>, ids: Option<&[hush_sealed_format::Identity]>) -> Result<String> {
    let (cm, meta) = read_checked(path)?;
    sealed::check_ciphertext_headers(&cm.data, &cm.object())?;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let mut line = format!(
        "{} (v{}, {} scope, {}, {}: {})",
        cm.object(),
        meta.version,
        meta.scope,
        plural(meta.keys.len(), "key"),
        plural(meta.recipients.len(), "recipient"),
        meta.recipients.join(" ")
    );
    if let Some(ids) = ids {
        let opened = sealed::open_set(
            &cm.data,
            &cm.namespace,
            &cm.name,
            hush_sealed_format::format::META_KEY,
            ids,
        )?;
        for key in &opened.meta.keys {
            drop(opened.value(key, ids)?);
        }
        line.push_str("; MAC and every value decrypted and verified");
    }
    Ok(line)
}

/// Adds `path` (a file) or every sealed manifest under it (a directory, hidden entries skipped).
pub(crate) fn collect_sealed(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        let ft = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if ft.is_dir() {
            collect_sealed(&p, out)?;
        } else if ft.is_file()
            && [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e))
            && std::fs::read_to_string(&p)
                .map(|t| t.contains(hush_sealed_format::format::LABEL))
                .unwrap_or(false)
        {
            out.push(p);
        }
    }
    Ok(())
}
