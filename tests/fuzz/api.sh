#!/bin/sh
# Fuzzes the daemon's API from its own OpenAPI document with schemathesis: no request may get a
# server error, answers must match the document, auth may not be skippable, and afterwards the
# daemon must still be healthy with no panic in its log.
# Usage: tests/fuzz/api.sh PETRI_BINARY PYTHON_WITH_SCHEMATHESIS
set -eu
bin=$1
py=$2
home=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$home"' EXIT
# Notebooks fuzzed here must not start real servers: their default image does not exist.
printf '[notebooks]\nimage = "petri/fuzz-no-such-image:0"\n' > "$home/petri.toml"
PETRI_HOME=$home "$bin" serve --listen 127.0.0.1:0 2>"$home/daemon.log" &
pid=$!
for _ in $(seq 200); do [ -s "$home/daemon.addr" ] && break; sleep 0.05; done
base=$(cat "$home/daemon.addr")
token=$(cat "$home/token")
curl_json() { "$py" -c 'import sys,urllib.request; r=urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer "+sys.argv[2]}); print(urllib.request.urlopen(r).read().decode())' "$@"; }
curl_json "$base/api/v1/openapi.json" "$token" > "$home/openapi.json"
# The two streams never end by design, and an image build takes minutes; everything else is fuzzed.
"$py" -m schemathesis.cli run "$home/openapi.json" --url "$base" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth \
    --exclude-path-regex 'stream|events|images/build' \
    --max-examples 40 --seed 7 --no-color
"$py" -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1]).read()' "$base/healthz"
if grep -q panicked "$home/daemon.log"; then
    echo "the daemon panicked:" >&2
    cat "$home/daemon.log" >&2
    exit 1
fi
echo "API fuzzing: no server error, no panic, daemon healthy"
