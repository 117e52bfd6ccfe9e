#!/usr/bin/env bash
# Builds the image and starts the Docker cluster (3 nodes, or 5 with
# `up.sh 5`), then waits until node 1 sees every node UP and NORMAL.
# Use the host's shell against it: ringkv --host 127.0.0.1:7400 status
set -euo pipefail
cd "$(dirname "$0")"
source lib.sh
count="${1:-3}"
files=(-f docker-compose.yml)
case "$count" in
    3) ;;
    5) files+=(-f docker-compose.5nodes.yml) ;;
    *) echo "usage: deploy/docker/up.sh [3|5]" >&2; exit 2 ;;
esac
./build-image.sh
compose -p "${RINGKV_PROJECT:-ringkv}" "${files[@]}" up -d
shell="${CARGO_TARGET_DIR:-$HOME/.cache/ringkv/target}/release/ringkv"
host="127.0.0.1:${RINGKV_CLIENT_PORT:-7400}"
for _ in $(seq 1 300); do
    normal=$("$shell" --host "$host" status 2>/dev/null | grep -c '^UP *NORMAL' || true)
    if [ "$normal" -ge "$count" ]; then
        "$shell" --host "$host" status
        echo "ringkv is up: $shell --host $host"
        exit 0
    fi
    sleep 0.5
done
echo "ringkv: the cluster did not form within 150 s; see: docker logs ${RINGKV_PROJECT:-ringkv}_ringkv-1_1" >&2
exit 1
