#!/usr/bin/env bash
# A/B of node flags: NODES ringkv nodes (N = NODES) and the load generator
# on this machine, each node started with the flags of one configuration,
# the records loaded, then each YCSB workload of WORKLOADS run at LEVEL.
# Configurations alternate over ROUNDS, each round on fresh nodes. Server
# CPU per operation is the sum over the nodes of utime + stime from
# /proc/PID/stat, before and after each run.
#
#   deploy/bench/flags.sh                      # threads: defaults vs one worker thread
#   CONFIGS="default|--worker-threads 1|--worker-threads 1 --storage-background-jobs 1" \
#       ROUNDS=3 DURATION=20 deploy/bench/flags.sh
#   NODES=1 RECORDS=1000000 WORKLOADS="c b a" \
#       CONFIGS="default|--memtable-bloom|--block-hash-index" deploy/bench/flags.sh
#
#   CONFIGS="bin=/tmp/ringkv-node-old|default" deploy/bench/flags.sh
#                                            # two binaries: an earlier build vs this one
#
# A configuration that starts with bin=PATH runs the ringkv-node at PATH
# (the rest of it are its flags).
# Ports 17900-17949. Prints one markdown row per configuration and workload.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CONFIGS="${CONFIGS:-default|--worker-threads 1}"
NODES="${NODES:-3}"
WORKLOADS="${WORKLOADS:-a}"
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-15}"
RECORDS="${RECORDS:-50000}"
CONCURRENCY="${CONCURRENCY:-32}"
if [ "$NODES" = 1 ]; then LEVEL="${LEVEL:-ONE}"; else LEVEL="${LEVEL:-QUORUM}"; fi

bench_setup ringkv-flags
IFS='|' read -r -a configs <<<"$CONFIGS"
read -r -a workloads <<<"$WORKLOADS"

# run CONFIG_INDEX ROUND: fresh nodes, a load, then one measured run per
# workload; appends "index workload ops ops/s cpu_ticks p50 p99" to rows.
run() {
    local index="$1" round="$2" flags=() node_pids=() targets=() config="${configs[$index]}"
    node_bin="$bin/ringkv-node"
    if [[ "$config" == bin=* ]]; then
        config="${config#bin=}"
        node_bin="${config%% *}"
        config="${config#"$node_bin"}"
        config="${config# }"
        [ -z "$config" ] && config=default
    fi
    [ "$config" != default ] && read -r -a flags <<<"$config"
    for i in $(seq 1 "$NODES"); do
        local base=$((17900 + 10 * i)) seed=""
        [ "$i" -gt 1 ] && seed=17912
        start_node "c$index-r$round-n$i" "$base" "$seed" --replication-factor "$NODES" "${flags[@]}"
        node_pids+=("$node_pid")
        targets+=("127.0.0.1:$base")
        [ "$i" = 1 ] && sleep 2
    done
    wait_up 127.0.0.1:17910 "$NODES"
    local target
    target="ringkv://$(IFS=,; echo "${targets[*]}")"
    "$bin/ringkv-bench" load --target "$target" --records "$RECORDS" --concurrency "$CONCURRENCY" \
        --quiet --write-consistency "$LEVEL" >/dev/null
    local workload before after result
    for workload in "${workloads[@]}"; do
        result="$work/c$index-r$round-$workload.json"
        before=$(ticks "${node_pids[@]}")
        "$bin/ringkv-bench" run --target "$target" --records "$RECORDS" --workload "$workload" \
            --duration "$DURATION" --concurrency "$CONCURRENCY" --read-consistency "$LEVEL" \
            --write-consistency "$LEVEL" --quiet --json "$result" >/dev/null
        after=$(ticks "${node_pids[@]}")
        python3 - "$result" "$index" "$workload" "$((after - before))" >>"$work/rows" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
ops = j["ops"]
p50 = max(v.get("p50_us", 0) for v in ops.values()) / 1000
p99 = max(v.get("p99_us", 0) for v in ops.values()) / 1000
print(sys.argv[2], sys.argv[3], j["operations"], j["throughput_ops_per_second"], sys.argv[4], p50, p99)
PY
    done
    stop_all
}

for round in $(seq 1 "$ROUNDS"); do
    for index in "${!configs[@]}"; do
        echo "round $round: ${configs[$index]}" >&2
        run "$index" "$round"
    done
done

CONFIGS="$CONFIGS" HZ="$hz" NODES="$NODES" python3 - "$work/rows" <<'PY'
import os, sys
configs = os.environ["CONFIGS"].split("|")
hz = int(os.environ["HZ"])
rows = [line.split() for line in open(sys.argv[1])]
workloads = list(dict.fromkeys(r[1] for r in rows))
print(f"| node flags | workload | ops/s (runs) | mean ops/s | CPU µs/op ({os.environ['NODES']} node(s)) | worst p50 ms | worst p99 ms |")
print("|---|---|---|---:|---:|---:|---:|")
for workload in workloads:
    for i, config in enumerate(configs):
        mine = [r for r in rows if int(r[0]) == i and r[1] == workload]
        ops = [float(r[3]) for r in mine]
        cpu = sum(int(r[4]) for r in mine) / hz / sum(int(r[2]) for r in mine) * 1e6
        p50 = max(float(r[5]) for r in mine)
        p99 = max(float(r[6]) for r in mine)
        runs = " / ".join(f"{o:,.0f}" for o in ops)
        print(f"| `{config}` | {workload} | {runs} | {sum(ops) / len(ops):,.0f} | {cpu:.0f} | {p50:.2f} | {p99:.2f} |")
PY
