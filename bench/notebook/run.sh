#!/bin/sh
# P7 of bench/RESULTS.md: notebook start-to-ready. Petri (`petri notebook start`, which returns when
# Jupyter answers through the daemon's proxy) beside the bare engine (`docker run` of the same
# image with the same Jupyter command, polled until `/api/status` answers 200), alternating, so the
# ratio shows what Petri adds. Usage: bench/notebook/run.sh [ROUNDS]
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib.sh
rounds="${1:-5}"
ensure_toolchain
ensure_docker
ensure_default_image
say "building petri (release)"
cargo build --release --locked -p petri
bin="$CARGO_TARGET_DIR/release/petri"
image=petri/python:3.11

home=$(mktemp -d)
"$bin" --home "$home" serve --listen 127.0.0.1:0 2>"$home/daemon.log" &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    docker ps -aq --filter "label=petri.home=$home" | xargs -r docker rm -f >/dev/null
    rm -rf "$home"
}
trap cleanup EXIT
for _ in $(seq 200); do [ -s "$home/daemon.addr" ] && break; sleep 0.05; done

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

petri_round() {
    t0=$(now)
    PETRI_HOME=$home "$bin" notebook start "bench$1" --json >/dev/null
    t1=$(now)
    PETRI_HOME=$home "$bin" notebook stop "bench$1" >/dev/null
    # Stopped for good (and its container removed) before the next round or the end.
    while PETRI_HOME=$home "$bin" notebook ls --json | grep -q '"state": "\(stopping\|running\|starting\)"'; do
        sleep 0.2
    done
    elapsed "$t0" "$t1"
}

docker_round() {
    t0=$(now)
    cid=$(docker run -d -p 127.0.0.1::8888 -e JUPYTER_TOKEN=bench -u "$(id -u):$(id -g)" -e HOME=/tmp \
        "$image" jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --allow-root \
        --ServerApp.base_url=/notebooks/bare/ --ServerApp.allow_remote_access=True)
    port=$(docker port "$cid" 8888/tcp | head -1 | sed 's/.*://')
    until curl -sf -o /dev/null -H "Authorization: token bench" \
        "http://127.0.0.1:$port/notebooks/bare/api/status"; do sleep 0.05; done
    t1=$(now)
    docker rm -f "$cid" >/dev/null
    elapsed "$t0" "$t1"
}

apt_install bc curl
petri_times=""
docker_times=""
for r in $(seq "$rounds"); do
    d=$(docker_round); docker_times="$docker_times $d"
    p=$(petri_round "$r"); petri_times="$petri_times $p"
    printf 'round %s: docker run %.2f s, petri notebook start %.2f s\n' "$r" "$d" "$p"
done
median() { printf '%s\n' $1 | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
pm=$(median "$petri_times")
dm=$(median "$docker_times")
printf 'median over %s rounds: docker run + poll %.2f s, petri notebook start %.2f s (%.2fx)\n' \
    "$rounds" "$dm" "$pm" "$(echo "$pm / $dm" | bc -l)"
