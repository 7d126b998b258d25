#!/usr/bin/env bash
# HTTP benchmark of products (issue: GET warm and cold, POST /v1/products, POST /v1/reservations)
# against bare baselines measured in the same run, with wrk on loopback.
#
#   scripts/bench-products.sh            3 rounds of 10 s per side and scenario
#   BENCH_ROUNDS=5 BENCH_SECONDS=15 scripts/bench-products.sh
#
# It starts the throwaway servers (PostgreSQL, Redis, ...), builds and starts the bench servers
# (crates/vitrine/benches/products_http.rs: the embedded Vitrine, and a bare axum app doing the
# same Redis GET, SELECT or transaction), then alternates baseline and candidate rounds and
# prints the median ratio (min-max) of throughput and of p99 latency; then the idle footprint of
# each release binary, and the relay's drain of a 100k backlog against a bare claim-and-mark
# loop (the benchmark scripts/bench-messaging.sh also runs). Never fails on a number.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${BENCH_ROUNDS:-3}
seconds=${BENCH_SECONDS:-10}
connections=${BENCH_CONNECTIONS:-64}

if ! command -v wrk >/dev/null 2>&1; then
  echo "[bench] installing wrk" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vitrine-bench.XXXXXX")
# Its own directory: the database servers run as another user and must reach it.
servers=$(mktemp -d "${TMPDIR:-/tmp}/vitrine-bench-servers.XXXXXX")
cleanup() {
  exec 3>&- 2>/dev/null || true
  [ -n "${bench_pid:-}" ] && wait "$bench_pid" 2>/dev/null || true
  scripts/test-servers.sh stop "$servers"
  rm -rf "$work"
}
trap cleanup EXIT
scripts/test-servers.sh start "$servers"
# shellcheck disable=SC1091
source "$servers/env"

cargo build --release -p vitrine --bench products_http --bin vitrine --bin products \
  --bin user-information
release_dir="${CARGO_TARGET_DIR:-target}/release"
bench_bin=$(find "${CARGO_TARGET_DIR:-target}/release/deps" -maxdepth 1 -type f -executable \
  -name 'products_http-*' -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2)

# The bench servers run until their stdin (fd 3 here) closes.
mkfifo "$work/stdin"
BENCH_DIR="$work" "$bench_bin" <"$work/stdin" &
bench_pid=$!
exec 3>"$work/stdin"
for _ in $(seq 1 600); do
  [ -f "$work/scenarios.json" ] && break
  sleep 0.1
done
[ -f "$work/scenarios.json" ] || { echo "[bench] the bench servers did not start" >&2; exit 1; }

python3 - "$work/scenarios.json" "$rounds" "$seconds" "$connections" "$work/backlog.url" <<'PY'
import json, re, statistics, subprocess, sys, urllib.request

scenarios = json.load(open(sys.argv[1]))
rounds, seconds, connections = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
backlog_url = open(sys.argv[5]).read().strip()

def backlog():
    """The candidate's unsent outbox rows right after a round: whether its relay kept up."""
    return json.load(urllib.request.urlopen(backlog_url))["unsent"]

def unit(value, suffix, table):
    return float(value) * table[suffix]

def wrk(side, duration):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", side["script"], side["url"]],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99_ms = unit(m.group(1), m.group(2), {"us": 0.001, "ms": 1.0, "s": 1000.0})
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(m.group(1)) if m else 0
    return rps, p99_ms, errors

rows = []
for scenario in scenarios:
    # Warm both sides (connections, JIT-less caches, pool) before measuring.
    wrk(scenario["baseline"], 2)
    wrk(scenario["candidate"], 2)
    base, cand, unsent = [], [], []
    for _ in range(rounds):
        base.append(wrk(scenario["baseline"], seconds))
        cand.append(wrk(scenario["candidate"], seconds))
        unsent.append(backlog())
    tput = [c[0] / b[0] for b, c in zip(base, cand)]
    lat = [c[1] / b[1] for b, c in zip(base, cand)]
    rows.append((scenario["name"], scenario["baseline_name"],
                 statistics.median(tput), min(tput), max(tput),
                 statistics.median(lat), min(lat), max(lat),
                 statistics.median(c[0] for c in cand), statistics.median(b[0] for b in base),
                 statistics.median(c[1] for c in cand), statistics.median(b[1] for b in base),
                 sum(c[2] for c in cand), sum(b[2] for b in base), max(unsent)))

print()
print(f"wrk -t2 -c{connections} -d{seconds}s --latency, {rounds} alternating rounds per side; "
      "ratio = candidate / baseline of the same round, median (min-max)")
print()
print("| scenario | baseline | throughput ratio | p99 ratio | candidate req/s, p99 | baseline req/s, p99 | non-2xx (cand/base) | outbox backlog after a candidate round (max) |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]:.2f} ({r[3]:.2f}-{r[4]:.2f}) | {r[5]:.2f} ({r[6]:.2f}-{r[7]:.2f}) "
          f"| {r[8]:.0f}, {r[10]:.2f} ms | {r[9]:.0f}, {r[11]:.2f} ms | {r[12]}/{r[13]} | {r[14]} |")
PY

# Footprint: the resident memory of a fresh process at rest (embedded defaults, a new data
# directory, started and ready, then idle for 3 s), as `ps` reports it. Memory does not depend
# on the machine's load, so these are absolute figures.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
idle_rss() {
  local binary=$1 port dir pid rss=""
  port=$(free_port)
  dir=$(mktemp -d "$work/rss.XXXXXX")
  VITRINE_DATA_DIR="$dir" VITRINE_LISTEN="127.0.0.1:$port" VITRINE_LOG=warn \
    "$release_dir/$binary" >"$dir.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "http://127.0.0.1:$port/health/ready" 2>/dev/null; then
      sleep 3
      rss=$(ps -o rss= -p "$pid" | tr -d ' ')
      break
    fi
    sleep 0.1
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -n "$rss" ] || { echo "[bench] $binary did not become ready:" >&2; cat "$dir.log" >&2; exit 1; }
  echo $((rss / 1024))
}
echo
echo "| process at rest | RSS MB |"
echo "|---|---|"
echo "| \`vitrine\` (embedded all-in-one: both services, SQLite, in-process queue and cache) | $(idle_rss vitrine) |"
echo "| \`products\` alone (embedded defaults) | $(idle_rss products) |"
echo "| \`user-information\` alone (embedded defaults) | $(idle_rss user-information) |"

# The relay's row, in the same run: the drain of a 100,000-message backlog (the shape an
# outbox has after a transport outage) against a bare claim-and-mark loop on the same table.
# The bench servers stop first, so the drain has the machine to itself as the rounds above had.
exec 3>&-
wait "$bench_pid" 2>/dev/null || true
bench_pid=""
echo
cargo bench -p user-information --bench outbox_drain
