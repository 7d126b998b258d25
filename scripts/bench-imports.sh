#!/usr/bin/env bash
# Bulk-work benchmarks: starts the throwaway servers, then prints
#  - product import throughput (NDJSON upload to `completed`, on SQLite and PostgreSQL) as a
#    ratio to a bare batched INSERT of the same rows in the same run
#    (crates/vitrine/benches/imports.rs; BENCH_IMPORT_LINES, default 20000);
#  - webhook dispatch throughput to a local receiver (SQLite and PostgreSQL stores) as a ratio
#    to bare POSTs of the same bodies at the same concurrency
#    (crates/vitrine-webhooks/benches/dispatch.rs; BENCH_WEBHOOK_MESSAGES, default 1000).
# BENCH_ROUNDS (default 3) alternating rounds each. Prints tables; never fails on a number.
set -euo pipefail
cd "$(dirname "$0")/.."
servers=$(mktemp -d "${TMPDIR:-/tmp}/vitrine-bench-servers.XXXXXX")
trap 'scripts/test-servers.sh stop "$servers"' EXIT
scripts/test-servers.sh start "$servers"
# shellcheck disable=SC1091
source "$servers/env"
cargo bench -p vitrine --bench imports
cargo bench -p vitrine-webhooks --bench dispatch
