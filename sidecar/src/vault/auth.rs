//! Logging in to Vault and keeping the token alive. Three methods, and none takes a credential from
//! the config:
//! - kubernetes: the projected service-account token is re-read from disk on every login (the
//!   kubelet rotates it), as kube-rs' `TokenFile` does;
//! - approle: `role_id` and `secret_id` from the credentials Secret mounted into the sidecar only;
//! - token: a static token from the same Secret.
//!
//! Renewal follows Vault's LifetimeWatcher: renew at about 2/3 of the TTL with jitter; once a
//! renewal returns less than asked (the token reached its max TTL) or fails, log in again before it
//! expires. Credentials are read into wiped buffers; vaultrs' `AuthInfo.client_token` is wiped as
//! soon as the client holds it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zeroize::{Zeroize, Zeroizing};

use super::client::{CallError, STORE, Vault};
use crate::error::{Error, Result};
use hush_config::VaultAuth;
use hush_config::{ErrorClass, renew_after};
use hush_contract::credential_keys;

/// Never renew more often than this.
const MIN_RENEW: Duration = Duration::from_secs(5);

/// How to log in.
#[derive(Clone, Debug)]
pub(crate) struct Login {
    pub method: VaultAuth,
    pub role: Option<String>,
    /// Mount of the auth method used (kubernetes or approle).
    pub mount: String,
    pub token_file: PathBuf,
    pub credentials_dir: PathBuf,
}

/// What we know about the current token.
#[derive(Clone, Debug)]
pub(crate) struct TokenState {
    /// Lifetime at login or last renewal; zero for a token that never expires.
    pub ttl: Duration,
    /// When to act next.
    pub next_action: Option<Instant>,
    /// The next action is a fresh login rather than a renewal.
    pub relogin_next: bool,
}

impl TokenState {
    fn new(ttl_secs: u64, renewable: bool, can_relogin: bool) -> TokenState {
        let now = Instant::now();
        if ttl_secs == 0 {
            return TokenState {
                ttl: Duration::ZERO,
                next_action: None,
                relogin_next: false,
            };
        }
        let ttl = Duration::from_secs(ttl_secs);
        TokenState {
            ttl,
            next_action: if renewable || can_relogin {
                Some(now + renew_after(ttl, MIN_RENEW))
            } else {
                None
            },
            relogin_next: !renewable,
        }
    }
}

fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::store(
            STORE,
            ErrorClass::Permanent,
            format!("cannot read the {what} at {}: {}", path.display(), e.kind()),
        )
    })?;
    let mut bytes = Zeroizing::new(bytes);
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(Error::store(
            STORE,
            ErrorClass::Permanent,
            format!("the {what} at {} is empty", path.display()),
        ));
    }
    Ok(bytes)
}

fn as_str<'a>(b: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(b).map_err(|_| {
        Error::store(
            STORE,
            ErrorClass::Permanent,
            format!("the {what} is not UTF-8"),
        )
    })
}

impl Login {
    /// Whether a fresh login is possible (a static token cannot be replaced).
    pub(crate) fn can_relogin(&self) -> bool {
        self.method != VaultAuth::Token
    }

    /// Logs in and stores the token in the client.
    pub(crate) async fn login(&self, vault: &mut Vault) -> Result<TokenState> {
        vault.clear_token();
        let res = match self.method {
            VaultAuth::Kubernetes => {
                let jwt = read_secret_file(&self.token_file, "service-account token")?;
                let jwt = as_str(&jwt, "service-account token")?;
                let role = self.role.as_deref().unwrap_or_default();
                vaultrs::auth::kubernetes::login(vault.client(), &self.mount, role, jwt).await
            }
            VaultAuth::AppRole => {
                let rid = read_secret_file(
                    &self.credentials_dir.join(credential_keys::ROLE_ID),
                    "AppRole role_id",
                )?;
                let sid = read_secret_file(
                    &self.credentials_dir.join(credential_keys::SECRET_ID),
                    "AppRole secret_id",
                )?;
                vaultrs::auth::approle::login(
                    vault.client(),
                    &self.mount,
                    as_str(&rid, "AppRole role_id")?,
                    as_str(&sid, "AppRole secret_id")?,
                )
                .await
            }
            VaultAuth::Token => {
                let tok = read_secret_file(
                    &self.credentials_dir.join(credential_keys::TOKEN),
                    "Vault token",
                )?;
                vault.set_token(as_str(&tok, "Vault token")?);
                let mut info = vaultrs::token::lookup_self(vault.client())
                    .await
                    .map_err(|e| CallError::from_vaultrs(e).into_error("token lookup"))?;
                info.id.zeroize();
                tracing::info!(method = "token", ttl_secs = info.ttl, "vault token loaded");
                return Ok(TokenState::new(
                    info.ttl,
                    info.renewable.unwrap_or(false),
                    false,
                ));
            }
        };
        let mut info = res.map_err(|e| {
            let e = CallError::from_vaultrs(e);
            let op = match self.method {
                VaultAuth::Kubernetes => "kubernetes login",
                _ => "approle login",
            };
            // A refused login is permanent: the role binding or the credentials are wrong.
            match e.status() {
                Some(400) | Some(401) | Some(403) => {
                    let mut err = e.into_error(op);
                    if let Error::Store { class, .. } = &mut err {
                        *class = ErrorClass::Permanent;
                    }
                    err
                }
                _ => e.into_error(op),
            }
        })?;
        vault.set_token(&info.client_token);
        info.client_token.zeroize();
        tracing::info!(
            method = ?self.method,
            ttl_secs = info.lease_duration,
            renewable = info.renewable,
            "vault login succeeded"
        );
        Ok(TokenState::new(
            info.lease_duration,
            info.renewable,
            self.can_relogin(),
        ))
    }

    /// Renews the token or logs in again, whichever is due. Returns the new state and whether a
    /// fresh login replaced the token (its leases then die with the old token).
    pub(crate) async fn maintain(
        &self,
        vault: &mut Vault,
        state: &TokenState,
    ) -> Result<(TokenState, bool)> {
        if state.relogin_next && self.can_relogin() {
            return Ok((self.login(vault).await?, true));
        }
        let inc = format!("{}s", state.ttl.as_secs().max(1));
        match vaultrs::token::renew_self(vault.client(), Some(&inc)).await {
            Ok(mut info) => {
                info.client_token.zeroize();
                let mut next =
                    TokenState::new(info.lease_duration, info.renewable, self.can_relogin());
                // Less than asked: the token reached its max TTL. Keep the asked-for TTL as the
                // increment, and log in again before this shortened lifetime ends.
                if info.lease_duration + 1 < state.ttl.as_secs() {
                    next.ttl = state.ttl;
                    next.relogin_next = self.can_relogin();
                }
                tracing::debug!(ttl_secs = info.lease_duration, "vault token renewed");
                Ok((next, false))
            }
            Err(e) => {
                let e = CallError::from_vaultrs(e);
                let forbidden = matches!(e.status(), Some(400) | Some(403));
                if forbidden && self.can_relogin() {
                    tracing::info!("vault token could not be renewed; logging in again");
                    return Ok((self.login(vault).await?, true));
                }
                Err(e.into_error("token renewal"))
            }
        }
    }
}
