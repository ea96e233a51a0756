#!/usr/bin/env bash
# Runs every test Stompbox has: formatting and lints; the Rust unit, property and end-to-end
# tests (codec, broker, the binary, the chat example, a cluster of three nodes on a real
# redis-server); the stomp.js suite in Node (plain WebSocket and sockjs-client); third-party
# clients (stomp.py over TCP and WebSocket, webstomp-client) on default settings; bounded
# coverage-guided fuzzing of the codec and of sessions; the browser test in headless Chromium.
# Installs what they need when it is missing (npm packages with `npm ci`; pinned PyPI packages
# into a virtual environment; cargo-fuzz; Debian's chromium and redis-server through apt-get
# when running as root). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }
die() { echo "error: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required: $2"
}

# Installs Debian packages when missing: as root directly, otherwise stop and say what to do.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})"
  fi
  step "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

npm_ready() {
  # npm ci when node_modules is missing or older than the lockfile.
  local dir=$1
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

need cargo "install Rust from https://rustup.rs"
need node "install Node.js 20 or newer (Debian: apt-get install nodejs npm)"
need npm "install npm"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The cluster tests run real redis-server processes.
apt_install redis-server
step "cargo test (workspace: codec, broker, end-to-end, binary, examples, a 3-node cluster)"
cargo test --workspace --locked
# The JavaScript suites drive these builds.
cargo build --locked --bin stompbox --example chat

step "stomp.js suite (Node, @stomp/stompjs against the stompbox binary)"
npm_ready tests/stompjs
(cd tests/stompjs && STOMPBOX_BIN="$root/target/debug/stompbox" npm test)

step "third-party clients: stomp.py (TCP and WebSocket) and webstomp-client (ws), default config"
# Clients the project did not write, pinned (tests/clients/python/requirements.txt, the
# webstomp package-lock.json), against the same binary with the default configuration.
need python3 "install Python 3"
py=tests/clients/python
if [ ! -x "$py/.venv/bin/python" ] || [ "$py/requirements.txt" -nt "$py/.venv/.installed" ]; then
  python3 -m venv "$py/.venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$py/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$py/requirements.txt"
  touch "$py/.venv/.installed"
fi
(cd "$py" && STOMPBOX_BIN="$root/target/debug/stompbox" .venv/bin/python -m unittest -v test_stomppy)
npm_ready tests/clients/webstomp
(cd tests/clients/webstomp && STOMPBOX_BIN="$root/target/debug/stompbox" npm test)

step "bench/compare smoke test (debug builds, tiny runs; the real comparison: bench/compare --rabbitmq)"
need python3 "install Python 3"
smoke=$(mktemp -d)
python3 bench/compare --quick --out-md "$smoke/benchmarks.md" --out-svg "$smoke/chart.svg" > "$smoke/out.txt"
grep -q "| 50 pairs | stompbox |" "$smoke/benchmarks.md" || die "bench/compare wrote no results"
rm -rf "$smoke"

step "cargo fuzz: codec and session targets, ${STOMPBOX_FUZZ_SECS:-20} s each (coverage-guided, no sanitizer)"
# cargo-fuzz asks for nightly; the stable compiler accepts its flags with RUSTC_BOOTSTRAP=1,
# and without a sanitizer nothing else needs nightly. Crashes fail the step, and so does an
# input that takes over 10 s (-timeout: a slow input, such as a backtracking match, counts
# as a crash); libFuzzer leaves the input in <target>/artifacts/ to reproduce with
# `cargo fuzz run <target> <file>`.
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
fuzz_secs=${STOMPBOX_FUZZ_SECS:-20}
fuzz_run() {
  local dir=$1 target=$2 log
  log=$(mktemp)
  if (cd "$dir" && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" -- \
      -max_total_time="$fuzz_secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1; then
    echo "$target: $(grep -E 'stat::(number_of_executed_units|peak_rss_mb)' "$log" | tr -s ' \n' ' ')"
    rm -f "$log"
  else
    cat "$log"
    die "fuzz target $target failed (the input is in $dir/artifacts/$target/)"
  fi
}
fuzz_run stomp-codec/fuzz decode
fuzz_run fuzz session

step "browser test (headless Chromium, the chat example)"
apt_install chromium
npm_ready examples/chat/web
npm_ready tests/browser
(cd tests/browser && STOMPBOX_CHAT_BIN="$root/target/debug/examples/chat" npm test)

step "all tests passed"
