#!/usr/bin/env bash
# Stops the nodes started by scripts/quickstart.sh (SIGTERM, then waits).
set -euo pipefail
cd "$(dirname "$0")/.."
state="$PWD/.ringkv-local"
shopt -s nullglob
for pidfile in "$state"/*.pid; do
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        echo "stopped $(basename "$pidfile" .pid)"
    fi
    rm -f "$pidfile"
done
