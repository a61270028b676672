#!/bin/sh
# Builds Petri (installing what is missing) and runs it. Extra arguments go to `petri`;
# with none it starts the daemon with its web UI on http://127.0.0.1:7878/.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_toolchain
say "building petri (release; the first build takes a few minutes)"
cargo build --release --locked -p petri
bin="$CARGO_TARGET_DIR/release/petri"
if [ $# -eq 0 ]; then
    say "starting Petri; the token for the web UI is in ${PETRI_HOME:-$HOME/.local/share/petri}/token"
fi
exec "$bin" "$@"
