#!/usr/bin/env bash
# The lint gate, run first by scripts/test.sh: formatting, clippy on every target with warnings
# as errors, and no dependency a crate declares but does not use.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "[check] cargo fmt --check" >&2
cargo fmt --all --check
echo "[check] cargo clippy -D warnings" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
if ! cargo machete --version >/dev/null 2>&1; then
  echo "[check] installing cargo-machete" >&2
  cargo install cargo-machete --locked
fi
echo "[check] cargo machete (unused dependencies)" >&2
cargo machete
