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

say "tests: unit, API (in-process daemon), end to end (the petri binary)"
cargo test --workspace --locked

say "all tests passed"
