#!/usr/bin/env bash
# Runs every test Stompbox has: formatting and lints, the Rust unit and integration tests
# (codec, broker, end-to-end through real sockets), and the JavaScript suites when present.
# Installs what the suites need when it is missing. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: '$1' is required: $2" >&2
    exit 1
  fi
}

need cargo "install Rust from https://rustup.rs"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (workspace: codec, broker, end-to-end)"
cargo test --workspace --locked

for suite in tests/stompjs tests/browser; do
  if [ -f "$suite/package.json" ]; then
    need node "install Node.js 20 or newer"
    need npm "install npm"
    step "npm test in $suite"
    (cd "$suite" && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm test)
  fi
done

step "all tests passed"
