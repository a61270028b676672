#!/bin/sh
# P8 of bench/RESULTS.md: submit-to-start and end-to-seen through Petri to a one-node Slurm 22.05
# and a one-node Ray on loopback, beside sbatch and squeue and beside `ray job submit`, in the same
# run. Usage: bench/cluster/run.sh [JOBS] [ENGINES]   (ENGINES: "slurm ray", the default, or one)
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib.sh
. scripts/slurm.sh
. scripts/ray.sh
ensure_toolchain
ensure_ui
jobs="${1:-10}"
engines="${2:-slurm ray}"
say "building petri (the server build, debug: the overheads measured are waits, not CPU)"
cargo build --locked -q -p petri --no-default-features
petri="$CARGO_TARGET_DIR/debug/petri"
work="$(mktemp -d)"
daemon_pid=""
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
    stop_ray
    stop_slurm
    sleep 1
    if [ -n "${BENCH_KEEP:-}" ]; then say "kept $work"; else rm -rf "$work" || true; fi
}
trap cleanup EXIT
# slurmrestd runs as petri-slurm: it must reach its configuration.
chmod 755 "$work"
start_slurm "$work/slurm"
start_ray "$work/ray"
mkdir -p "$work/stamps" "$work/jobdir" && chmod 777 "$work/stamps" && echo "input" > "$work/jobdir/data.txt"
port=$(free_port)
PETRI_HOME="$work/home" "$petri" serve --listen "127.0.0.1:$port" 2>"$work/daemon.log" &
daemon_pid=$!
until PETRI_HOME="$work/home" "$petri" ls >/dev/null 2>&1; do sleep 0.2; done
PETRI_HOME="$work/home" "$petri" cluster add hpc --kind slurm --url "$PETRI_TEST_SLURM_URL" \
    --user petri-slurm --token-file "$PETRI_TEST_SLURM_TOKEN_FILE" --shared "$PETRI_TEST_SLURM_SHARED"
PETRI_HOME="$work/home" "$petri" cluster add ray --kind ray --url "$PETRI_TEST_RAY_URL" \
    --user petri-ray --token-file "$PETRI_TEST_RAY_TOKEN_FILE" --shared "$PETRI_TEST_RAY_SHARED"
case " $engines " in *" slurm "*)
python3 bench/cluster/bench.py --engine slurm --petri "$petri" --home "$work/home" --url "http://127.0.0.1:$port" \
    --dir "$work/stamps" --work "$work/jobdir" --jobs "$jobs"
;; esac
case " $engines " in *" ray "*)
# The Ray CLI as a user runs it: the cluster's address and token from the environment.
RAY_API_SERVER_ADDRESS="$PETRI_TEST_RAY_URL" RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(cat "$PETRI_TEST_RAY_TOKEN_FILE")" \
    python3 bench/cluster/bench.py --engine ray --ray "$PETRI_TEST_RAY_BIN" --petri "$petri" --home "$work/home" \
    --url "http://127.0.0.1:$port" --dir "$work/stamps" --work "$work/jobdir" --jobs "$jobs"
;; esac
