#!/bin/sh
# P4 of bench/RESULTS.md: a 200-step fan-out/fan-in DAG of no-op steps, Petri beside Snakemake.
# Builds Petri (release, server build), installs Snakemake from PyPI into a venv next to the build
# cache when missing, and runs bench.py. Usage: bench/pipeline/run.sh [--rounds N] [--cached-rounds N]
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib.sh
export PETRI_NO_DESKTOP=1
ensure_toolchain
apt_install python3 python3-venv
say "building petri (release, no desktop)"
cargo build --release --locked -p petri --no-default-features
venv="${PETRI_BENCH_VENV:-$(dirname "$CARGO_TARGET_DIR")/bench-venv}"
if [ ! -x "$venv/bin/snakemake" ]; then
    say "installing snakemake from PyPI into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet snakemake
fi
exec python3 bench/pipeline/bench.py --petri "$CARGO_TARGET_DIR/release/petri" \
    --snakemake "$venv/bin/snakemake" "$@"
