#!/usr/bin/env bash
# Messaging benchmarks: starts the throwaway servers, then prints
#  - commit-to-handled p50/p99 of the embedded and PostgreSQL paths, as ratios to a bare
#    INSERT+NOTIFY baseline from the same run;
#  - the rate at which the relay drains a 100k-message backlog (no transport, SNS on the
#    emulator, embedded), as ratios to a bare claim-and-mark loop on the same table.
set -euo pipefail
cd "$(dirname "$0")/.."
servers=$(mktemp -d "${TMPDIR:-/tmp}/vitrine-bench-servers.XXXXXX")
trap 'scripts/test-servers.sh stop "$servers"' EXIT
scripts/test-servers.sh start "$servers"
# shellcheck disable=SC1091
source "$servers/env"
cargo bench -p user-information --bench messaging_latency
cargo bench -p user-information --bench outbox_drain
