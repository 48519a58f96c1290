//! Certificates from a PKI secrets engine: `POST <mount>/issue/<role>` and `POST <mount>/revoke`.
//! These are the only writes a tenant's annotation can cause, so this module builds both requests
//! itself from the typed, allowlisted [`PkiIssue`] (never from free text): the path is always
//! `<mount>/issue/<role>`, the body holds the allowlisted parameters plus `format: pem`, and a
//! revocation names only a serial number the sidecar was issued.
//!
//! The response arrives in a wiped buffer (`Vault::request`) and every field is parsed straight into
//! a [`SecretBytes`], so the private key exists only in zeroizing memory and, once written, in the
//! tmpfs. A certificate has no lease to renew (unless the role sets `generate_lease`); it is
//! issued anew at about 2/3 of its lifetime, which the provider schedules from `expiration`.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::client::{CallError, Vault};
use crate::secret::{SecretBytes, SecretFields};
use hush_config::PkiIssue;
use rustify::enums::RequestMethod;
use zeroize::Zeroizing;

/// `data` of `<mount>/issue/<role>` with `format: pem`.
#[derive(Deserialize)]
pub(crate) struct Issued {
    certificate: SecretBytes,
    private_key: SecretBytes,
    #[serde(default)]
    issuing_ca: Option<SecretBytes>,
    #[serde(default)]
    ca_chain: Vec<SecretBytes>,
    /// Colon-separated hex, as OpenBao prints it (public: it is in the certificate).
    pub serial_number: String,
    /// `notAfter` in Unix seconds.
    pub expiration: u64,
    #[serde(default)]
    private_key_type: String,
}

impl Issued {
    /// The certificate's fields as files and templates see them (`source::PKI_FIELDS`).
    pub(crate) fn into_fields(self) -> SecretFields {
        let mut f = SecretFields::new();
        let chain = join_pem(&self.ca_chain);
        f.insert("certificate", self.certificate);
        f.insert("private_key", self.private_key);
        if let Some(ca) = self.issuing_ca {
            f.insert("issuing_ca", ca);
        }
        f.insert("ca_chain", chain);
        f.insert(
            "serial_number",
            SecretBytes::from_slice(self.serial_number.as_bytes()),
        );
        f.insert(
            "expiration",
            SecretBytes::from_string(self.expiration.to_string()),
        );
        f.insert(
            "private_key_type",
            SecretBytes::from_slice(self.private_key_type.as_bytes()),
        );
        f
    }
}

/// The chain's PEM blocks, one after the other, each ending in a newline.
fn join_pem(blocks: &[SecretBytes]) -> SecretBytes {
    let len: usize = blocks.iter().map(|b| b.len() + 1).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    for b in blocks {
        let pem = b.expose();
        out.extend_from_slice(pem);
        if !pem.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    SecretBytes::new(out)
}

/// The request path of an issue: `<mount>/issue/<role>`, both already validated.
pub(crate) fn issue_path(mount: &str, role: &str) -> String {
    format!("{mount}/issue/{role}")
}

/// The JSON body of an issue: the allowlisted parameters and `format: pem`.
pub(crate) fn issue_body(issue: &PkiIssue) -> Result<Vec<u8>, CallError> {
    let mut m = Map::new();
    for (k, v) in issue.pairs() {
        let v = match k {
            "exclude_cn_from_sans" => Value::Bool(v == "true"),
            _ => Value::String(v),
        };
        m.insert(k.to_string(), v);
    }
    m.insert("format".into(), Value::String("pem".into()));
    serde_json::to_vec(&m).map_err(|e| CallError::Other(e.to_string()))
}

/// Revokes the certificate `serial` of `mount`.
pub(crate) async fn revoke(vault: &Vault, mount: &str, serial: &str) -> Result<(), CallError> {
    let body = serde_json::to_vec(&serde_json::json!({ "serial_number": serial }))
        .map_err(|e| CallError::Other(e.to_string()))?;
    vault
        .request(
            RequestMethod::POST,
            &format!("{mount}/revoke"),
            None,
            Some(body),
        )
        .await
        .map(|_| ())
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::kv::{Envelope, parse};

    #[test]
    fn body_holds_only_the_allowlisted_parameters_and_pem() {
        let r = hush_config::SourceRef::parse(
            "vault:pki/issue/web?common_name=a.example&ttl=30s&exclude_cn_from_sans=true",
        )
        .unwrap();
        let hush_config::SourceRef::Pki { issue, .. } = r else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&issue_body(&issue).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"common_name":"a.example","ttl":"30s","exclude_cn_from_sans":true,"format":"pem"})
        );
    }

    #[test]
    fn response_becomes_fields_with_a_joined_chain() {
        let body = br#"{"lease_id":"","data":{"certificate":"C","private_key":"K","issuing_ca":"I","ca_chain":["I","R\n"],"serial_number":"01:02","expiration":1700000000,"private_key_type":"rsa"}}"#;
        let env: Envelope<Issued> = parse(body).unwrap();
        let f = env.data.unwrap().into_fields();
        assert_eq!(f.get("ca_chain").unwrap().expose(), b"I\nR\n");
        assert_eq!(f.get("private_key").unwrap().expose(), b"K");
        assert_eq!(f.get("expiration").unwrap().expose(), b"1700000000");
        let names: Vec<&str> = f.names().collect();
        let mut want = hush_config::PKI_FIELDS.to_vec();
        want.sort_unstable();
        assert_eq!(names, want);
    }
}
