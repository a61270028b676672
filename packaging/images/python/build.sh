#!/bin/sh
# Builds Petri's default Python + Jupyter image from Debian packages and PyPI alone: no image
# registry is needed. A minimal Debian root filesystem (mmdebstrap), python3 and tini from Debian,
# JupyterLab (with jupyter_server) and ipykernel from PyPI (installed with uv into /opt/venv), a non-root user,
# imported with `docker import`. The built-in pipeline components (components/) run in this image on
# pandas, scikit-learn, numpy, DuckDB, pyarrow and safetensors, also from PyPI; mlflow-skinny (the
# MLflow client without its server, with skops, which it saves scikit-learn models with) lets a job
# in the image track to Petri with `import mlflow` and lets Petri serve MLflow models.
#
# Usage: build.sh [--if-changed] [IMAGE]      (IMAGE defaults to petri/python:3.11)
#
# The image carries the label petri.recipe=<hash of this file>; with --if-changed nothing is
# rebuilt when an image with the same hash exists. CA certificates added locally under
# /usr/local/share/ca-certificates are copied in, so the build also works behind a TLS proxy.
set -eu

if_changed=""
if [ "${1:-}" = "--if-changed" ]; then if_changed=1; shift; fi
image="${1:-petri/python:3.11}"
suite="${PETRI_IMAGE_SUITE:-bookworm}"
packages="jupyterlab ipykernel pandas scikit-learn numpy duckdb pyarrow safetensors mlflow-skinny skops"

step() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

recipe_hash=$(sha256sum "$0" | cut -c1-16)
command -v docker >/dev/null 2>&1 || fail "the docker command is missing (apt-get install docker.io)"
docker version >/dev/null 2>&1 || fail "no Docker engine answers; start it with: sudo dockerd &"
if [ -n "$if_changed" ] &&
    [ "$(docker image inspect -f '{{ index .Config.Labels "petri.recipe" }}' "$image" 2>/dev/null)" = "$recipe_hash" ]; then
    step "$image is up to date (recipe $recipe_hash)"
    exit 0
fi
command -v mmdebstrap >/dev/null 2>&1 || fail "mmdebstrap is missing (apt-get install mmdebstrap)"

work=$(mktemp -d "${TMPDIR:-/tmp}/petri-image.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# uv installs the Python packages about ten times faster than pip; it comes from PyPI too.
step "[1/4] fetching uv from PyPI"
python3 -m venv "$work/uv" >/dev/null
"$work/uv/bin/pip" install --quiet --disable-pip-version-check uv
uv="$work/uv/bin/uv"

step "[2/4] building a minimal Debian $suite root filesystem (python3, tini)"
certs=""
for c in /usr/local/share/ca-certificates/*.crt; do [ -f "$c" ] && certs="$certs $c"; done
# The hooks run with $1 = the root filesystem; the host's environment does not leak in (env -i).
mmdebstrap --variant=minbase --mode=auto --quiet \
    --include=python3,ca-certificates,tini \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --setup-hook='mkdir -p "$1/usr/local/share/ca-certificates"' \
    --setup-hook="for c in $certs; do cp \"\$c\" \"\$1/usr/local/share/ca-certificates/\"; done" \
    --customize-hook="cp '$uv' \"\$1/usr/local/bin/uv\"" \
    --customize-hook='chroot "$1" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root UV_NATIVE_TLS=1 uv venv --quiet /opt/venv' \
    --customize-hook="printf '%s\n' '==> [3/4] installing $packages from PyPI'; chroot \"\$1\" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root UV_NATIVE_TLS=1 UV_NO_CACHE=1 uv pip install --quiet --python /opt/venv/bin/python $packages" \
    --customize-hook='rm -f "$1/usr/local/bin/uv"' \
    --customize-hook='chroot "$1" useradd --create-home --uid 1000 --shell /bin/bash petri' \
    --customize-hook='mkdir -p "$1/work" && chmod 1777 "$1/work"' \
    --customize-hook='rm -rf "$1/var/lib/apt/lists"/* "$1/var/cache/apt"/*' \
    "$suite" "$work/rootfs.tar"

step "[4/4] importing $image into the Docker engine"
docker import \
    -c 'ENTRYPOINT ["/usr/bin/tini", "--"]' \
    -c 'CMD ["/opt/venv/bin/jupyter", "lab", "--ip=0.0.0.0", "--no-browser"]' \
    -c 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'USER 1000' \
    -c 'WORKDIR /home/petri' \
    -c "LABEL petri.recipe=$recipe_hash" \
    -c 'LABEL petri.image=default' \
    "$work/rootfs.tar" "$image" >/dev/null
step "built $image ($(docker image inspect -f '{{ .Size }}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }'), recipe $recipe_hash)"
