#!/bin/sh
# Builds the .deb of the desktop app (the petri binary with its window, a desktop entry, icons from
# assets/, and the systemd unit for a shared workstation) with the Tauri CLI from npm (prebuilt,
# works offline once installed). Prints the path of the .deb.
# Usage: packaging/deb/build.sh      (run from anywhere; needs the toolchain and the built UI)
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_toolchain
ensure_ui
say "building the .deb (release build of the desktop app; the first one takes several minutes)"
(cd src-tauri && ../ui/node_modules/.bin/tauri build --bundles deb --ci >&2)
deb=$(ls -t "$CARGO_TARGET_DIR"/release/bundle/deb/*.deb | head -1)
say "built $deb"
echo "$deb"
