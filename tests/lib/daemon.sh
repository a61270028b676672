# Sourced by the suites that drive a real daemon from a script: start_daemon BINARY starts
# `petri serve` in a temporary home ($home) on a free port, waits for its address, and stops it
# by its pid (and removes the home) when the script exits.
home=$(mktemp -d)
pid=
stop_daemon() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$home"
}
trap stop_daemon EXIT

start_daemon() {
    PETRI_HOME=$home "$1" serve --listen 127.0.0.1:0 2>"$home/daemon.log" &
    pid=$!
    for _ in $(seq 200); do [ -s "$home/daemon.addr" ] && return 0; sleep 0.05; done
    echo "the daemon did not start:" >&2
    cat "$home/daemon.log" >&2
    exit 1
}
