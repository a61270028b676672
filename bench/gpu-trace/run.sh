#!/bin/sh
# P5 of bench/RESULTS.md: a GPU job trace replayed through the real scheduler with a simulated
# clock, beside exclusive FIFO and a "looks 90 % free" policy.
# Usage: bench/gpu-trace/run.sh [--mix pai|fractional] [--jobs N] [--seed N] [--seeds N] [--claim-after S]
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_toolchain
cargo run --release --locked -q -p petri-sched --example gpu_trace -- "$@"
