# A one-node Ray cluster on loopback for the tests (sourced after lib.sh).
#
# start_ray DIR: installs `ray[default]` from PyPI into a virtual environment of its own beside
# the build cache when missing (a few minutes, once), makes a token, and starts a Ray head as the
# unprivileged user `petri-ray` with token authentication (RAY_AUTH_MODE=token), its dashboard
# (where the Jobs API answers) and every other port on free loopback ports, and exports:
#   PETRI_TEST_RAY_URL         the Jobs API's address
#   PETRI_TEST_RAY_USER        the account Ray's jobs run as
#   PETRI_TEST_RAY_TOKEN_FILE  the cluster's token
#   PETRI_TEST_RAY_SHARED      the folder the daemon and the Ray node share
#   PETRI_TEST_RAY_BIN         the `ray` command (the benchmark, a user by hand)
# stop_ray: stops the head this script started, by its PID (`ray start --block` ends what it
# started when it gets SIGTERM), then whatever is left of its process group; never `ray stop`,
# which ends every Ray process on the machine.

RAY_PID=""

ensure_ray() {
    venv="$(dirname "$CARGO_TARGET_DIR")/ray"
    # The head runs as petri-ray, so the environment is built on the system's Python (one under
    # root's home, such as pyenv's, is out of that user's reach).
    if ! as_root setpriv --reuid=petri-ray --regid=petri-ray --clear-groups sh -c \
        "cd / && '$venv/bin/python' -c 'import ray, sys; sys.exit(not ray.__version__.startswith(\"2.\"))'" \
        2>/dev/null; then
        [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import ensurepip" >/dev/null 2>&1 ||
            apt_install python3 python3-venv
        say "installing ray[default] into $venv (once; a few minutes)"
        rm -rf "$venv"
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "ray[default]>=2.40,<3"
        as_root chmod -R a+rX "$venv"
    fi
    export PETRI_TEST_RAY_BIN="$venv/bin/ray"
}

start_ray() {
    dir="$1"
    id petri-ray >/dev/null 2>&1 ||
        as_root useradd --system --create-home --home-dir /var/lib/petri-ray --shell /usr/sbin/nologin petri-ray
    ensure_ray
    command -v curl >/dev/null 2>&1 || apt_install curl
    as_root rm -rf "$dir"
    as_root mkdir -p "$dir/shared" "$dir/log"
    # Ray's sockets live in its temporary folder, whose path must stay short (108 bytes).
    tmp="$(mktemp -d /tmp/petri-ray.XXXXXX)"
    as_root chown petri-ray:petri-ray "$tmp"
    as_root chmod 755 "$dir" "$dir/shared" "$dir/log"
    python3 -c "import secrets; print(secrets.token_hex(32))" > "$dir/token"
    chmod 600 "$dir/token"
    gcs_port=$(free_port)
    dash_port=$(free_port)
    client_port=$(free_port)
    agent_port=$(free_port)
    metrics_port=$(free_port)
    say "starting a one-node Ray on loopback (head as petri-ray, Jobs API on port $dash_port; log in $dir/log)"
    # Ray reads its token from the head's ~/.ray/auth_token (kept out of every command line).
    as_root mkdir -p /var/lib/petri-ray/.ray
    as_root cp "$dir/token" /var/lib/petri-ray/.ray/auth_token
    as_root chown -R petri-ray:petri-ray /var/lib/petri-ray/.ray
    as_root chmod 600 /var/lib/petri-ray/.ray/auth_token
    RAY_PID=$(as_root sh -c "env -i PATH='$(dirname "$PETRI_TEST_RAY_BIN"):/usr/bin:/bin' \
        HOME=/var/lib/petri-ray RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 \
        setpriv --reuid=petri-ray --regid=petri-ray --clear-groups \
        setsid '$PETRI_TEST_RAY_BIN' start --head --block --node-ip-address=127.0.0.1 \
        --port=$gcs_port --dashboard-host=127.0.0.1 --dashboard-port=$dash_port \
        --ray-client-server-port=$client_port --dashboard-agent-listen-port=$agent_port \
        --metrics-export-port=$metrics_port --num-cpus=$(nproc) --disable-usage-stats \
        --include-dashboard=true --temp-dir='$tmp' \
        >'$dir/log/ray.log' 2>&1 & echo \$!")
    export PETRI_TEST_RAY_URL="http://127.0.0.1:$dash_port"
    export PETRI_TEST_RAY_USER="petri-ray"
    export PETRI_TEST_RAY_TOKEN_FILE="$dir/token"
    export PETRI_TEST_RAY_SHARED="$dir/shared"
    tries=0
    # Up once its Jobs API answers and its node has joined.
    until curl -fsS -H "Authorization: Bearer $(cat "$dir/token")" "$PETRI_TEST_RAY_URL/api/v0/nodes" 2>/dev/null |
        grep -q '"state": "ALIVE"'; do
        tries=$((tries + 1))
        if [ "$tries" -gt 240 ] || ! kill -0 "$RAY_PID" 2>/dev/null; then
            tail -n 30 "$dir/log/ray.log" >&2 || true
            die "the Ray head did not come up on $PETRI_TEST_RAY_URL (its log is above)"
        fi
        sleep 0.5
    done
}

stop_ray() {
    [ -n "$RAY_PID" ] || return 0
    say "stopping the Ray head this script started"
    as_root kill -TERM "$RAY_PID" 2>/dev/null || true
    tries=0
    while kill -0 "$RAY_PID" 2>/dev/null && [ "$tries" -lt 40 ]; do
        sleep 0.5
        tries=$((tries + 1))
    done
    # What is left of its session (setsid made the head its group's leader).
    as_root kill -KILL -- "-$RAY_PID" 2>/dev/null || true
    RAY_PID=""
}
