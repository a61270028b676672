#!/bin/sh
# Serves a model with the real binary and calls it with stock inference clients: tritonclient's
# HTTP client (the Open Inference Protocol v2, binary tensors and JSON) and MLflow's scoring
# formats. Starts `petri serve` in a temporary home on a free port, runs test_clients.py, and
# stops the daemon (and the replicas the test unserves) by pid.
# Usage: tests/serving/run.sh PETRI_BINARY PYTHON_WITH_TRITONCLIENT_AND_MLFLOW
set -eu
bin=$1
py=$2
here=$(cd "$(dirname "$0")" && pwd)
home=$(mktemp -d)
pid=
stop() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$home"
}
trap stop EXIT
PETRI_HOME=$home "$bin" serve --listen 127.0.0.1:0 2>"$home/daemon.log" &
pid=$!
for _ in $(seq 200); do [ -s "$home/daemon.addr" ] && break; sleep 0.05; done
if [ ! -s "$home/daemon.addr" ]; then
    echo "the daemon did not start:" >&2
    cat "$home/daemon.log" >&2
    exit 1
fi
PETRI_TEST_HOME=$home PETRI_TEST_BIN=$bin "$py" "$here/test_clients.py"
