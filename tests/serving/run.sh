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
. "$here/../lib/daemon.sh"
start_daemon "$bin"
PETRI_TEST_HOME=$home PETRI_TEST_BIN=$bin "$py" "$here/test_clients.py"
