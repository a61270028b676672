#!/bin/sh
# The real-GPU check of GPU sharing (issue 3, item 8), to run on a machine with an NVIDIA GPU,
# from the repository root, with a release `petri` binary built elsewhere in .device/petri:
#
#   mkdir -p .device && cp "$CARGO_TARGET_DIR/release/petri" .device/   (and ignore .device in git)
#   OUT=/some/folder bench/gpu-device/check.sh
#
# It runs the daemon against the real NVML, two PyTorch jobs sharing GPU 0 by memory slices, checks
# that `petri gpus` attributes their memory to them, and, where MPS can run, that a job over its MPS
# limit fails while its neighbour finishes. Everything it sees goes to $OUT (summary.txt first).
# Not run yet on a GPU: no session so far had one.
#
# REHEARSE=1 runs the same steps on a machine without a GPU, against the fake NVML (built by
# `cargo build -p petri-fake-nvml`) and with jobs that only sleep, so that the script's own
# plumbing (flags, JSON fields, the daemon's start and stop) is known to work before device time
# is spent on it: `REHEARSE=1 PETRI_BIN=$CARGO_TARGET_DIR/debug/petri bench/gpu-device/check.sh`.
set -u
REHEARSE=${REHEARSE:-}
OUT=${OUT:-/tmp/petri-gpu-check}
mkdir -p "$OUT"
P=${PETRI_BIN:-"$(pwd)/.device/petri"}
export PETRI_HOME="$OUT/home"
rm -rf "$PETRI_HOME"
mkdir -p "$PETRI_HOME"
log() { echo "$*" | tee -a "$OUT/summary.txt"; }

if [ -n "$REHEARSE" ]; then
    lib="$(dirname "$P")/libnvidia_ml.so"
    [ -f "$lib" ] || { log "FAIL: no fake NVML next to $P (cargo build -p petri-fake-nvml)"; exit 1; }
    export PETRI_NVML_PATH="$lib" PETRI_FAKE_NVML="$OUT/fake-gpus.json"
    echo '{"gpus": [{"name": "Rehearsal H200", "uuid": "GPU-rehearsal", "memory_total": 150754820096}]}' > "$PETRI_FAKE_NVML"
    log "rehearsal: fake NVML, jobs that only sleep"
else
    nvidia-smi -L > "$OUT/nvidia-smi.txt" 2>&1 || { log "FAIL: nvidia-smi does not answer"; exit 1; }
    python3 -c 'import torch; assert torch.cuda.is_available()' 2>"$OUT/torch.txt" \
        || { log "FAIL: PyTorch with CUDA is not importable here (see torch.txt)"; exit 1; }
fi

start() {
    "$P" serve --listen 127.0.0.1:0 >>"$OUT/daemon.log" 2>&1 &
    DAEMON=$!
    for _ in $(seq 100); do [ -s "$PETRI_HOME/daemon.addr" ] && break; sleep 0.1; done
}
stop() { kill "$DAEMON" 2>/dev/null; wait "$DAEMON" 2>/dev/null; rm -f "$PETRI_HOME/daemon.addr"; }

# 1. Inventory from the real NVML.
start
"$P" gpus --json > "$OUT/gpus-idle.json"
grep -q '"available": true' "$OUT/gpus-idle.json" && log "ok: NVML inventory" || log "FAIL: no GPUs seen"

# 2. Two slices share GPU 0; each allocates 10 GiB and holds it for 20 s.
cat > "$OUT/hold.py" <<'PY'
import os, sys, time
gib = int(sys.argv[1])
if not os.environ.get("REHEARSE"):
    import torch
    x = torch.empty(gib << 30, dtype=torch.uint8, device="cuda")
print("allocated", gib, "GiB on", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
time.sleep(int(sys.argv[2]))
PY
A=$("$P" submit --json --gpu-mem 20GiB -- python3 "$OUT/hold.py" 10 20 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["number"])')
B=$("$P" submit --json --gpu-mem 20GiB -- python3 "$OUT/hold.py" 10 20 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["number"])')
sleep 12
"$P" gpus --json > "$OUT/gpus-busy.json"
"$P" ls --json > "$OUT/ls-busy.json"
python3 - "$OUT/gpus-busy.json" <<'PY' | tee -a "$OUT/summary.txt"
import json, os, sys
r = json.load(open(sys.argv[1]))
g = r["gpus"][0]
jobs = [h for h in g["holders"] if h["kind"] == "job"]
print("ok: two slices on GPU 0" if len(jobs) == 2 else f"FAIL: {len(jobs)} job holders on GPU 0")
if os.environ.get("REHEARSE"):
    print("skip: attribution (the fake NVML sees no process of these jobs)")
else:
    print("ok: memory attributed to jobs" if all(h["used"] >= 10 << 30 for h in jobs)
          else f"FAIL: attribution {[h['used'] for h in jobs]}")
PY
sleep 12
"$P" show --json "$A" > "$OUT/job-a.json"; "$P" show --json "$B" > "$OUT/job-b.json"
grep -q '"state": "succeeded"' "$OUT/job-a.json" && grep -q '"state": "succeeded"' "$OUT/job-b.json" \
    && log "ok: both slices succeeded" || log "FAIL: a slice did not succeed"
stop

# 3. MPS: the driver holds a slice to its limit.
if command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
    printf '[gpu]\nmps = [0]\n' > "$PETRI_HOME/petri.toml"
    start
    OVER=$("$P" submit --json --gpu-mem 4GiB -- python3 "$OUT/hold.py" 8 5 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["number"])')
    UNDER=$("$P" submit --json --gpu-mem 4GiB -- python3 "$OUT/hold.py" 2 5 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["number"])')
    sleep 25
    "$P" show --json "$OVER" > "$OUT/mps-over.json"; "$P" show --json "$UNDER" > "$OUT/mps-under.json"
    "$P" logs "$OVER" > "$OUT/mps-over.log"
    grep -q '"state": "failed"' "$OUT/mps-over.json" && log "ok: over its MPS limit: failed" || log "FAIL: over its MPS limit did not fail"
    grep -q '"state": "succeeded"' "$OUT/mps-under.json" && log "ok: under its MPS limit: succeeded" || log "FAIL: the MPS neighbour did not succeed"
    stop
    echo quit | CUDA_MPS_PIPE_DIRECTORY="$PETRI_HOME/mps/0/pipe" nvidia-cuda-mps-control || true
else
    log "skip: nvidia-cuda-mps-control is not installed here"
fi
cat "$OUT/summary.txt"
