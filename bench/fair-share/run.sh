#!/bin/sh
# P9 of bench/RESULTS.md: two users on a 4-GPU box (a 200-job backlog, and a job an hour)
# replayed through the real scheduler with a simulated clock, with fair share and first in,
# first out. Usage: bench/fair-share/run.sh
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_toolchain
echo "== leo asks for half the box (1 GPU x 2 h an hour)"
cargo run --release --locked -q -p petri-sched --example fair_share -- --leo-gpus 1 --leo-hours 2
echo "== leo asks for the whole box (2 GPUs x 2 h an hour)"
cargo run --release --locked -q -p petri-sched --example fair_share -- --leo-gpus 2 --leo-hours 2
