#!/usr/bin/env bash
# The whole production topology on this machine, in one command:
#
#   scripts/stack.sh start    PostgreSQL primary + streaming replica, Redis, OpenBao (Vault API)
#                             and moto (SNS/SQS) on free loopback ports; the SNS/SQS topology
#                             provisioned; `user-information` on :8081 and `products` on :8082,
#                             each its own process on its own database
#   scripts/stack.sh stop     stops all of it and deletes its data
#
# The services run with every production adapter. Tokens are HS256 from the stack's data
# directory (a real deployment verifies them against the identity provider's JWKS instead):
#   VITRINE_DATA_DIR=<stack>/data cargo run -q --release -p vitrine -- token --role admin
# Ports: VITRINE_STACK_CUSTOMERS_PORT (8081), VITRINE_STACK_PRODUCTS_PORT (8082).
# Where: VITRINE_STACK_DIR (default /tmp/vitrine-stack).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${VITRINE_STACK_DIR:-${TMPDIR:-/tmp}/vitrine-stack}
customers_port=${VITRINE_STACK_CUSTOMERS_PORT:-8081}
products_port=${VITRINE_STACK_PRODUCTS_PORT:-8082}
target=${CARGO_TARGET_DIR:-target}

log() { printf '[stack] %s\n' "$*" >&2; }

wait_ready() {
  local name=$1 url=$2 pid=$3
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited; its log: $dir/$name.log"
      tail -n 20 "$dir/$name.log" >&2
      return 1
    fi
    if curl -sf "$url/health/ready" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$name did not become ready; its log: $dir/$name.log"
  return 1
}

start() {
  if [ -f "$dir/servers/env" ]; then
    log "already running (stop it first: scripts/stack.sh stop)"
    exit 1
  fi
  mkdir -p "$dir"
  chmod 755 "$dir"
  scripts/test-servers.sh start "$dir/servers"
  # shellcheck disable=SC1091
  source "$dir/servers/env"
  cargo build --release -p vitrine
  local primary=${VITRINE_TEST_POSTGRES_URL%/*} replica=${VITRINE_TEST_POSTGRES_REPLICA_URL%/*}
  psql "$VITRINE_TEST_POSTGRES_URL" -qc 'CREATE DATABASE vitrine_customers' -c 'CREATE DATABASE vitrine_products'
  export VITRINE_DATA_DIR="$dir/data"
  export VITRINE_TRANSPORT=sqs VITRINE_MESSAGING_PREFIX=local
  export AWS_ENDPOINT_URL=$VITRINE_TEST_SQS_ENDPOINT AWS_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  export VITRINE_VAULT_ADDR=$VITRINE_TEST_VAULT_ADDR VITRINE_VAULT_TOKEN=root
  export VITRINE_FINGERPRINT_KEY
  VITRINE_FINGERPRINT_KEY=$(head -c 32 /dev/urandom | base64)
  export VITRINE_LOG_FORMAT=json
  "$target/release/vitrine" provision --prefix local >/dev/null
  VITRINE_LISTEN=127.0.0.1:$customers_port VITRINE_DATABASE_URL=$primary/vitrine_customers \
    nohup "$target/release/user-information" >"$dir/user-information.log" 2>&1 &
  echo $! >"$dir/user-information.pid"
  VITRINE_LISTEN=127.0.0.1:$products_port \
    VITRINE_PRODUCTS_DATABASE_URL=$primary/vitrine_products \
    VITRINE_PRODUCTS_REPLICA_URL=$replica/vitrine_products \
    VITRINE_REDIS_URL=$VITRINE_TEST_REDIS_URL \
    nohup "$target/release/products" >"$dir/products.log" 2>&1 &
  echo $! >"$dir/products.pid"
  wait_ready user-information "http://127.0.0.1:$customers_port" "$(cat "$dir/user-information.pid")"
  wait_ready products "http://127.0.0.1:$products_port" "$(cat "$dir/products.pid")"
  cat <<DONE
user-information: http://127.0.0.1:$customers_port/v1/customers   (docs: /docs)
products:         http://127.0.0.1:$products_port/v1/products     (docs: /docs)
token:            VITRINE_DATA_DIR=$dir/data $target/release/vitrine token --role admin
logs:             $dir/*.log
stop:             scripts/stack.sh stop
DONE
}

stop() {
  for name in products user-information; do
    if [ -f "$dir/$name.pid" ]; then
      kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
    fi
  done
  sleep 1
  if [ -d "$dir/servers" ]; then scripts/test-servers.sh stop "$dir/servers"; fi
  rm -rf "$dir"
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
