#!/bin/sh
# P3 of bench/RESULTS.md: the iris model served by Petri (default batching, --max-batch 1 and
# --max-delay 2ms), by `mlflow models serve --workers 2` (an equivalent scikit-learn model) and
# by a server that answers a fixed response at once (the HTTP limit), in one run: peak requests
# per second (wrk, 64 connections), p50/p99 at half of each one's peak (open-loop, fixed rate),
# and one request's latency with no load.
# Builds Petri (release, server build) and bench/tools (fixed-answer, openloop; release,
# their own target folder next to the build cache); installs wrk (Debian), Python's venv and
# mlflow 3.x with scikit-learn (PyPI, into the bench venv next to the build cache) when missing;
# starts the Docker engine when none answers (and stops it after) and builds the image
# petri/python:3.11 when missing (the iris pipeline runs in it); then runs bench.py.
# Usage: bench/serving/run.sh [--profile] [--rounds N] [--duration S] [--rate-duration S] [--serial N]
#   --profile  use Petri's `profiling` build (release code with symbols) and add perf's flat
#              profile of the daemon and a replica under wrk (needs `perf`).
set -eu
profile=""
if [ "${1:-}" = "--profile" ]; then profile=1; shift; fi
cd "$(dirname "$0")/../.."
. scripts/lib.sh
export PETRI_NO_DESKTOP=1
ensure_toolchain
apt_install python3 python3-venv wrk
if [ -n "$profile" ]; then
    say "building petri (profiling: release with symbols, no desktop)"
    cargo build --profile profiling --locked -p petri --no-default-features
    petri="$CARGO_TARGET_DIR/profiling/petri"
    command -v perf >/dev/null 2>&1 || apt_install linux-perf
    set -- --perf 8 "$@"
else
    say "building petri (release, no desktop)"
    cargo build --release --locked -p petri --no-default-features
    petri="$CARGO_TARGET_DIR/release/petri"
fi
tools_target="$(dirname "$CARGO_TARGET_DIR")/bench-target"
say "building bench/tools (release, into $tools_target)"
(cd bench/tools && CARGO_TARGET_DIR="$tools_target" cargo build --release --locked)
venv="${PETRI_BENCH_VENV:-$(dirname "$CARGO_TARGET_DIR")/bench-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import mlflow, sklearn, pandas, sys; sys.exit(not mlflow.__version__.startswith('3.'))" 2>/dev/null \
    || [ ! -x "$venv/bin/mlflow" ]; then
    say "installing mlflow 3.x and scikit-learn from PyPI into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "mlflow>=3,<4" scikit-learn pandas
fi
ensure_docker
stop_docker() {
    if [ -n "$STARTED_DOCKERD" ]; then
        say "stopping the Docker engine started here (pid $STARTED_DOCKERD)"
        as_root kill "$STARTED_DOCKERD" 2>/dev/null || true
    fi
}
trap stop_docker EXIT
trap 'exit 130' INT TERM
docker image inspect petri/python:3.11 >/dev/null 2>&1 || ensure_default_image
"$venv/bin/python" bench/serving/bench.py --petri "$petri" \
    --mlflow "$venv/bin/mlflow" --fixed-answer "$tools_target/release/fixed-answer" \
    --openloop "$tools_target/release/openloop" "$@"
