# A Kubernetes API server on loopback for the tests (sourced after lib.sh).
#
# No registry ships a kube-apiserver, so ensure_kube_apiserver builds one from Debian's own
# `kubernetes` source package (1.20) with Debian's Go 1.19, once, and caches the binary beside
# the build cache (the first build takes about ten minutes on two cores). One fix is applied
# before the build: the bundled modern-go/reflect2 1.0.1 crashes under Go 1.18 and newer, so
# Debian's 1.0.2 replaces it in vendor/. (`make` regenerates the OpenAPI definitions with the
# bundled openapi-gen on its way.)
#
# start_kube DIR: etcd (Debian's etcd-server) and kube-apiserver on free loopback ports, TLS with
# a certificate authority of its own, a static token for an admin, and exports:
#   PETRI_TEST_KUBE_URL         the API server's address
#   PETRI_TEST_KUBE_KUBECONFIG  a kubeconfig for it (the authority and the admin's token)
#   PETRI_TEST_KUBE_TOKEN_FILE  the admin's bearer token alone
#   PETRI_TEST_KUBE_REGISTRY    the cluster's image registry (Debian's docker-registry, plain HTTP
#                               on loopback) holding one tiny image, petri/tiny:1, pushed there
#                               with Docker (which the test command has started)
# There is no kubelet and no controller manager: Jobs are accepted, validated, watched and
# deleted, and nothing runs them (a test patches a Job's status in the controller's place).
# stop_kube: stops what start_kube started, by PID.

KUBE_PIDS=""

ensure_kube_apiserver() {
    cache="$(dirname "$CARGO_TARGET_DIR")/kube"
    export PETRI_KUBE_APISERVER="$cache/kube-apiserver"
    [ -x "$PETRI_KUBE_APISERVER" ] && "$PETRI_KUBE_APISERVER" --version >/dev/null 2>&1 && return 0
    apt_install golang-1.19-go golang-github-modern-go-reflect2-dev etcd-server dpkg-dev rsync curl openssl make
    version="$(apt-cache show kubernetes-client | sed -n 's/^Version: //p' | head -n 1)"
    [ -n "$version" ] || die "Debian offers no kubernetes package to build kube-apiserver from"
    say "building kube-apiserver $version from Debian's source package (once; about ten minutes)"
    pool="http://deb.debian.org/debian/pool/main/k/kubernetes"
    rm -rf "$cache/dl" "$cache/src"
    mkdir -p "$cache/dl"
    (
        cd "$cache/dl"
        curl -fsSO "$pool/kubernetes_$version.dsc"
        for f in $(sed -n '/^Files:/,/^$/p' "kubernetes_$version.dsc" | awk 'NF == 3 { print $3 }'); do
            curl -fsSO "$pool/$f"
        done
        dpkg-source --no-check -x "kubernetes_$version.dsc" "$cache/src" >/dev/null
    )
    rm -rf "$cache/src/vendor/github.com/modern-go/reflect2"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$cache/src/vendor/github.com/modern-go/reflect2"
    (
        cd "$cache/src"
        PATH="/usr/lib/go-1.19/bin:$PATH" GOFLAGS=-mod=vendor GOCACHE="$cache/gocache" HOME="$cache" \
            make WHAT=cmd/kube-apiserver >"$cache/build.log" 2>&1
    ) || { tail -n 30 "$cache/build.log" >&2; die "building kube-apiserver failed (the log is above)"; }
    cp "$cache/src/_output/local/bin/linux/amd64/kube-apiserver" "$PETRI_KUBE_APISERVER"
    rm -rf "$cache/src" "$cache/dl" "$cache/gocache" "$cache"/kubernetes_*
}

start_kube() {
    dir="$1"
    ensure_kube_apiserver
    command -v etcd >/dev/null 2>&1 || apt_install etcd-server
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    if ! command -v docker-registry >/dev/null 2>&1; then
        apt_install docker-registry
        # The package starts a registry of its own on every interface (port 5000) where systemd
        # runs: the tests start theirs on loopback, so the one just installed is stopped.
        if [ -d /run/systemd/system ]; then
            as_root systemctl disable --now docker-registry >/dev/null 2>&1 || true
        fi
    fi
    rm -rf "$dir"
    mkdir -p "$dir/pki" "$dir/log"
    (
        cd "$dir/pki"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=petri-test-ca 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=kube-apiserver 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
            -extfile san.ext 2>/dev/null
        openssl genrsa -out sa.key 2048 2>/dev/null
        chmod 600 ./*.key
    )
    python3 -c "import secrets; print(secrets.token_hex(24))" > "$dir/token"
    chmod 600 "$dir/token"
    printf '%s,petri-admin,1000,system:masters\n' "$(cat "$dir/token")" > "$dir/tokens.csv"
    chmod 600 "$dir/tokens.csv"
    etcd_port=$(free_port)
    peer_port=$(free_port)
    api_port=$(free_port)
    say "starting a Kubernetes API server on loopback (etcd, kube-apiserver 1.20 on port $api_port; logs in $dir/log)"
    setsid etcd --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "default=http://127.0.0.1:$peer_port" >"$dir/log/etcd.log" 2>&1 &
    KUBE_PIDS="$!"
    setsid "$PETRI_KUBE_APISERVER" --etcd-servers="http://127.0.0.1:$etcd_port" --bind-address=127.0.0.1 \
        --secure-port="$api_port" --tls-cert-file="$dir/pki/server.crt" --tls-private-key-file="$dir/pki/server.key" \
        --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
        --service-account-key-file="$dir/pki/sa.key" --service-account-signing-key-file="$dir/pki/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=10.0.0.0/24 \
        --advertise-address=127.0.0.1 --cert-dir="$dir/pki" >"$dir/log/kube-apiserver.log" 2>&1 &
    KUBE_PIDS="$KUBE_PIDS $!"
    reg_port=$(free_port)
    cat > "$dir/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/registry
http:
  addr: 127.0.0.1:$reg_port
EOF
    setsid docker-registry serve "$dir/registry.yml" >"$dir/log/registry.log" 2>&1 &
    KUBE_PIDS="$KUBE_PIDS $!"
    export PETRI_TEST_KUBE_REGISTRY="127.0.0.1:$reg_port"
    export PETRI_TEST_KUBE_URL="https://127.0.0.1:$api_port"
    export PETRI_TEST_KUBE_TOKEN_FILE="$dir/token"
    export PETRI_TEST_KUBE_KUBECONFIG="$dir/kubeconfig"
    cat > "$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: petri-test
  cluster:
    server: $PETRI_TEST_KUBE_URL
    certificate-authority-data: $(base64 -w0 "$dir/pki/ca.crt")
users:
- name: petri-admin
  user:
    token: $(cat "$dir/token")
contexts:
- name: petri-test
  context:
    cluster: petri-test
    user: petri-admin
current-context: petri-test
EOF
    chmod 600 "$dir/kubeconfig"
    tries=0
    until curl -fsS --cacert "$dir/pki/ca.crt" -H "Authorization: Bearer $(cat "$dir/token")" \
        "$PETRI_TEST_KUBE_URL/apis/batch/v1/namespaces/default/jobs" >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 240 ]; then
            tail -n 20 "$dir/log/etcd.log" "$dir/log/kube-apiserver.log" >&2 || true
            die "the Kubernetes API server did not come up on $PETRI_TEST_KUBE_URL (its logs are above)"
        fi
        sleep 0.5
    done
    tries=0
    until curl -fsS "http://$PETRI_TEST_KUBE_REGISTRY/v2/" >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -le 60 ] || die "the image registry did not come up on $PETRI_TEST_KUBE_REGISTRY (see $dir/log/registry.log)"
        sleep 0.5
    done
    # One tiny image (an empty file system) in the cluster's registry; Docker pushes to a
    # registry on loopback over plain HTTP.
    tiny="$PETRI_TEST_KUBE_REGISTRY/petri/tiny:1"
    tar -cf - --files-from /dev/null | docker import - "$tiny" >/dev/null
    docker push -q "$tiny" >/dev/null || die "cannot push $tiny to the test registry"
    docker rmi "$tiny" >/dev/null 2>&1 || true
}

stop_kube() {
    [ -n "$KUBE_PIDS" ] || return 0
    say "stopping the Kubernetes API server, etcd and the image registry this script started"
    for pid in $KUBE_PIDS; do
        kill "$pid" 2>/dev/null || true
    done
    KUBE_PIDS=""
}
