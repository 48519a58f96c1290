//! `sys/leases/renew` and `sys/leases/revoke`, which vaultrs 0.8 lacks (docs/dependencies.md,
//! "Vault / OpenBao: vaultrs 0.8 and its gaps"). Both are typed requests on the shared client; this
//! is the only place that knows their shape. A lease id names a path and a random suffix, never a
//! value, but it is still kept out of logs above debug level.

use std::time::Duration;

use rustify::enums::RequestMethod;
use serde::{Deserialize, Serialize};

use super::client::{CallError, Vault};

#[derive(Serialize)]
struct RenewBody<'a> {
    lease_id: &'a str,
    increment: u64,
}

#[derive(Serialize)]
struct RevokeBody<'a> {
    lease_id: &'a str,
}

/// The answer to a renewal.
#[derive(Debug, Deserialize)]
pub(crate) struct Renewed {
    /// Seconds the lease now has left. Less than asked means it reached its `max_ttl`.
    #[serde(default)]
    pub lease_duration: u64,
    /// Whether it may be renewed again.
    #[serde(default)]
    pub renewable: bool,
}

/// Renews `lease_id`, asking for `increment` more.
pub(crate) async fn renew(
    vault: &Vault,
    lease_id: &str,
    increment: Duration,
) -> Result<Renewed, CallError> {
    let body = serde_json::to_vec(&RenewBody {
        lease_id,
        increment: increment.as_secs().max(1),
    })
    .map_err(|e| CallError::Other(e.to_string()))?;
    let resp = vault
        .request(RequestMethod::PUT, "sys/leases/renew", None, Some(body))
        .await?;
    super::kv::parse(&resp).map_err(CallError::Other)
}

/// Revokes `lease_id` at once.
pub(crate) async fn revoke(vault: &Vault, lease_id: &str) -> Result<(), CallError> {
    let body = serde_json::to_vec(&RevokeBody { lease_id })
        .map_err(|e| CallError::Other(e.to_string()))?;
    vault
        .request(RequestMethod::PUT, "sys/leases/revoke", None, Some(body))
        .await
        .map(|_| ())
}
