#!/usr/bin/env bash
# Builds the image and starts the Docker cluster (3 nodes, or 5 with
# `up.sh 5`), then waits until node 1 sees every node UP and NORMAL.
# On a running cluster that holds data, `up.sh 5` grows it (the new nodes
# join one at a time, streaming their ranges) and `up.sh 3` shrinks a
# 5-node cluster back (nodes 5 and 4 decommission, streaming their ranges
# to the others, and their containers and volumes are removed).
# `--monitoring` also starts the compose file's `monitoring` profile:
# Prometheus on 127.0.0.1:9090 scraping every node (its image is built from
# Debian's prometheus package by build-prometheus-image.sh).
# Use the host's shell against it: ringkv --host 127.0.0.1:7400 status
set -euo pipefail
cd "$(dirname "$0")"
source lib.sh
count=3
profiles=()
for arg in "$@"; do
    case "$arg" in
        3 | 5) count="$arg" ;;
        --monitoring) profiles=(--profile monitoring) ;;
        *) echo "usage: deploy/docker/up.sh [3|5] [--monitoring]" >&2; exit 2 ;;
    esac
done
project="${RINGKV_PROJECT:-ringkv}"
files=(-f docker-compose.yml)
[ "$count" = 5 ] && files+=(-f docker-compose.5nodes.yml)
shell="${CARGO_TARGET_DIR:-$HOME/.cache/ringkv/target}/release/ringkv"
host="127.0.0.1:${RINGKV_CLIENT_PORT:-7400}"
./build-image.sh
[ "${#profiles[@]}" -gt 0 ] && ./build-prometheus-image.sh
if [ "$count" = 3 ]; then
    # Shrinking: decommission the extra nodes that run, newest first.
    for n in 5 4; do
        running=$(docker ps -q \
            --filter "label=com.docker.compose.project=$project" \
            --filter "label=com.docker.compose.service=ringkv-$n")
        if [ -n "$running" ]; then
            echo "decommissioning ringkv-$n"
            "$shell" --host "${RINGKV_SUBNET_PREFIX:-172.30.247}.1$n:7400" decommission
            compose -p "$project" -f docker-compose.yml -f docker-compose.5nodes.yml \
                rm -s -f -v "ringkv-$n"
            # A decommissioned node refuses its old data: a later grow
            # starts it fresh.
            # (compose v1 strips dashes from the project name, v2 keeps them)
            for volume in "${project}_ringkv-$n-data" "${project//-/}_ringkv-$n-data"; do
                docker volume rm "$volume" >/dev/null 2>&1 || true
            done
        fi
    done
fi
compose -p "$project" "${files[@]}" "${profiles[@]}" up -d
for _ in $(seq 1 600); do
    normal=$("$shell" --host "$host" status 2>/dev/null | grep -c '^UP *NORMAL' || true)
    if [ "$normal" -ge "$count" ]; then
        "$shell" --host "$host" status
        echo "ringkv is up: $shell --host $host"
        exit 0
    fi
    sleep 0.5
done
echo "ringkv: the cluster did not reach $count nodes within 300 s; see: docker logs ${project}_ringkv-1_1" >&2
exit 1
