#!/usr/bin/env bash
# Measures bootstrap streaming on this machine: 3 nodes on loopback (RF 3)
# load RECORDS records of VALUE_SIZE bytes at QUORUM with ringkv-bench, then
# a 4th node joins with stream_throughput_mb = THROTTLE (0: no limit). Prints
# what the new node streamed (cells, bytes, streaming time, rate), the
# data-moved ratio against the ideal 1/(n+1) of the stored cells, how long
# the whole join took, and the CPU the nodes used (from /proc/PID/stat).
#
#   deploy/bench/streaming.sh                 # 200,000 x 1 KiB, unthrottled
#   RECORDS=50000 THROTTLE=64 deploy/bench/streaming.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RECORDS="${RECORDS:-200000}"
VALUE_SIZE="${VALUE_SIZE:-1024}"
THROTTLE="${THROTTLE:-0}"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/ringkv/target}/release"
for tool in ringkv-node ringkv ringkv-bench; do
    [ -x "$bin/$tool" ] || { echo "missing $bin/$tool: cargo build --release --all-features" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "needs jq (apt-get install jq)" >&2; exit 1; }
dir="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

start() {
    local i="$1" base=$((27600 + 10 * $1)) seeds=()
    [ "$i" -gt 1 ] && seeds=(--seeds 127.0.0.1:27612)
    "$bin/ringkv-node" --node-name "n$i" --data-dir "$dir/n$i" \
        --listen-client "127.0.0.1:$base" --listen-peer "127.0.0.1:$((base + 1))" \
        --listen-gossip "127.0.0.1:$((base + 2))" --listen-http "127.0.0.1:$((base + 3))" \
        --listen-resp "127.0.0.1:$((base + 4))" \
        --replication-factor 3 --gossip-interval-ms 200 --ring-delay-ms 500 \
        --commitlog-sync periodic --anti-entropy-interval-ms 0 \
        --stream-throughput-mb "$THROTTLE" "${seeds[@]}" >>"$dir/n$i.log" 2>&1 &
    pids+=($!)
}
host() { echo "127.0.0.1:$((27600 + 10 * $1))"; }
serving() { "$bin/ringkv" --host "$(host "$1")" info >/dev/null 2>&1; }
wait_serving() {
    for _ in $(seq 1 1200); do serving "$1" && return 0; sleep 0.1; done
    echo "n$1 did not serve; log:" >&2; tail -5 "$dir/n$1.log" >&2; exit 1
}
cpu_ticks() {
    local total=0
    for pid in "${pids[@]}"; do
        read -r -a stat <"/proc/$pid/stat"
        total=$((total + stat[13] + stat[14]))
    done
    echo "$total"
}

start 1; wait_serving 1
start 2; start 3; wait_serving 2; wait_serving 3
sleep 2
"$bin/ringkv-bench" load --target "ringkv://$(host 1),$(host 2),$(host 3)" --records "$RECORDS" \
    --value-size "$VALUE_SIZE" --write-consistency QUORUM --concurrency 32 --quiet >/dev/null
stored=$((RECORDS * 3))
before=$(cpu_ticks)
started=$(date +%s.%N)
start 4; wait_serving 4
took=$(echo "$(date +%s.%N) - $started" | bc)
after=$(cpu_ticks)
streams="$("$bin/ringkv" --host "$(host 4)" --json streams)"
keys=$(jq '[.streams[] | select(.target == "n4") | .keys] | add' <<<"$streams")
bytes=$(jq '[.streams[] | select(.target == "n4") | .bytes] | add' <<<"$streams")
ms=$(jq '[.streams[] | select(.target == "n4") | .elapsed_ms] | add' <<<"$streams")
hz=$(getconf CLK_TCK)
echo "records=$RECORDS value_size=$VALUE_SIZE stream_throughput_mb=$THROTTLE"
echo "streamed: $keys cells, $bytes bytes in $ms ms of streaming: $(echo "scale=1; $bytes / 1048576 / ($ms / 1000)" | bc) MiB/s"
echo "data-moved ratio: $(echo "scale=3; $keys / ($stored / 4)" | bc) (cells streamed / ideal 1/4 of the $stored stored)"
echo "join took ${took}s (announce, agreement, drain, streaming, agreement); node CPU during it: $(echo "scale=2; ($after - $before) / $hz" | bc) s"
