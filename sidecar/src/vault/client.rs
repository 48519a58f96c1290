//! The HTTP client to Vault/OpenBao, built from the operator's settings only. vaultrs reads CA
//! certificates from files and takes `VAULT_*` defaults from the environment; we build its
//! `VaultClient` ourselves instead, with a reqwest/rustls client that trusts exactly the operator's
//! inline CA PEM (or the system roots when none is given) and verifies TLS unless the operator set
//! `tlsSkipVerify`. Nothing here reads the environment, so a stray `VAULT_SKIP_VERIFY` cannot turn
//! verification off (vaultrs once inverted that variable, PR 160).
//!
//! vaultrs keeps the token as two plain `String`s (settings and middleware); [`Vault::set_token`]
//! wipes the old copies before it stores a new one, and `Drop` wipes the last. Requests that vaultrs
//! lacks or that it would parse into plain `String`s go through [`Vault::request`], which hands back
//! the raw body in a [`Zeroizing`] buffer for the caller to parse into wiped values.

use std::time::Duration;

use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use hush_config::ErrorClass;
use hush_config::VaultSettings;

/// Store name used in errors and logs.
pub(crate) const STORE: &str = "vault";

/// Per-request cap: a hung server must not hold a refresh forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body accepted (a KV secret is at most about 1 MiB in Vault).
const MAX_BODY: usize = 4 << 20;

/// A failed call, before it becomes a crate [`Error`]: the status matters for the 403 re-login.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The server answered with this status; the message is Vault's own error text.
    Status(u16, String),
    /// Connecting, TLS, a timeout or reading the body failed.
    Transport(String),
    /// Anything else (building a request, an oversized body).
    Other(String),
}

impl CallError {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            CallError::Status(s, _) => Some(*s),
            _ => None,
        }
    }

    /// Turns the failure into a crate error that names the operation (never a value).
    pub(crate) fn into_error(self, op: &str) -> Error {
        match self {
            CallError::Status(code, msg) => {
                let class = ErrorClass::from_http_status(code);
                let hint = match code {
                    403 => "; check the Vault policy of the role",
                    404 => "; the secret does not exist (or was deleted)",
                    _ => "",
                };
                Error::store(
                    STORE,
                    class,
                    format!(
                        "{op}: HTTP {code}{}{hint}",
                        if msg.is_empty() {
                            String::new()
                        } else {
                            format!(" ({msg})")
                        }
                    ),
                )
            }
            CallError::Transport(m) => {
                Error::store(STORE, ErrorClass::Transient, format!("{op}: {m}"))
            }
            CallError::Other(m) => Error::store(STORE, ErrorClass::Permanent, format!("{op}: {m}")),
        }
    }

    fn from_rustify(e: rustify::errors::ClientError) -> CallError {
        use rustify::errors::ClientError as R;
        match e {
            R::ServerResponseError { code, content } => CallError::Status(
                code,
                content.as_deref().map(vault_message).unwrap_or_default(),
            ),
            R::RequestError { source, .. } => CallError::Transport(chain(source.as_ref())),
            R::ResponseError { source } => CallError::Transport(chain(source.as_ref())),
            other => CallError::Other(other.to_string()),
        }
    }

    pub(crate) fn from_vaultrs(e: vaultrs::error::ClientError) -> CallError {
        use vaultrs::error::ClientError as V;
        match e {
            V::APIError { code, errors } => CallError::Status(code, short_errors(&errors)),
            V::RestClientError { source } => CallError::from_rustify(source),
            V::ResponseEmptyError | V::ResponseDataEmptyError => {
                CallError::Other("the response was empty".into())
            }
            other => CallError::Other(other.to_string()),
        }
    }
}

/// The error text of a Vault error body (`{"errors":[...]}`), shortened.
fn vault_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errs {
        #[serde(default)]
        errors: Vec<String>,
    }
    serde_json::from_str::<Errs>(body)
        .map(|e| short_errors(&e.errors))
        .unwrap_or_default()
}

fn short_errors(errors: &[String]) -> String {
    let mut s = errors.join("; ").replace(['\n', '\t'], " ");
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// A request vaultrs does not offer in the shape we need.
struct RawRequest {
    path: String,
    method: RequestMethod,
    query: Option<String>,
    body: Option<Vec<u8>>,
}

impl Endpoint for RawRequest {
    type Response = ();
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        self.method.clone()
    }

    fn query(&self) -> std::result::Result<Option<String>, rustify::errors::ClientError> {
        Ok(self.query.clone())
    }

    fn body(&self) -> std::result::Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(self.body.clone())
    }
}

/// The Vault client with the current token.
pub(crate) struct Vault {
    inner: VaultClient,
}

impl Vault {
    /// Builds the client from the operator's settings.
    pub(crate) fn new(s: &VaultSettings, namespace: Option<&str>) -> Result<Vault> {
        let bad = |reason: String| Error::Config {
            field: "operator.vault".into(),
            reason,
        };
        let mut http = reqwest::ClientBuilder::new()
            .tls_backend_rustls()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(2);
        if let Some(pem) = &s.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|_| bad("caPem holds no usable PEM certificate".into()))?;
            if certs.is_empty() {
                return Err(bad("caPem holds no certificate".into()));
            }
            http = http.tls_certs_only(certs);
        }
        if s.tls_skip_verify {
            tracing::warn!(
                "TLS verification to Vault is disabled by the operator setting tlsSkipVerify"
            );
            http = http.tls_danger_accept_invalid_certs(true);
        }
        let http = http
            .build()
            .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
        // The settings builder is given every value explicitly, so none of its env defaults apply.
        let settings = VaultClientSettingsBuilder::default()
            .address(&s.addr)
            .ca_certs(Vec::new())
            .identity(None)
            .token(String::new())
            .verify(!s.tls_skip_verify)
            .build()
            .map_err(|e| bad(format!("invalid Vault address: {e}")))?;
        let middle = vaultrs::api::EndpointMiddleware {
            token: String::new(),
            version: "v1".into(),
            wrap: None,
            // vaultrs adds it as `X-Vault-Namespace` to every request, ours too (`request`).
            namespace: namespace.map(str::to_string),
        };
        let http = rustify::clients::reqwest::Client::new(settings.address.as_str(), http);
        Ok(Vault {
            inner: VaultClient {
                http,
                middle,
                settings,
            },
        })
    }

    /// The vaultrs client, for the calls vaultrs offers.
    pub(crate) fn client(&self) -> &VaultClient {
        &self.inner
    }

    /// Replaces the token, wiping the old copies first.
    pub(crate) fn set_token(&mut self, token: &str) {
        self.clear_token();
        self.inner.set_token(token);
    }

    /// Forgets the token.
    pub(crate) fn clear_token(&mut self) {
        self.inner.settings.token.zeroize();
        self.inner.middle.token.zeroize();
    }

    /// Whether a token is set.
    pub(crate) fn has_token(&self) -> bool {
        !self.inner.middle.token.is_empty()
    }

    /// Sends one request and returns the raw body, wiped on drop. `path` is relative to `/v1/`
    /// and is percent-encoded segment by segment.
    pub(crate) async fn request(
        &self,
        method: RequestMethod,
        path: &str,
        query: Option<String>,
        body: Option<Vec<u8>>,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, CallError> {
        let req = RawRequest {
            path: path.to_string(),
            method,
            query,
            body,
        };
        let res = req
            .with_middleware(self.inner.middle())
            .exec(self.inner.http())
            .await
            .map_err(CallError::from_rustify)?;
        let body = Zeroizing::new(res.response.into_body());
        if body.len() > MAX_BODY {
            return Err(CallError::Other(format!(
                "the response is larger than {MAX_BODY} bytes"
            )));
        }
        Ok(body)
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        self.clear_token();
    }
}
