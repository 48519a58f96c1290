//! Rendering of one secret file from its value: `raw` (byte for byte), `json`, `env`, `yaml`, `pem`
//! (a PKI certificate's bundle), or a sandboxed MiniJinja template. Output goes into a [`Zeroizing`] buffer that grows by copying
//! into a fresh zeroizing allocation (the old one is wiped), so no reallocation leaves a stray
//! copy, and it is capped: a template cannot fill the tmpfs or the sidecar's memory.
//!
//! The template sandbox: no loader (so no `include`, `import` or `extends` of files), no
//! environment or network access (MiniJinja has none), strict undefined (a typo is an error, not an
//! empty string), a fuel limit on instructions, a recursion limit and no auto-escaping. Values
//! handed to the engine become MiniJinja strings, which are not zeroized; they are dropped when
//! rendering ends. Errors name the file, the format and field names, never a value (template
//! runtime errors report only their kind and line, because a message could quote a value).
//!
//! A template may read other files of the pod as `files["name"]`: the caller hands in exactly the
//! files the template names ([`Input`]), taken from the same refresh as the file's own value, so
//! one render never mixes two refreshes.

use std::io::{self, Write};

use hush_config::template::sandbox;
use minijinja::Value;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::{SecretBytes, SecretFields, SecretValue};
use hush_config::{FileSpec, Format, limits};

/// Another file of the pod as a template reads it through `files["name"]`.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    /// A file with its own secret: its fields (a mapping) or its single value (a string).
    Secret(&'a SecretValue),
    /// A template-only file: its rendered text.
    Text(&'a [u8]),
}

/// The other files a template reads, by name.
pub type Inputs<'a> = std::collections::BTreeMap<&'a str, Input<'a>>;

/// Renders `spec`'s file from `value`, capped at the crate-wide maximum file size.
pub fn render(spec: &FileSpec, value: &SecretValue) -> Result<Zeroizing<Vec<u8>>> {
    render_capped(spec, value, limits::MAX_FILE_BYTES)
}

/// Renders `spec`'s file from `value`; output over `max_bytes` is an error.
pub fn render_capped(
    spec: &FileSpec,
    value: &SecretValue,
    max_bytes: u64,
) -> Result<Zeroizing<Vec<u8>>> {
    render_with(spec, Some(value), &Inputs::new(), max_bytes)
}

/// Renders `spec`'s file from its own `value` (`None` for a template-only file) and the other
/// files its template reads; output over `max_bytes` is an error.
pub fn render_with(
    spec: &FileSpec,
    value: Option<&SecretValue>,
    files: &Inputs<'_>,
    max_bytes: u64,
) -> Result<Zeroizing<Vec<u8>>> {
    let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let mut out = CappedBuf::new(max);
    let fail = |reason: String| Error::Render {
        file: spec.name.clone(),
        reason,
    };
    let res = match (spec.format, value) {
        (Format::Template, _) => match &spec.template {
            Some(t) => template(t, value, files, &mut out),
            None => Err("the template format needs a template".to_string()),
        },
        (_, None) => Err("a file without a secret needs a template".to_string()),
        (Format::Raw, Some(value)) => raw(value, &mut out),
        (Format::Json, Some(value)) => with_fields(spec.format, value, |f| json(f, &mut out)),
        (Format::Env, Some(value)) => with_fields(spec.format, value, |f| env(f, &mut out)),
        (Format::Yaml, Some(value)) => with_fields(spec.format, value, |f| yaml(f, &mut out)),
        (Format::Pem, Some(value)) => with_fields(spec.format, value, |f| pem(f, &mut out)),
    };
    match res {
        Ok(()) => Ok(out.buf),
        Err(_) if out.overflow => Err(fail(format!(
            "the rendered file is larger than the limit of {max_bytes} bytes"
        ))),
        Err(reason) => Err(fail(reason)),
    }
}

type Res = std::result::Result<(), String>;

fn wr(out: &mut CappedBuf, bytes: &[u8]) -> Res {
    out.write_all(bytes).map_err(|_| "output limit".to_string())
}

fn raw(value: &SecretValue, out: &mut CappedBuf) -> Res {
    match value {
        SecretValue::Single(b) => wr(out, b.expose()),
        SecretValue::Fields(f) => {
            let mut it = f.iter();
            match (it.next(), it.next()) {
                (Some((_, v)), None) => wr(out, v.expose()),
                (None, _) => Err("the secret has no fields".into()),
                _ => Err(format!(
                    "the raw format writes one value, but the secret has {} fields ({}); select one with #field, or use json, env, yaml or a template",
                    f.len(),
                    field_list(f)
                )),
            }
        }
    }
}

fn with_fields(format: Format, value: &SecretValue, f: impl FnOnce(&SecretFields) -> Res) -> Res {
    match value {
        SecretValue::Fields(fields) => f(fields),
        SecretValue::Single(_) => Err(format!(
            "the {} format writes all fields of a secret, but this source gives a single value; use raw or a template",
            format.as_str()
        )),
    }
}

fn utf8<'a>(name: &str, v: &'a SecretBytes) -> std::result::Result<&'a str, String> {
    v.expose_str()
        .ok_or_else(|| format!("field \"{name}\" is not UTF-8 text; use raw with #field"))
}

fn json(fields: &SecretFields, out: &mut CappedBuf) -> Res {
    wr(out, b"{")?;
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            wr(out, b",")?;
        }
        let s = utf8(k, v)?;
        serde_json::to_writer(&mut *out, k).map_err(|_| "output limit".to_string())?;
        wr(out, b":")?;
        serde_json::to_writer(&mut *out, s).map_err(|_| "output limit".to_string())?;
    }
    wr(out, b"}\n")
}

/// `KEY='value'` lines, quoted for POSIX shells: inside single quotes nothing is special, and a
/// `'` is written as `'\''`. Keys must be valid variable names.
fn env(fields: &SecretFields, out: &mut CappedBuf) -> Res {
    for (k, v) in fields.iter() {
        let valid = k.len() <= 256
            && k.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "field \"{}\" is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*); use json, yaml or a template",
                hush_contract::names::short(k)
            ));
        }
        if v.expose().contains(&0) {
            return Err(format!(
                "field \"{k}\" contains a NUL byte, which env files cannot hold"
            ));
        }
        wr(out, k.as_bytes())?;
        wr(out, b"='")?;
        for chunk in v.expose().split_inclusive(|b| *b == b'\'') {
            if let Some(body) = chunk.strip_suffix(b"'") {
                wr(out, body)?;
                wr(out, b"'\\''")?;
            } else {
                wr(out, chunk)?;
            }
        }
        wr(out, b"'\n")?;
    }
    Ok(())
}

/// A certificate bundle: the certificate, its chain, then the private key (the order HAProxy and
/// nginx read), each block ending in a newline.
fn pem(fields: &SecretFields, out: &mut CappedBuf) -> Res {
    for name in ["certificate", "ca_chain", "private_key"] {
        let v = fields.get(name).ok_or_else(|| {
            format!(
                "the pem format needs a PKI certificate, but the secret has no field \"{name}\" (it has: {})",
                field_list(fields)
            )
        })?;
        if v.is_empty() {
            continue;
        }
        wr(out, v.expose())?;
        if !v.expose().ends_with(b"\n") {
            wr(out, b"\n")?;
        }
    }
    Ok(())
}

/// A YAML mapping of double-quoted scalars. JSON string escapes are a subset of YAML's
/// double-quoted escapes, so each key and value is written as a JSON string.
fn yaml(fields: &SecretFields, out: &mut CappedBuf) -> Res {
    if fields.is_empty() {
        return wr(out, b"{}\n");
    }
    for (k, v) in fields.iter() {
        let s = utf8(k, v)?;
        serde_json::to_writer(&mut *out, k).map_err(|_| "output limit".to_string())?;
        wr(out, b": ")?;
        serde_json::to_writer(&mut *out, s).map_err(|_| "output limit".to_string())?;
        wr(out, b"\n")?;
    }
    Ok(())
}

fn to_value(b: &SecretBytes) -> Value {
    match b.expose_str() {
        Some(s) => Value::from(s),
        None => Value::from_bytes(b.expose().to_vec()),
    }
}

/// The fields of a secret as a MiniJinja mapping.
fn fields_value(f: &SecretFields) -> Value {
    let data: std::collections::BTreeMap<String, Value> = f
        .iter()
        .map(|(k, v)| (k.to_string(), to_value(v)))
        .collect();
    Value::from(data)
}

/// Renders a template with `data` (all fields), `value` (the single value, if there is one) and
/// `files` (the other files it reads; see [`Input`]).
fn template(
    src: &str,
    value: Option<&SecretValue>,
    files: &Inputs<'_>,
    out: &mut CappedBuf,
) -> Res {
    let env = sandbox();
    let tmpl = env
        .template_from_str(src)
        .map_err(|e| format!("the template does not parse: {}", e.kind()))?;
    let mut ctx: std::collections::BTreeMap<&str, Value> = std::collections::BTreeMap::new();
    match value {
        None => {}
        Some(SecretValue::Single(b)) => {
            ctx.insert("value", to_value(b));
        }
        Some(SecretValue::Fields(f)) => {
            if f.len() == 1
                && let Some((_, v)) = f.iter().next()
            {
                ctx.insert("value", to_value(v));
            }
            ctx.insert("data", fields_value(f));
        }
    }
    if !files.is_empty() {
        let others: std::collections::BTreeMap<&str, Value> = files
            .iter()
            .map(|(name, input)| {
                let v = match input {
                    Input::Secret(SecretValue::Single(b)) => to_value(b),
                    Input::Secret(SecretValue::Fields(f)) => fields_value(f),
                    Input::Text(t) => match std::str::from_utf8(t) {
                        Ok(s) => Value::from(s),
                        Err(_) => Value::from_bytes(t.to_vec()),
                    },
                };
                (*name, v)
            })
            .collect();
        ctx.insert(hush_config::template::FILES_VAR, Value::from(others));
    }
    tmpl.render_captured_to(Value::from(ctx), &mut *out)
        .map(|_| ())
        .map_err(|e| match e.line() {
            Some(line) => format!("the template failed at line {line}: {}", e.kind()),
            None => format!("the template failed: {}", e.kind()),
        })
}

fn field_list(f: &SecretFields) -> String {
    let names: Vec<&str> = f.names().take(10).collect();
    let mut s = names.join(", ");
    if f.len() > 10 {
        s.push_str(", ...");
    }
    s
}

/// A capped output buffer that never leaves an unwiped copy: growing allocates a new zeroizing
/// buffer, copies, and drops (wipes) the old one.
struct CappedBuf {
    buf: Zeroizing<Vec<u8>>,
    max: usize,
    overflow: bool,
}

impl CappedBuf {
    fn new(max: usize) -> Self {
        CappedBuf {
            buf: Zeroizing::new(Vec::with_capacity(256.min(max))),
            max,
            overflow: false,
        }
    }
}

impl Write for CappedBuf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let need = self.buf.len().saturating_add(data.len());
        if need > self.max {
            self.overflow = true;
            return Err(io::Error::other("output limit reached"));
        }
        if need > self.buf.capacity() {
            let cap = need
                .max(self.buf.capacity().saturating_mul(2))
                .min(self.max)
                .max(need);
            let mut grown = Zeroizing::new(Vec::with_capacity(cap));
            grown.extend_from_slice(&self.buf);
            self.buf = grown;
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
