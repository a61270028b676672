#!/bin/sh
# Runs every test Petri has, installing what is missing first. Usage: scripts/test.sh
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_toolchain
say "build cache: $CARGO_TARGET_DIR"

say "lint gate: cargo fmt --check"
cargo fmt --all -- --check
say "lint gate: cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "lint gate: cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

say "building the fake libnvidia-ml the GPU tests load"
cargo build --locked -p petri-fake-nvml
say "tests: unit, API (in-process daemon), end to end (the petri binary)"
cargo test --workspace --locked

say "API fuzzing (schemathesis, from the daemon's own OpenAPI document)"
venv="$(dirname "$CARGO_TARGET_DIR")/venv"
if ! "$venv/bin/python" -c "import schemathesis" 2>/dev/null; then
    command -v python3 >/dev/null 2>&1 || apt_install python3
    python3 -c "import ensurepip" >/dev/null 2>&1 || apt_install python3-venv
    say "installing schemathesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4,<5"
fi
tests/fuzz/api.sh "$CARGO_TARGET_DIR/debug/petri" "$venv/bin/python"

say "all tests passed"
