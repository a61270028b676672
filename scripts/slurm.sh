# A one-node Slurm 22.05 cluster on loopback for the tests (sourced after lib.sh).
#
# start_slurm DIR: installs Debian's slurm-wlm, slurmrestd and munge when missing, writes a
# configuration of its own under DIR (munge key, JWT key, slurm.conf, state, logs), starts
# munged, slurmctld and slurmd as root and slurmrestd as the unprivileged user `petri-slurm`
# (it refuses root) on free loopback ports, and exports what the tests read:
#   PETRI_TEST_SLURM_URL         slurmrestd's address (openapi/v0.0.38, JWT)
#   PETRI_TEST_SLURM_USER        the account jobs run as
#   PETRI_TEST_SLURM_TOKEN_FILE  a JWT for that account (`scontrol token`)
#   PETRI_TEST_SLURM_SHARED      the folder the daemon and the node share
#   SLURM_CONF                   for sbatch, squeue and scontrol (the benchmark, a user by hand)
# stop_slurm: stops what start_slurm started, by the PIDs it recorded; nothing else.

SLURM_PIDS=""

start_slurm() {
    dir="$1"
    # The JWT plugin slurmrestd and slurmctld authenticate with is only recommended by slurm-wlm,
    # and apt_install takes no recommends.
    apt_install slurm-wlm slurmrestd munge slurm-wlm-jwt-plugin
    command -v python3 >/dev/null 2>&1 || apt_install python3
    command -v curl >/dev/null 2>&1 || apt_install curl
    id petri-slurm >/dev/null 2>&1 ||
        as_root useradd --system --no-create-home --shell /usr/sbin/nologin petri-slurm
    as_root rm -rf "$dir"
    as_root mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge" "$dir/run" "$dir/shared"
    as_root chmod 755 "$dir" "$dir/run" "$dir/log"
    as_root chmod 700 "$dir/munge"
    as_root chmod 755 "$dir/shared"
    as_root sh -c "head -c 1024 /dev/urandom > '$dir/munge/munge.key' && chmod 400 '$dir/munge/munge.key'"
    as_root sh -c "head -c 32 /dev/urandom > '$dir/jwt.key' && chmod 600 '$dir/jwt.key'"
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    rest_port=$(free_port)
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 / 2 }' /proc/meminfo)
    as_root sh -c "cat > '$dir/slurm.conf'" <<EOF
ClusterName=petri-test
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/run/munge.socket
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$dir/jwt.key
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    as_root chmod 644 "$dir/slurm.conf"
    if ! as_root setpriv --reuid=petri-slurm --regid=petri-slurm --clear-groups test -r "$dir/slurm.conf"; then
        die "petri-slurm cannot read $dir/slurm.conf (slurmrestd runs as that user): let others pass through $(dirname "$dir")"
    fi
    export SLURM_CONF="$dir/slurm.conf"
    say "starting a one-node Slurm on loopback (munged, slurmctld, slurmd; slurmrestd as petri-slurm on port $rest_port; logs in $dir/log)"
    as_root munged --force --socket="$dir/run/munge.socket" --key-file="$dir/munge/munge.key" \
        --log-file="$dir/log/munged.log" --pid-file="$dir/run/munged.pid" --seed-file="$dir/munge/seed"
    SLURM_PIDS="$(as_root cat "$dir/run/munged.pid")"
    as_root env SLURM_CONF="$SLURM_CONF" slurmctld -f "$SLURM_CONF"
    as_root env SLURM_CONF="$SLURM_CONF" slurmd -f "$SLURM_CONF" -N localhost
    rest_pid=$(as_root sh -c "SLURM_CONF='$SLURM_CONF' SLURM_JWT=daemon setsid slurmrestd -f '$SLURM_CONF' \
        -u petri-slurm -g petri-slurm -s openapi/v0.0.38 -a rest_auth/jwt 127.0.0.1:$rest_port \
        >'$dir/log/slurmrestd.log' 2>&1 & echo \$!")
    tries=0
    # sinfo waits long on a controller that is not there: each ask is bounded, and a controller
    # that exited (a fatal error in its log) ends the wait at once.
    until [ -s "$dir/run/slurmctld.pid" ] && [ -s "$dir/run/slurmd.pid" ] &&
        timeout 5 sinfo -h -o %t 2>/dev/null | grep -q idle; do
        tries=$((tries + 1))
        ctld_gone=""
        if [ -s "$dir/run/slurmctld.pid" ] && ! as_root kill -0 "$(as_root cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
            ctld_gone=1
        fi
        if [ "$tries" -gt 120 ] || [ -n "$ctld_gone" ]; then
            # What did start is stopped with the rest (stop_slurm, from the caller's trap).
            for f in slurmctld slurmd; do
                [ -s "$dir/run/$f.pid" ] && SLURM_PIDS="$SLURM_PIDS $(as_root cat "$dir/run/$f.pid")"
            done
            SLURM_PIDS="$SLURM_PIDS $rest_pid"
            tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
            die "the one-node Slurm did not come up (its logs are above)"
        fi
        sleep 0.5
    done
    SLURM_PIDS="$SLURM_PIDS $(as_root cat "$dir/run/slurmctld.pid") $(as_root cat "$dir/run/slurmd.pid") $rest_pid"
    as_root env SLURM_CONF="$SLURM_CONF" scontrol token username=petri-slurm lifespan=43200 |
        sed 's/^SLURM_JWT=//' > "$dir/token"
    export PETRI_TEST_SLURM_URL="http://127.0.0.1:$rest_port"
    export PETRI_TEST_SLURM_USER="petri-slurm"
    export PETRI_TEST_SLURM_TOKEN_FILE="$dir/token"
    export PETRI_TEST_SLURM_SHARED="$dir/shared"
    tries=0
    until curl -fsS -H "X-SLURM-USER-NAME: petri-slurm" -H "X-SLURM-USER-TOKEN: $(cat "$dir/token")" \
        "$PETRI_TEST_SLURM_URL/slurm/v0.0.38/ping" >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 60 ]; then
            tail -n 20 "$dir/log/slurmrestd.log" >&2 || true
            die "slurmrestd does not answer on $PETRI_TEST_SLURM_URL (its log is above)"
        fi
        sleep 0.5
    done
}

stop_slurm() {
    [ -n "$SLURM_PIDS" ] || return 0
    say "stopping the one-node Slurm this script started"
    for pid in $SLURM_PIDS; do
        as_root kill "$pid" 2>/dev/null || true
    done
    SLURM_PIDS=""
}
