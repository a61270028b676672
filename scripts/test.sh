#!/bin/sh
# Runs every test Petri has, installing what is missing first. Usage: scripts/test.sh
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/slurm.sh
. scripts/ray.sh
. scripts/kube.sh

ensure_toolchain
# No incremental compilation: a clean clone gains nothing from it and it fills the disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
say "build cache: $CARGO_TARGET_DIR (old linked binaries pruned)"
prune_build_cache
ensure_ui

say "lint gate: cargo fmt --check"
cargo fmt --all -- --check
say "lint gate: cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "the server build (no Tauri, no WebKit) compiles cleanly"
cargo clippy --locked -p petri --no-default-features -- -D warnings
say "lint gate: cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

say "the Docker engine and Petri's default image (container and notebook tests)"
ensure_docker
stop_engine() {
    stop_kube
    stop_ray
    stop_slurm
    if [ -n "$STARTED_DOCKERD" ]; then
        say "stopping the Docker engine this script started"
        as_root kill "$STARTED_DOCKERD" 2>/dev/null || true
    fi
}
trap stop_engine EXIT
export PETRI_TEST_IMAGE="petri/python:3.11"
ensure_default_image "$PETRI_TEST_IMAGE"
# Test homes live here, so that containers left behind by a test can be found afterwards.
test_tmp="$(dirname "$CARGO_TARGET_DIR")/test-tmp"
rm -rf "$test_tmp" && mkdir -p "$test_tmp"
export TMPDIR="$test_tmp"

# Slurm 22.05, Ray and a Kubernetes API server on loopback for the cluster tests
# (tests/e2e/slurm.rs, ray.rs, kubernetes.rs).
start_slurm "$test_tmp/slurm"
start_ray "$test_tmp/ray"
start_kube "$test_tmp/kube"

say "building the fake libnvidia-ml the GPU tests load"
cargo build --locked -p petri-fake-nvml
say "tests: unit, API (in-process daemon), end to end (the petri binary)"
cargo test --workspace --locked

say "web UI unit tests (Vitest)"
(cd ui && npm run --silent test >&2)

say "web UI end to end in Chromium (playwright-core; screenshots in ui/e2e/out)"
command -v chromium >/dev/null 2>&1 || apt_install chromium
CHROMIUM="$(command -v chromium)" node ui/e2e/run.mjs --petri "$CARGO_TARGET_DIR/debug/petri" \
    --nvml "$CARGO_TARGET_DIR/debug/libnvidia_ml.so" --image "$PETRI_TEST_IMAGE" --out ui/e2e/out

say "the desktop window under Xvfb (tauri-driver, WebKitWebDriver)"
apt_install xvfb webkit2gtk-driver
tools="$(dirname "$CARGO_TARGET_DIR")/tools"
if [ ! -x "$tools/bin/tauri-driver" ]; then
    say "installing tauri-driver from crates.io into $tools"
    cargo install tauri-driver --locked --root "$tools" >&2
fi
node tests/desktop/run.mjs --petri "$CARGO_TARGET_DIR/debug/petri" --tauri-driver "$tools/bin/tauri-driver" \
    --image "$PETRI_TEST_IMAGE" --out ui/e2e/out

say "built-in pipeline components, their model format and the Iris chain (Python, in $PETRI_TEST_IMAGE)"
docker run --rm --network none -v "$PWD:$PWD:ro" -w "$PWD" -e PYTHONDONTWRITEBYTECODE=1 \
    "$PETRI_TEST_IMAGE" python components/tests/test_components.py >&2

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

say "MLflow: the stock client (newest 3.x) against the tracking API"
if ! "$venv/bin/python" -c "import mlflow, sys; sys.exit(not mlflow.__version__.startswith('3.'))" 2>/dev/null; then
    say "installing mlflow into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "mlflow>=3,<4"
fi
tests/mlflow/run.sh "$CARGO_TARGET_DIR/debug/petri" "$venv/bin/python"

say "serving: a model called with tritonclient (OIP v2) and MLflow's scoring formats"
if ! "$venv/bin/python" -c "import tritonclient.http, onnx" 2>/dev/null; then
    say "installing tritonclient and onnx into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "tritonclient[http]" onnx
fi
tests/serving/run.sh "$CARGO_TARGET_DIR/debug/petri" "$venv/bin/python"

say "packaging: the .deb builds, installs with dpkg (into a scratch root) and starts"
command -v curl >/dev/null 2>&1 || apt_install curl
deb=$(packaging/deb/build.sh)
packaging/deb/check.sh "$deb"

say "checking that the tests left no container behind"
left=$(docker ps -a --format '{{.Names}} {{.Label "petri.home"}}' | grep " $test_tmp" || true)
if [ -n "$left" ]; then
    printf '%s\n' "$left" >&2
    die "containers of test homes were left behind"
fi

say "all tests passed"
