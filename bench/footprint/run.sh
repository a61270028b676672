#!/bin/sh
# P6 of bench/RESULTS.md: builds the release binaries (desktop and server builds), then runs
# bench.mjs. Usage: bench/footprint/run.sh [ROUNDS]
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_toolchain
ensure_ui
say "building petri (release, desktop and server builds)"
cargo build --release --locked -p petri
cargo build --release --locked -p petri --no-default-features --target-dir "$CARGO_TARGET_DIR/server"
tools="${PETRI_BENCH_TOOLS:-$(dirname "$CARGO_TARGET_DIR")/tools}"
[ -x "$tools/bin/pueued" ] || cargo install pueue --locked --root "$tools"
command -v chromium >/dev/null 2>&1 || apt_install chromium
exec node bench/footprint/bench.mjs --petri "$CARGO_TARGET_DIR/release/petri" \
    --server "$CARGO_TARGET_DIR/server/release/petri" --pueue-dir "$tools/bin" --rounds "${1:-5}"
