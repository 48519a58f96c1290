//! Reading secrets: which engine a path belongs to, and the typed responses of KV v1, KV v2 and
//! any other logical path (dynamic secrets such as `database/creds/<role>`). vaultrs' `kv2::read`
//! drops the version metadata and `database::role::creds` drops the `lease_id`, and both parse
//! values into plain `String`s; here every response body arrives in a wiped buffer and every value
//! is parsed straight into a [`crate::secret::SecretBytes`].
//!
//! Cheap refresh for KV v2: `GET <mount>/metadata/<name>` returns `current_version` without any
//! value, so an unchanged secret costs one small request and no value crosses the wire.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::SecretFields;

/// The engine behind a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Engine {
    /// KV v1.
    Kv1,
    /// KV v2 mounted at `mount` (with a trailing `/`); `name` is the secret below it.
    Kv2 { mount: String, name: String },
    /// Anything else: a logical read, possibly leased.
    Logical,
}

impl Engine {
    /// Classifies `path` from the `sys/internal/ui/mounts/<path>` answer.
    pub(crate) fn from_mount(path: &str, info: &MountInfo) -> Engine {
        let is_kv = info.kind == "kv" || info.kind == "generic";
        let v2 = info
            .options
            .as_ref()
            .and_then(|o| o.version.as_deref())
            .is_some_and(|v| v == "2");
        if !is_kv {
            return Engine::Logical;
        }
        if !v2 {
            return Engine::Kv1;
        }
        let mount = if info.path.ends_with('/') {
            info.path.clone()
        } else {
            format!("{}/", info.path)
        };
        let rest = path.strip_prefix(mount.as_str()).unwrap_or(path);
        // Accept both `secret/app` (as `bao kv get` takes it) and the API path `secret/data/app`.
        let name = rest.strip_prefix("data/").unwrap_or(rest).to_string();
        Engine::Kv2 { mount, name }
    }
}

/// `data` of `sys/internal/ui/mounts/<path>`.
#[derive(Debug, Deserialize)]
pub(crate) struct MountInfo {
    #[serde(default)]
    pub path: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub options: Option<MountOptions>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MountOptions {
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Envelope<T> {
    pub data: Option<T>,
    #[serde(default)]
    pub lease_id: String,
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub renewable: bool,
}

/// `data` of a KV v2 read.
#[derive(Deserialize)]
pub(crate) struct Kv2Data {
    pub data: Option<SecretFields>,
    pub metadata: Option<Kv2VersionMeta>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Kv2VersionMeta {
    #[serde(default)]
    pub version: u64,
}

/// `data` of `GET <mount>/metadata/<name>`.
#[derive(Debug, Deserialize)]
pub(crate) struct Kv2Metadata {
    #[serde(default)]
    pub current_version: u64,
    #[serde(default)]
    pub versions: BTreeMap<String, Kv2VersionState>,
}

/// `data` of `LIST <mount>/detailed-metadata/<dir>/` (OpenBao): each key's metadata.
#[derive(Debug, Deserialize)]
pub(crate) struct Kv2DetailedList {
    #[serde(default)]
    pub key_info: BTreeMap<String, Kv2Metadata>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Kv2VersionState {
    #[serde(default)]
    pub deletion_time: String,
    #[serde(default)]
    pub destroyed: bool,
}

impl Kv2Metadata {
    /// Whether the current version is soft-deleted or destroyed.
    pub(crate) fn current_is_gone(&self) -> bool {
        self.versions
            .get(&self.current_version.to_string())
            .is_some_and(|v| v.destroyed || !v.deletion_time.is_empty())
    }
}

/// Parses a response body without ever putting a value into an error message.
pub(crate) fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "the response is not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv2_paths_accept_both_forms() {
        let info = MountInfo {
            path: "secret/".into(),
            kind: "kv".into(),
            options: Some(MountOptions {
                version: Some("2".into()),
            }),
        };
        let want = Engine::Kv2 {
            mount: "secret/".into(),
            name: "team/app".into(),
        };
        assert_eq!(Engine::from_mount("secret/team/app", &info), want);
        assert_eq!(Engine::from_mount("secret/data/team/app", &info), want);
        let v1 = MountInfo {
            path: "kv1/".into(),
            kind: "kv".into(),
            options: None,
        };
        assert_eq!(Engine::from_mount("kv1/app", &v1), Engine::Kv1);
        let db = MountInfo {
            path: "database/".into(),
            kind: "database".into(),
            options: None,
        };
        assert_eq!(
            Engine::from_mount("database/creds/app", &db),
            Engine::Logical
        );
    }

    #[test]
    fn values_parse_into_bytes_and_errors_hide_them() {
        let body = br#"{"data":{"data":{"s":"a\"b","n":5,"b":true,"z":null,"o":{"k":[1]}},"metadata":{"version":3}},"lease_id":"","lease_duration":0,"renewable":false}"#;
        let e: Envelope<Kv2Data> = parse(body).unwrap();
        let d = e.data.unwrap();
        let f = d.data.unwrap();
        assert_eq!(f.get("s").unwrap().expose(), b"a\"b");
        assert_eq!(f.get("n").unwrap().expose(), b"5");
        assert_eq!(f.get("o").unwrap().expose(), br#"{"k":[1]}"#);
        assert_eq!(d.metadata.unwrap().version, 3);
        let err = parse::<Envelope<Kv2Data>>(br#"{"data":{"data":{"s":"canary-xyz"#)
            .err()
            .unwrap();
        assert!(!err.contains("canary"));
    }

    #[test]
    fn deleted_current_version_is_detected() {
        let m: Kv2Metadata = serde_json::from_str(
            r#"{"current_version":2,"versions":{"1":{"deletion_time":"","destroyed":false},"2":{"deletion_time":"2025-01-01T00:00:00Z","destroyed":false}}}"#,
        )
        .unwrap();
        assert!(m.current_is_gone());
    }
}
