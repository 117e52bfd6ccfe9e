#!/usr/bin/env bash
# Thread sizing on a small machine: three ringkv nodes (N = 3) and the load
# generator on this machine, YCSB workload a at QUORUM, each node started
# with the flags of one configuration; configurations alternate over
# ROUNDS. Server CPU per operation is the sum over the three nodes of
# utime + stime from /proc/PID/stat, before and after each run.
#
#   deploy/bench/threads.sh                      # defaults vs one worker thread
#   CONFIGS="default|--worker-threads 1|--worker-threads 1 --storage-background-jobs 1" \
#       ROUNDS=3 DURATION=20 deploy/bench/threads.sh
#
# Ports 17900-17949. Prints one markdown row per configuration.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/prereqs.sh
ensure_prereqs

CONFIGS="${CONFIGS:-default|--worker-threads 1}"
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-15}"
RECORDS="${RECORDS:-50000}"
CONCURRENCY="${CONCURRENCY:-32}"

cargo build --release --workspace --all-features --bins --locked >/dev/null
bin="$CARGO_TARGET_DIR/release"
work="$(mktemp -d /tmp/ringkv-threads.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)
IFS='|' read -r -a configs <<<"$CONFIGS"

# run CONFIG_INDEX ROUND: one measured run; appends "index ops cpu_ticks p50 p99" to rows.
run() {
    local index="$1" round="$2" flags=()
    [ "${configs[$index]}" != default ] && read -r -a flags <<<"${configs[$index]}"
    local dir="$work/c$index-r$round" node_pids=()
    for i in 1 2 3; do
        local base=$((17900 + 10 * i)) seeds=()
        [ "$i" -gt 1 ] && seeds=(--seeds 127.0.0.1:17912)
        "$bin/ringkv-node" "${flags[@]}" --node-name "t$i" --data-dir "$dir/t$i" \
            --listen-client "127.0.0.1:$base" --listen-peer "127.0.0.1:$((base + 1))" \
            --listen-gossip "127.0.0.1:$((base + 2))" --listen-http "127.0.0.1:$((base + 3))" \
            --listen-resp "127.0.0.1:$((base + 4))" --replication-factor 3 --ring-delay-ms 200 \
            "${seeds[@]}" >"$dir-t$i.log" 2>&1 &
        node_pids+=($!)
        pids+=($!)
        [ "$i" = 1 ] && sleep 2
    done
    for _ in $(seq 1 150); do
        [ "$("$bin/ringkv" --host 127.0.0.1:17910 status 2>/dev/null | grep -c '^UP *NORMAL')" -ge 3 ] && break
        sleep 0.2
    done
    local targets=ringkv://127.0.0.1:17910,127.0.0.1:17920,127.0.0.1:17930
    "$bin/ringkv-bench" load --target "$targets" --records "$RECORDS" --concurrency "$CONCURRENCY" \
        --quiet --write-consistency QUORUM >/dev/null
    local before=0 after=0 pid
    for pid in "${node_pids[@]}"; do before=$((before + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
    "$bin/ringkv-bench" run --target "$targets" --records "$RECORDS" --workload a \
        --duration "$DURATION" --concurrency "$CONCURRENCY" --read-consistency QUORUM \
        --write-consistency QUORUM --quiet --json "$dir.json" >/dev/null
    for pid in "${node_pids[@]}"; do after=$((after + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
    for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait "${node_pids[@]}" 2>/dev/null || true
    python3 - "$dir.json" "$index" "$((after - before))" >>"$work/rows" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
ops = j["ops"]
p50 = max(v.get("p50_us", 0) for v in ops.values()) / 1000
p99 = max(v.get("p99_us", 0) for v in ops.values()) / 1000
print(sys.argv[2], j["operations"], j["throughput_ops_per_second"], sys.argv[3], p50, p99)
PY
}

for round in $(seq 1 "$ROUNDS"); do
    for index in "${!configs[@]}"; do
        echo "round $round: ${configs[$index]}" >&2
        run "$index" "$round"
    done
done

CONFIGS="$CONFIGS" HZ="$hz" python3 - "$work/rows" <<'PY'
import os, sys
configs = os.environ["CONFIGS"].split("|")
hz = int(os.environ["HZ"])
rows = [line.split() for line in open(sys.argv[1])]
print("| node flags | ops/s (runs) | mean ops/s | CPU µs/op (3 nodes) | worst p50 ms | worst p99 ms |")
print("|---|---|---:|---:|---:|---:|")
for i, config in enumerate(configs):
    mine = [r for r in rows if int(r[0]) == i]
    ops = [float(r[2]) for r in mine]
    cpu = sum(int(r[3]) for r in mine) / hz / sum(int(r[1]) for r in mine) * 1e6
    p50 = max(float(r[4]) for r in mine)
    p99 = max(float(r[5]) for r in mine)
    runs = " / ".join(f"{o:,.0f}" for o in ops)
    print(f"| `{config}` | {runs} | {sum(ops) / len(ops):,.0f} | {cpu:.0f} | {p50:.2f} | {p99:.2f} |")
PY
