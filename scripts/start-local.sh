#!/usr/bin/env bash
# Starts a local ringkv cluster on loopback (default 3 nodes, at most 8) with
# replication factor 3 (or the node count, if smaller). Node i listens on
#   client 74i0, peer 74i1, gossip 74i2 (i = 0..7), HTTP 748i
# and node 1 is the seed of the others. Data and logs live in .ringkv-local/.
# Expects the release binaries (scripts/quickstart.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-3}"
if ! [[ "$count" =~ ^[1-8]$ ]]; then
    echo "usage: scripts/start-local.sh [NODES, 1-8]" >&2
    exit 2
fi
bin="${CARGO_TARGET_DIR:-$HOME/.cache/ringkv/target}/release"
if [ ! -x "$bin/ringkv-node" ]; then
    echo "ringkv: $bin/ringkv-node not found; run scripts/quickstart.sh first" >&2
    exit 1
fi
state="$PWD/.ringkv-local"
mkdir -p "$state"
rf=$(( count < 3 ? count : 3 ))

start_node() {
    local i="$1" base=$((7400 + 10 * ($1 - 1)))
    local seeds=()
    [ "$i" -gt 1 ] && seeds=(--seeds 127.0.0.1:7402)
    "$bin/ringkv-node" --node-name "node$i" --data-dir "$state/node$i" \
        --listen-client "127.0.0.1:$base" --listen-peer "127.0.0.1:$((base + 1))" \
        --listen-gossip "127.0.0.1:$((base + 2))" --listen-http "127.0.0.1:$((7480 + i - 1))" \
        --listen-resp "127.0.0.1:$((7479 + 10 * (i - 1)))" \
        --replication-factor "$rf" "${seeds[@]}" \
        >>"$state/node$i.log" 2>&1 &
    echo $! >"$state/node$i.pid"
}

wait_ready() {
    local i="$1" port=$((7400 + 10 * ($1 - 1)))
    for _ in $(seq 1 300); do
        if "$bin/ringkv" --host "127.0.0.1:$port" info >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$(cat "$state/node$i.pid")" 2>/dev/null; then
            echo "node$i exited; last log lines:" >&2
            tail -n 5 "$state/node$i.log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "node$i did not start within 60 s; see $state/node$i.log" >&2
    return 1
}

start_node 1
wait_ready 1
for i in $(seq 2 "$count"); do
    start_node "$i"
done
for i in $(seq 2 "$count"); do
    wait_ready "$i"
done
# Gossip needs a moment to tell node1 that the others own their tokens.
for _ in $(seq 1 150); do
    normal=$("$bin/ringkv" --host 127.0.0.1:7400 status 2>/dev/null | grep -c '^UP *NORMAL' || true)
    [ "$normal" -ge "$count" ] && break
    sleep 0.2
done
echo "started $count nodes (replication factor $rf); client ports $(seq -s ' ' 7400 10 $((7400 + 10 * (count - 1))))"
