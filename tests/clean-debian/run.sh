#!/bin/sh
# Checks that the README's two commands work on a clean Debian 12, the way a new user runs them:
# a minimal Debian 12 root filesystem (mmdebstrap --variant=minbase) is imported into Docker, and
# inside a privileged container (test.sh starts its own Docker engine there) a fresh `git clone`
# of this repository runs
#   ./scripts/run.sh    until its web UI answers on http://127.0.0.1:7878/healthz, then stopped;
#   ./scripts/test.sh   with CI=true (a test that would skip fails instead).
# Everything else (system packages, Node.js, the engine, the default image) must come from the
# scripts. Two things come from this machine, as a user behind a TLS-intercepting proxy has them:
#   - the CA certificates under /usr/local/share/ca-certificates, installed into the container's
#     trust store before anything else, with NODE_EXTRA_CA_CERTS, PIP_CERT and SSL_CERT_FILE set;
#   - the Rust toolchain (~/.cargo and ~/.rustup mounted read-only, put on PATH) when there is one,
#     since rustup's server may be unreachable; without one, run.sh installs it with rustup.
# The check runs at low priority (nice 19, --cpus 1.5): a cold build there takes an hour or more.
# Under a quota below 2 CPUs the processes inside see one CPU (Rust's available_parallelism rounds
# the quota down), so Petri sizes its capacity and its runtimes as on a 1-CPU machine;
# PETRI_CHECK_CPUS=2 checks what a 2-CPU machine sees.
# Where this machine cannot start a --privileged container (its own capability bounding set lacks
# one, as in some VMs and sandboxes), the container gets the same rights spelled out instead.
#
# Usage: tests/clean-debian/run.sh [--keep] [--reuse] [--ref REF] [run] [test]
#   run, test  the stages to run (default: both, in that order, in one container)
#   --ref REF  the commit to check (default: HEAD of this checkout; only committed work is seen)
#   --keep     keep the image and the volumes (build cache, engine storage) afterwards
#   --reuse    start from the image and volumes a --keep run left (not a clean check: for rerunning
#              a failing stage while fixing the scripts)
# Environment: PETRI_CHECK_WORK (logs and the root filesystem; default $TMPDIR/petri-clean-debian),
# PETRI_CHECK_CPUS (default 1.5), PETRI_CHECK_MIRROR (default http://deb.debian.org/debian),
# PETRI_CHECK_RUN_TIMEOUT (seconds to wait for run.sh's web UI; default 10800).
# Needs: a Docker engine, mmdebstrap (both installed when missing, as the scripts do), and root or
# access to the engine. Logs, timings and the browser tests' screenshots land in $PETRI_CHECK_WORK/out.
set -eu

# ---- inside the container -------------------------------------------------------------------
if [ "${1:-}" = --inside ]; then
    shift
    step() { printf '\n\033[1;35m#### %s\033[0m\n' "$*"; }
    timings=/mnt/out/timings.txt
    : >"$timings"
    timed() { # timed NAME COMMAND...: runs it, records how long it took and how it ended
        name=$1
        shift
        t0=$(date +%s)
        rc=0
        "$@" || rc=$?
        line="$name: $(($(date +%s) - t0)) s, $([ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)")"
        echo "$line" >>"$timings"
        step "$line"
        return "$rc"
    }
    collect() {
        cp -r /root/petri/ui/e2e/out /mnt/out/e2e-out 2>/dev/null || true
        cp /tmp/petri-dockerd.log /mnt/out/ 2>/dev/null || true
        cp -r /var/cache/petri/test-tmp /mnt/out/test-tmp 2>/dev/null || true
    }
    trap collect EXIT

    if [ -n "${PETRI_CHECK_REMOUNT:-}" ]; then
        # Without --privileged (see below) /sys and the cgroup mounts come read-only; the inner
        # engine needs them writable, as --privileged would have them.
        step "remounting /sys and the cgroup mounts writable (what --privileged would do)"
        mount -o remount,rw /sys
        for m in $(awk '$5 ~ "^/sys/fs/cgroup" { print $5 }' /proc/self/mountinfo); do
            mount -o remount,rw "$m" 2>/dev/null || mount -o remount,bind,rw "$m"
        done
    fi
    step "trusting the host's CA certificates (update-ca-certificates)"
    if [ -d /mnt/host-ca ]; then
        find /mnt/host-ca -maxdepth 1 -name '*.crt' -exec cp {} /usr/local/share/ca-certificates/ \;
        update-ca-certificates
    fi
    step "git clone of $PETRI_CHECK_COMMIT"
    git clone -q /mnt/repo /root/petri
    cd /root/petri
    git checkout -q --detach "$PETRI_CHECK_COMMIT"
    git log -1 --format='%h %s'

    stage_run() {
        # run.sh builds, installs the petri command, starts the engine, builds the default image,
        # then serves (it ends in exec, so its pid becomes the daemon's).
        ./scripts/run.sh &
        pid=$!
        waited=0
        until bash -c 'exec 3<>/dev/tcp/127.0.0.1/7878 && printf "GET /healthz HTTP/1.0\r\n\r\n" >&3 && head -1 <&3' 2>/dev/null | grep -q ' 200'; do
            if ! kill -0 "$pid" 2>/dev/null; then
                run_rc=0
                wait "$pid" || run_rc=$?
                echo "run.sh ended (exit $run_rc) before its web UI answered" >&2
                return 1
            fi
            if [ "$waited" -ge "$PETRI_CHECK_RUN_TIMEOUT" ]; then
                echo "no answer on 127.0.0.1:7878 after $waited s" >&2
                kill "$pid"
                return 1
            fi
            sleep 5
            waited=$((waited + 5))
        done
        step "the web UI answers /healthz; the installed petri command says: $(petri --version)"
        kill "$pid"
        wait "$pid" || true
    }
    status=0
    for stage in $PETRI_CHECK_STAGES; do
        case $stage in
            run) timed "run.sh (build, engine, default image, serve until /healthz)" stage_run || status=1 ;;
            test) timed "test.sh (CI=true)" ./scripts/test.sh || status=1 ;;
        esac
    done
    exit "$status"
fi

# ---- on this machine -------------------------------------------------------------------------
cd "$(dirname "$0")/../.."
. scripts/lib.sh

keep=""
reuse=""
ref=HEAD
stages=""
while [ $# -gt 0 ]; do
    case $1 in
        --keep) keep=1 ;;
        --reuse) reuse=1 ;;
        --ref) ref=$2; shift ;;
        run | test) stages="$stages $1" ;;
        *) die "unknown argument: $1 (see the comment at the top of $0)" ;;
    esac
    shift
done
[ -n "$stages" ] || stages="run test"
commit=$(git rev-parse --verify "$ref^{commit}")
git_dir=$(cd "$(git rev-parse --git-common-dir)" && pwd)
work="${PETRI_CHECK_WORK:-${TMPDIR:-/tmp}/petri-clean-debian}"
mirror="${PETRI_CHECK_MIRROR:-http://deb.debian.org/debian}"
image=petri-clean-debian:bookworm
name="petri-clean-debian-$$"
cache_vol=petri-clean-debian-cache
docker_vol=petri-clean-debian-docker

apt_install mmdebstrap
ensure_docker
mkdir -p "$work"
rm -rf "$work/out"
mkdir -p "$work/out"
log="$work/out/check.log"

cleanup() {
    docker rm -f "$name" >/dev/null 2>&1 || true
    if [ -z "$keep" ]; then
        docker volume rm "$cache_vol" "$docker_vol" >/dev/null 2>&1 || true
        docker image rm "$image" >/dev/null 2>&1 || true
    fi
    if [ -n "$STARTED_DOCKERD" ]; then as_root kill "$STARTED_DOCKERD" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
if [ -n "$reuse" ] && docker image inspect "$image" >/dev/null 2>&1; then
    say "reusing the image $image and the volumes of an earlier --keep run (not a clean check)"
else
    docker volume rm "$cache_vol" "$docker_vol" >/dev/null 2>&1 || true
    docker image rm "$image" >/dev/null 2>&1 || true # a --keep run's, else left untagged
    # What a fresh Debian 12 has beyond minbase: ca-certificates (every install has it; the proxy's
    # CA is added to it) and git (to clone the repository). No curl, sudo (the check runs as root),
    # python3, Node.js, compiler or Docker: the scripts must install those. The sources are a fresh
    # install's: bookworm, bookworm-updates and bookworm-security.
    say "building a minimal Debian 12 root filesystem (mmdebstrap --variant=minbase; about a minute)"
    nice -n 19 mmdebstrap --variant=minbase --mode=auto --quiet --include=ca-certificates,git \
        bookworm "$work/rootfs.tar" \
        "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
        "deb ${mirror%/debian}/debian-security bookworm-security main"
    docker import -c 'ENV LANG=C.UTF-8' "$work/rootfs.tar" "$image" >/dev/null
    rm -f "$work/rootfs.tar"
    echo "root filesystem and import: $(($(date +%s) - t0)) s" >"$work/out/host-timings.txt"
fi

# Its own cgroup namespace, as a machine has: otherwise a process in one of the inner engine's
# containers shows this container's id too in /proc/PID/cgroup (/docker/OUTER/docker/INNER).
set -- --name "$name" --hostname debian --init --cpus "${PETRI_CHECK_CPUS:-1.5}" --shm-size 1g \
    --cgroupns private \
    -v "$git_dir:/mnt/repo:ro" -v "$(pwd)/tests/clean-debian/run.sh:/mnt/check.sh:ro" \
    -v "$work/out:/mnt/out" \
    -v "$cache_vol:/var/cache/petri" -v "$docker_vol:/var/lib/docker" \
    -e CI=true -e PETRI_CHECK_COMMIT="$commit" -e PETRI_CHECK_STAGES="$stages" \
    -e PETRI_CHECK_RUN_TIMEOUT="${PETRI_CHECK_RUN_TIMEOUT:-10800}"
# The inner engine keeps its images on the volume (overlay2 does not work on the container's own
# overlay root). --privileged asks for every capability the kernel knows, and runc refuses where
# this machine's own bounding set lacks one; then the same rights are given one by one (all
# capabilities this machine has, no seccomp or AppArmor profile, /proc unmasked, every device
# allowed) and the container remounts /sys and its cgroups writable itself.
if docker run --rm --privileged "$image" true >/dev/null 2>&1; then
    set -- "$@" --privileged
else
    set -- "$@" --cap-add ALL --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' -e PETRI_CHECK_REMOUNT=1
    bnd=$(awk '/^CapBnd/ { print $2 }' /proc/self/status)
    bit=0
    for cap in CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP \
        LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER \
        SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE \
        SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP \
        MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ; do
        [ $(((0x$bnd >> bit) & 1)) -eq 1 ] || set -- "$@" --cap-drop "$cap"
        bit=$((bit + 1))
    done
    say "this machine cannot start a --privileged container; giving the same rights one by one"
fi
# The proxy's CA, as a user behind one sets it up:
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    set -- "$@" -v /usr/local/share/ca-certificates:/mnt/host-ca:ro \
        -e NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
        -e PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
        -e SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
fi
# The host's Rust toolchain, read-only; cargo's downloads go to a writable CARGO_HOME.
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
if [ -x "$cargo_home/bin/cargo" ] && [ -d "$rustup_home/toolchains" ]; then
    set -- "$@" -v "$cargo_home:/root/.cargo:ro" -v "$rustup_home:/root/.rustup:ro" \
        -e RUSTUP_HOME=/root/.rustup -e CARGO_HOME=/var/cache/petri/cargo-home -e RUSTUP_AUTO_INSTALL=0
    path="/root/.cargo/bin:$path"
else
    say "no Rust toolchain here to lend: run.sh installs one with rustup inside"
fi
set -- "$@" -e PATH="$path"

say "checking $(git log -1 --format='%h %s' "$commit" | cut -c1-72)"
say "stages:$stages; log: $log"
t1=$(date +%s)
rc=0
# Each step line (==> from the scripts, #### from here) gets the time of day, for how long it took.
nice -n 19 docker run "$@" "$image" nice -n 19 sh /mnt/check.sh --inside 2>&1 |
    while IFS= read -r line; do
        case $line in
            *'==>'* | *'####'*) printf '[%s] %s\n' "$(date +%H:%M:%S)" "$line" ;;
            *) printf '%s\n' "$line" ;;
        esac
    done | tee "$log" || true
rc=$(docker inspect -f '{{.State.ExitCode}}' "$name" 2>/dev/null || echo 1)
echo "container (all stages): $(($(date +%s) - t1)) s" >>"$work/out/host-timings.txt"
say "timings:"
cat "$work/out/host-timings.txt" "$work/out/timings.txt" 2>/dev/null | sed 's/^/    /' >&2
[ "$rc" -eq 0 ] || die "the clean Debian 12 check failed (exit $rc); see $log"
say "the clean Debian 12 check passed:$stages"
