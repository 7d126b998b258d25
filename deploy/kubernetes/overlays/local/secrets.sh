#!/usr/bin/env bash
# Writes the local cluster's credentials under secrets/ (next to this script, ignored by git):
# random passwords and keys for the in-cluster PostgreSQL, OpenBao, Metabase and the token
# signing key. Files that exist are kept, so a rerun changes nothing; delete secrets/ (and the
# cluster's volumes) to start over. The kustomization turns them into the Secrets the base
# references.
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
umask 077

# Random letters and digits (safe in URLs and env files).
random() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c "${1:-32}"; }
# base64 of 32 random bytes (the fingerprint and token keys).
key() { head -c 32 /dev/urandom | base64; }

if [ ! -f "$dir/values.env" ]; then
  {
    echo "POSTGRES_PASSWORD=$(random)"
    echo "REPLICATION_PASSWORD=$(random)"
    echo "ANALYTICS_SOURCE_PASSWORD=$(random)"
    echo "ANALYTICS_METABASE_PASSWORD=$(random)"
    echo "VAULT_TOKEN=$(random)"
    echo "MOTO_SECRET=$(random)"
    echo "FINGERPRINT_KEY=$(key)"
    echo "METABASE_ENCRYPTION_KEY=$(random 48)"
    echo "METABASE_ADMIN_PASSWORD=$(random)"
  } >"$dir/values.env"
fi
[ -f "$dir/jwt-hs256.key" ] || key >"$dir/jwt-hs256.key"

# Everything below is derived from values.env, so it is rewritten each time.
# shellcheck disable=SC1091
. "$dir/values.env"
db="postgres://postgres:$POSTGRES_PASSWORD@postgres:5432"
replica="postgres://postgres:$POSTGRES_PASSWORD@postgres-replica:5432"
aws="AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=$MOTO_SECRET"

cat >"$dir/postgres.env" <<ENV
POSTGRES_PASSWORD=$POSTGRES_PASSWORD
REPLICATION_PASSWORD=$REPLICATION_PASSWORD
ENV
cat >"$dir/user-information.env" <<ENV
VITRINE_DATABASE_URL=$db/vitrine_customers
VITRINE_VAULT_TOKEN=$VAULT_TOKEN
VITRINE_FINGERPRINT_KEY=$FINGERPRINT_KEY
$aws
ENV
cat >"$dir/products.env" <<ENV
VITRINE_PRODUCTS_DATABASE_URL=$db/vitrine_products
VITRINE_PRODUCTS_REPLICA_URL=$replica/vitrine_products
VITRINE_REDIS_URL=redis://redis:6379
VITRINE_VAULT_TOKEN=$VAULT_TOKEN
VITRINE_FINGERPRINT_KEY=$FINGERPRINT_KEY
$aws
ENV
cat >"$dir/analytics.env" <<ENV
VITRINE_DATABASE_URL=$db/vitrine_customers
VITRINE_PRODUCTS_DATABASE_URL=$db/vitrine_products
VITRINE_PRODUCTS_REPLICA_URL=$replica/vitrine_products
VITRINE_ANALYTICS_SOURCE_PASSWORD=$ANALYTICS_SOURCE_PASSWORD
VITRINE_ANALYTICS_DATABASE_URL=$db/vitrine_analytics
ENV
cat >"$dir/analytics-owner.env" <<ENV
VITRINE_ANALYTICS_DATABASE_URL=$db/vitrine_analytics
VITRINE_ANALYTICS_SOURCE_PASSWORD=$ANALYTICS_SOURCE_PASSWORD
VITRINE_ANALYTICS_METABASE_PASSWORD=$ANALYTICS_METABASE_PASSWORD
ENV
cat >"$dir/metabase.env" <<ENV
MB_DB_HOST=postgres
MB_DB_PORT=5432
MB_DB_DBNAME=metabase
MB_DB_USER=postgres
MB_DB_PASS=$POSTGRES_PASSWORD
MB_ENCRYPTION_SECRET_KEY=$METABASE_ENCRYPTION_KEY
ENV
cat >"$dir/metabase-admin.env" <<ENV
METABASE_ADMIN_EMAIL=admin@vitrine.local
METABASE_ADMIN_PASSWORD=$METABASE_ADMIN_PASSWORD
VITRINE_ANALYTICS_DATABASE_URL=$db/vitrine_analytics
VITRINE_ANALYTICS_METABASE_PASSWORD=$ANALYTICS_METABASE_PASSWORD
ENV
echo "local cluster credentials in $dir"
