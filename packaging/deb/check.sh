#!/bin/sh
# Installs a Petri .deb with dpkg into a scratch root (its own dpkg database, so the machine is not
# touched), then starts the installed binary headless and checks that it serves: /healthz, the
# web UI page, and the CLI against it. Usage: packaging/deb/check.sh PATH.deb
set -eu
deb=$1
root=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$root"' EXIT
mkdir -p "$root/dpkg/updates" "$root/dpkg/info"
touch "$root/dpkg/status"
# Dependencies (WebKitGTK, GTK) are the machine's; this root only checks the package itself.
dpkg --instdir="$root" --admindir="$root/dpkg" --force-depends --force-not-root \
    --force-script-chrootless --log=/dev/null -i "$deb" >"$root/dpkg.log" 2>&1
dpkg --admindir="$root/dpkg" -s petri | grep -q "Status: install ok installed"
for f in usr/bin/petri usr/share/applications/Petri.desktop lib/systemd/system/petri.service \
    usr/share/icons/hicolor/128x128/apps/petri.png; do
    [ -e "$root/$f" ] || { echo "the .deb lacks $f" >&2; exit 1; }
done
grep -q '^Exec=petri' "$root/usr/share/applications/Petri.desktop"
home="$root/home"
PETRI_HOME="$home" "$root/usr/bin/petri" serve --listen 127.0.0.1:0 2>"$root/daemon.log" &
pid=$!
for _ in $(seq 200); do [ -s "$home/daemon.addr" ] && break; sleep 0.05; done
base=$(cat "$home/daemon.addr")
curl -sf "$base/healthz" >/dev/null
[ "$(curl -s -o "$root/page.html" -w '%{http_code}' "$base/")" = 401 ]
grep -q '<div id="root">' "$root/page.html"
PETRI_HOME="$home" "$root/usr/bin/petri" submit -- true >/dev/null
PETRI_HOME="$home" "$root/usr/bin/petri" ls --all --json | grep -q '"state"'
echo "the .deb installs (dpkg), and its petri starts and serves the API, the web UI and the CLI"
