#!/bin/sh
# Builds Petri (installing what is missing) and runs it. Extra arguments go to `petri`;
# with none it starts the daemon with its web UI on http://127.0.0.1:7878/.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

# With no display the window cannot open: build the server build, which has no Tauri and needs no
# GTK or WebKit (nothing to install, and a daemon that maps none of their libraries).
if [ -z "${PETRI_NO_DESKTOP:-}${PETRI_DESKTOP:-}" ] && [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    PETRI_NO_DESKTOP=1
    export PETRI_NO_DESKTOP
    say "no display: building the headless server without the desktop window (PETRI_DESKTOP=1 builds the window too)"
fi
ensure_toolchain
ensure_ui
say "building petri (release; the first build takes a few minutes)"
if [ -n "${PETRI_NO_DESKTOP:-}" ]; then
    cargo build --release --locked -p petri --no-default-features
else
    cargo build --release --locked -p petri
fi
bin="$CARGO_TARGET_DIR/release/petri"
# Put the `petri` command on PATH for the CLI verbs.
dest="${PETRI_BIN_DIR:-}"
if [ -z "$dest" ]; then
    if [ -w /usr/local/bin ]; then dest=/usr/local/bin; else dest="$HOME/.local/bin"; fi
fi
mkdir -p "$dest"
if ! cmp -s "$bin" "$dest/petri" 2>/dev/null; then
    cp "$bin" "$dest/petri.new" && mv "$dest/petri.new" "$dest/petri"
    say "installed the petri command as $dest/petri"
fi
case ":$PATH:" in *":$dest:"*) ;; *) say "add $dest to your PATH to use the petri command" ;; esac
if [ $# -eq 0 ] || [ "$1" = serve ]; then
    # Container jobs and notebooks need the engine and the default image (built once, ~1 minute).
    # Petri runs without them too: a failure here is said, not fatal.
    if (ensure_docker); then
        (ensure_default_image) || say "the default image did not build; notebooks need it (petri image build)"
    else
        say "no Docker engine: container jobs and notebooks are unavailable until one runs"
    fi
fi
if [ $# -eq 0 ]; then
    say "starting Petri; the token for the web UI is in ${PETRI_HOME:-$HOME/.local/share/petri}/token"
fi
exec "$bin" "$@"
