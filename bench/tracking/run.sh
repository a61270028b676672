#!/bin/sh
# P2 of bench/RESULTS.md: the stock mlflow client logging metrics to Petri, to `mlflow server`
# (SQLite backend) and to a server that answers at once (the client's own limit).
# Builds Petri (release, server build) and the empty server (one std-only Rust file, rustc -O),
# installs mlflow 3.x (with its server) from PyPI into a venv next to the build cache when missing,
# and runs bench.py with that venv's Python.
# Usage: bench/tracking/run.sh [--rounds N] [--points N] [--calls N] [--no-scale]
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib.sh
export PETRI_NO_DESKTOP=1
ensure_toolchain
apt_install python3 python3-venv
say "building petri (release, no desktop)"
cargo build --release --locked -p petri --no-default-features
empty="$CARGO_TARGET_DIR/bench/mlflow-empty-server"
if [ ! -x "$empty" ] || [ bench/tracking/empty_server.rs -nt "$empty" ]; then
    say "building the empty server (rustc -O)"
    mkdir -p "$(dirname "$empty")"
    rustc -O --edition 2021 bench/tracking/empty_server.rs -o "$empty"
fi
venv="${PETRI_BENCH_VENV:-$(dirname "$CARGO_TARGET_DIR")/bench-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import mlflow, sys; sys.exit(not mlflow.__version__.startswith('3.'))" 2>/dev/null \
    || [ ! -x "$venv/bin/mlflow" ]; then
    say "installing mlflow 3.x from PyPI into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "mlflow>=3,<4"
fi
exec "$venv/bin/python" bench/tracking/bench.py --petri "$CARGO_TARGET_DIR/release/petri" \
    --mlflow "$venv/bin/mlflow" --empty-server "$empty" "$@"
