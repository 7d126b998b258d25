#!/usr/bin/env bash
# The whole test suite: the lint gate (scripts/check.sh), then throwaway servers on loopback
# ports, every test of the workspace against them (nothing is skipped), then the servers stop,
# pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/check.sh

servers=$(mktemp -d "${TMPDIR:-/tmp}/vitrine-test-servers.XXXXXX")
cleanup() { scripts/test-servers.sh stop "$servers"; }
trap cleanup EXIT

scripts/test-servers.sh start "$servers"
# shellcheck disable=SC1091
source "$servers/env"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "[test] installing cargo-nextest" >&2
  cargo install cargo-nextest --locked
fi

# Doc tests first: nextest does not run them, and its summary should be the last word.
cargo test --workspace --doc
cargo nextest run --workspace --no-fail-fast "$@"
