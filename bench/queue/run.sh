#!/bin/sh
# P1 of bench/RESULTS.md: builds Petri (release), installs pueue from crates.io when missing,
# and runs bench.py. Usage: bench/queue/run.sh [--jobs N] [--pueue-jobs N] [--latency-jobs N]
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_toolchain
apt_install python3
say "building petri (release)"
cargo build --release --locked -p petri
tools="${PETRI_BENCH_TOOLS:-$(dirname "$CARGO_TARGET_DIR")/tools}"
if [ ! -x "$tools/bin/pueued" ]; then
    say "installing pueue from crates.io into $tools"
    cargo install pueue --locked --root "$tools"
fi
exec python3 bench/queue/bench.py --petri "$CARGO_TARGET_DIR/release/petri" --pueue-dir "$tools/bin" "$@"
