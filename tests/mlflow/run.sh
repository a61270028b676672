#!/bin/sh
# Drives Petri's MLflow API with the stock `mlflow` client: starts `petri serve` in a temporary
# home on a free port, points the client at it (MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN), runs
# tests/mlflow/test_tracking.py and test_registry.py, and stops the daemon by its pid.
# Usage: tests/mlflow/run.sh PETRI_BINARY PYTHON_WITH_MLFLOW
set -eu
bin=$1
py=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/daemon.sh"
start_daemon "$bin"
MLFLOW_TRACKING_URI=$(tr -d '\n' < "$home/daemon.addr")
MLFLOW_TRACKING_TOKEN=$(cat "$home/token")
export MLFLOW_TRACKING_URI MLFLOW_TRACKING_TOKEN
# The tests look into the home only to check that a cut upload left no temporary file.
PETRI_TEST_HOME=$home
# ... and to submit jobs that track, with the CLI.
PETRI_TEST_BIN=$bin
export PETRI_TEST_HOME PETRI_TEST_BIN
# No retries with backoff on a refused call, no telemetry, nothing fetched from the network.
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
status=0
"$py" "$here/test_tracking.py" || status=$?
"$py" "$here/test_registry.py" || status=$?
if grep -q panicked "$home/daemon.log"; then
    echo "the daemon panicked:" >&2
    cat "$home/daemon.log" >&2
    status=1
fi
exit $status
