# Vault/OpenBao policy for the `orders` app in namespace `shop` (examples/deployment.yaml and
# examples/job-init-only.yaml). One policy per app: it may read its own secrets and nothing else.
#
#   bao policy write shop-orders deploy/vault/shop-orders.policy.hcl
#
# (Use `vault` instead of `bao` with HashiCorp Vault; the API is the same.)

# The app's KV v2 secrets. `hush.dev/secret-<file>: vault:secret/data/shop/orders/<name>#<field>`
# (or the `bao kv get` form `vault:secret/shop/orders/<name>`).
path "secret/data/shop/orders/*" {
  capabilities = ["read"]
}

# The sidecar's cheap change check reads only `current_version` from the metadata endpoint
# before it re-reads a secret, so an unchanged secret costs one small request per refresh.
path "secret/metadata/shop/orders/*" {
  capabilities = ["read"]
}

# Dynamic database credentials for the migration Job (hush.dev/mode: init-only).
path "database/creds/shop-orders-migrate" {
  capabilities = ["read"]
}

# Renewing the leases of those credentials is covered by Vault's `default` policy
# (sys/leases/renew). Revoking them one by one on shutdown needs this; without it the sidecar
# still revokes its token on SIGTERM, which revokes every lease the token created.
path "sys/leases/revoke" {
  capabilities = ["update"]
}
