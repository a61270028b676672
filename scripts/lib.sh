# Shared by scripts/run.sh and scripts/test.sh: say what is done, install only what is missing.

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root to run: $*"; fi
}

APT_UPDATED=""
# apt_install PKG... : installs the Debian/Ubuntu packages that are not installed yet.
apt_install() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "please install:$missing"
    say "installing system packages:$missing"
    if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

ensure_toolchain() {
    # protoc: candle-onnx compiles ONNX's protobuf schema when it builds.
    apt_install ca-certificates gcc libc6-dev pkg-config protobuf-compiler
    # The desktop window (Tauri) links GTK and WebKitGTK; a server build (cargo build
    # --no-default-features) needs none of them.
    if [ -z "${PETRI_NO_DESKTOP:-}" ]; then
        apt_install libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev \
            libayatana-appindicator3-dev librsvg2-dev
    fi
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        apt_install curl
        say "installing the Rust toolchain (rustup, stable)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy >&2
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    for c in fmt clippy; do
        if ! cargo "$c" --version >/dev/null 2>&1; then
            command -v rustup >/dev/null 2>&1 || die "cargo $c is missing and there is no rustup to add it"
            comp=$c; [ "$c" = fmt ] && comp=rustfmt
            say "adding the Rust component $comp"
            rustup component add "$comp" >&2
        fi
    done
    ensure_cache
}

# ensure_cache: one build cache outside the checkout, shared by every clone on this machine
# (CARGO_TARGET_DIR); Node, tools and test homes live next to it.
ensure_cache() {
    if [ -z "${CARGO_TARGET_DIR:-}" ]; then
        if mkdir -p /var/cache/petri/target 2>/dev/null && [ -w /var/cache/petri/target ]; then
            export CARGO_TARGET_DIR=/var/cache/petri/target
        else
            export CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/petri/target"
        fi
    fi
}

# ensure_docker: the Docker engine (Debian's docker.io), started when none answers. Sets
# STARTED_DOCKERD to the pid of an engine started here.
STARTED_DOCKERD=""
ensure_docker() {
    command -v dockerd >/dev/null 2>&1 || apt_install docker.io
    command -v docker >/dev/null 2>&1 || apt_install docker.io
    docker version >/dev/null 2>&1 && return 0
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        say "starting the Docker engine (systemctl start docker)"
        as_root systemctl start docker || true
    fi
    if ! docker version >/dev/null 2>&1; then
        log="${TMPDIR:-/tmp}/petri-dockerd.log"
        say "starting the Docker engine (dockerd; its log: $log)"
        STARTED_DOCKERD=$(as_root sh -c "dockerd >'$log' 2>&1 & echo \$!")
    fi
    tries=0
    until docker version >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 60 ]; then
            docker version >&2 || true
            die "the Docker engine does not answer (if it runs, add yourself to the docker group)"
        fi
        sleep 0.5
    done
}

# ensure_default_image: Petri's default Python + Jupyter image, built from Debian packages and
# PyPI when missing or when its recipe changed.
ensure_default_image() {
    apt_install mmdebstrap python3-venv
    packaging/images/python/build.sh --if-changed "${1:-petri/python:3.11}" >&2
}

# ensure_node: Node.js 20 or newer, with its npm, first on PATH for the rest of the script (the
# browser tests' playwright-core needs 20; Debian 12 has 18). The machine's own is used when it is
# new enough; otherwise Node 20 (the npm registry's node-linux-<arch> package: the official
# binary) and npm 10 are unpacked once into the cache, fetched with whatever npm there is (Debian's
# when none).
NODE_MAJOR=20
node_major() {
    node_v=$(node --version 2>/dev/null) || { echo 0; return 0; }
    node_v=${node_v#v}
    case ${node_v%%.*} in '' | *[!0-9]*) echo 0 ;; *) echo "${node_v%%.*}" ;; esac
}
ensure_node() {
    if [ "$(node_major)" -ge "$NODE_MAJOR" ] && command -v npm >/dev/null 2>&1; then return 0; fi
    ensure_cache
    node_dir="$(dirname "$CARGO_TARGET_DIR")/node"
    if [ ! -x "$node_dir/bin/node" ] || [ ! -x "$node_dir/bin/npm" ] ||
        [ "$("$node_dir/bin/node" --version 2>/dev/null | sed 's/^v//; s/\..*//')" != "$NODE_MAJOR" ]; then
        install_node "$node_dir"
    fi
    export PATH="$node_dir/bin:$PATH"
    # Debian's Node trusts the system's certificates (a proxy's CA added with update-ca-certificates
    # included); the official binary carries its own list, so point it at the system's too.
    if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
    fi
    [ "$(node_major)" -ge "$NODE_MAJOR" ] || die "$node_dir/bin/node is not Node.js $NODE_MAJOR"
    say "using Node.js $(node --version) and npm $(npm --version) from $node_dir"
}
# install_node DIR: Node $NODE_MAJOR and npm 10 from the npm registry into DIR (the layout of
# nodejs.org's tarballs: bin/node, bin/npm, lib/node_modules/npm).
install_node() {
    [ "$(uname -s)" = Linux ] || die "please install Node.js $NODE_MAJOR or newer"
    case "$(uname -m)" in
        x86_64 | amd64) arch=x64 ;;
        aarch64 | arm64) arch=arm64 ;;
        armv7l) arch=armv7l ;;
        ppc64le) arch=ppc64le ;;
        s390x) arch=s390x ;;
        *) die "no Node.js $NODE_MAJOR build for $(uname -m) on the npm registry; please install Node.js $NODE_MAJOR or newer" ;;
    esac
    if command -v node >/dev/null 2>&1 && [ "$(node_major)" -lt "$NODE_MAJOR" ]; then
        say "this machine's Node.js is $(node --version); the browser tests need $NODE_MAJOR or newer"
    fi
    # Any npm can fetch the two packages (npm pack: no install scripts run); Debian's when none.
    command -v npm >/dev/null 2>&1 || apt_install npm
    say "installing Node.js $NODE_MAJOR (node-linux-$arch) and npm 10 from the npm registry into $1"
    mkdir -p "$(dirname "$1")"
    node_new=$(mktemp -d "$1.new.XXXXXX")
    (cd "$node_new" && npm pack --loglevel=error "node-linux-$arch@$NODE_MAJOR" npm@10 >/dev/null) ||
        { rm -rf "$node_new"; die "could not fetch Node.js $NODE_MAJOR from the npm registry"; }
    mkdir -p "$node_new/node/lib/node_modules/npm"
    tar -xzf "$node_new"/node-linux-"$arch"-*.tgz -C "$node_new/node" --strip-components=1
    tar -xzf "$node_new"/npm-*.tgz -C "$node_new/node/lib/node_modules/npm" --strip-components=1
    ln -s ../lib/node_modules/npm/bin/npm-cli.js "$node_new/node/bin/npm"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js "$node_new/node/bin/npx"
    if ! "$node_new/node/bin/node" --version >/dev/null; then
        rm -rf "$node_new"
        die "the Node.js from the npm registry does not run on this machine"
    fi
    rm -rf "$1"
    mv "$node_new/node" "$1"
    rm -rf "$node_new"
}

# ensure_ui: the web UI built into ui/dist (Node.js 20 or newer, see ensure_node; packages from
# the npm registry, pinned by ui/package-lock.json). The Rust build embeds the result.
ensure_ui() {
    ensure_node
    if [ ! -f ui/node_modules/.package-lock.json ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
        say "installing the web UI's packages (npm ci)"
        (cd ui && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
    say "building the web UI (TypeScript check, Vite)"
    (cd ui && npm run --silent build >&2)
}

# The build cache keeps every linked test binary and program it ever made (200-300 MB each in a
# debug build); without pruning it filled a 90 GB disk in a day. Keeps the two newest of each
# name; cargo links again whatever it still needs.
prune_build_cache() {
    # Incremental caches grow by gigabytes per build and a fresh clone's paths never reuse them:
    # the test command builds without them, and old ones go.
    for dir in "$CARGO_TARGET_DIR/debug/incremental" "$CARGO_TARGET_DIR/release/incremental"; do
        [ -d "$dir" ] && find "$dir" -mindepth 1 -maxdepth 1 -mtime +1 -exec rm -rf {} +
    done
    for dir in "$CARGO_TARGET_DIR/debug/deps" "$CARGO_TARGET_DIR/release/deps"; do
        [ -d "$dir" ] || continue
        # shellcheck disable=SC2012 # names are cargo's: letters, digits, _ and a hex hash
        ls -t "$dir" | grep -E '^[A-Za-z0-9_]+-[0-9a-f]{16}$' |
            awk '{ n = $0; sub(/-[0-9a-f]{16}$/, "", n); if (seen[n]++ >= 2) print }' |
            while read -r f; do rm -f "$dir/$f"; done
    done
}

# A TCP port nothing listens on now, on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
