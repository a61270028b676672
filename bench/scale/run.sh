#!/bin/sh
# P1b of bench/RESULTS.md: builds Petri (release), installs pueue from crates.io when missing, and
# runs bench.py (a million finished jobs beside pueue's status with 10,000 tasks; about 40 minutes,
# most of it pueue adding its tasks). Usage: bench/scale/run.sh [bench.py options]
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_toolchain
apt_install python3
# The server build: what `scripts/run.sh` runs on a machine with no display, and what a shared box
# keeps running. (The desktop build's daemon also maps GTK and WebKit: about 25 MiB more RSS.)
say "building petri (release, the server build)"
cargo build --release --locked -p petri --no-default-features
tools="${PETRI_BENCH_TOOLS:-$(dirname "$CARGO_TARGET_DIR")/tools}"
if [ ! -x "$tools/bin/pueued" ]; then
    say "installing pueue from crates.io into $tools"
    cargo install pueue --locked --root "$tools"
fi
tools_target="$(dirname "$CARGO_TARGET_DIR")/bench-target"
say "building bench/tools (release, into $tools_target)"
(cd bench/tools && CARGO_TARGET_DIR="$tools_target" cargo build --release --locked)
exec python3 bench/scale/bench.py --petri "$CARGO_TARGET_DIR/release/petri" --pueue-dir "$tools/bin" \
    --follow "$tools_target/release/follow" "$@"
