#!/usr/bin/env bash
# Rows, in one run on this machine: ringkv (3 nodes, N=3, QUORUM) against
# redis-server's hashes and Garage's K2V (3 nodes, replication factor 3,
# consistent mode), with ringkv-bench:
#  1. YCSB workload e: 95% scans of 1-100 rows within a partition, 5%
#     inserts; and workload c (point reads) on the same rows;
#  2. the last 20 rows of a 100,000-row partition, against a point read of
#     one of its rows (one request at a time);
#  3. partition batches of 10 rows against single row writes.
# Server CPU per operation (and per row) from /proc/PID/stat (utime +
# stime of every server process) before and after each run. Prints a
# markdown table (BENCHMARKS.md, "Rows").
#
#   deploy/bench/rows.sh                  # about 6 minutes
#   DURATION=30 deploy/bench/rows.sh
#
# Redis hashes have no order, so a range read there is an HGETALL of the
# whole hash (100 fields; the 100,000-field hash for "latest"): the only
# range read Redis hashes have. K2V: a range is a ReadBatch, a batch an
# InsertBatch; an overwrite reads the item's causality token first, as a
# K2V application must. Ports: ringkv 17810-17834, redis 6392, Garage
# 3950-3974. Garage is installed once (deploy/bench/lib.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_tools redis-server:redis-server redis-cli:redis-tools

DURATION="${DURATION:-15}"
CONCURRENCY="${CONCURRENCY:-32}"
RECORDS="${RECORDS:-100000}"
PER_PARTITION="${PER_PARTITION:-100}"
BIG="${BIG:-100000}"

ensure_garage
bench_setup ringkv-rows-bench
results="$work/results"
mkdir -p "$results"

# bench NAME PHASE TARGET PIDS [ringkv-bench options...]: runs one phase,
# keeps its JSON and the servers' CPU ticks meanwhile.
bench() {
    local name="$1" phase="$2" target="$3" servers="$4"
    shift 4
    local before after
    # shellcheck disable=SC2086
    before=$(ticks $servers)
    "$bin/ringkv-bench" "$phase" --target "$target" --quiet --concurrency "$CONCURRENCY" \
        --json "$results/$name.json" "$@" >"$results/$name.txt"
    # shellcheck disable=SC2086
    after=$(ticks $servers)
    echo $((after - before)) >"$results/$name.ticks"
}

# runs PREFIX TARGET PIDS [options]: every measurement against one store.
runs() {
    local prefix="$1" target="$2" servers="$3"
    shift 3
    local rows=(--records "$RECORDS" --rows-per-partition "$PER_PARTITION")
    local big=(--records "$BIG" --rows-per-partition "$BIG" --key-prefix big)
    bench "$prefix-load" load "$target" "$servers" "${rows[@]}" "$@"
    bench "$prefix-e" run "$target" "$servers" --workload e --duration "$DURATION" "${rows[@]}" "$@"
    bench "$prefix-get" run "$target" "$servers" --workload c --duration "$DURATION" "${rows[@]}" "$@"
    bench "$prefix-put" run "$target" "$servers" --workload custom --mix update=1 \
        --duration "$DURATION" "${rows[@]}" "$@"
    bench "$prefix-batch" run "$target" "$servers" --workload batch --batch-size 10 \
        --duration "$DURATION" "${rows[@]}" "$@"
    bench "$prefix-big-load" load "$target" "$servers" "${big[@]}" "$@"
    # Let the store finish digesting the load (for ringkv: its compactions),
    # so that the next two runs, compared with each other, meet the same
    # background work.
    [ -n "${settle:-}" ] && "$settle"
    # One request at a time: a Redis HGETALL of 100,000 fields takes
    # about 0.1 s, and 32 of them at once pass the client's timeout.
    bench "$prefix-latest" run "$target" "$servers" --workload custom --mix latest=1 --latest 20 \
        --duration "$DURATION" --concurrency 1 "${big[@]}" "$@"
    bench "$prefix-big-get" run "$target" "$servers" --workload c --distribution uniform \
        --duration "$DURATION" --concurrency 1 "${big[@]}" "$@"
}

# Waits (a minute at most) until no ringkv node runs or owes a compaction.
settle_ringkv() {
    local i busy
    for i in $(seq 60); do
        busy=0
        for port in 17810 17820 17830; do
            [ "$("$bin/ringkv" --host "127.0.0.1:$port" compactionstats |
                grep -Ec '^(pending compaction: +0 B|running compactions: +0)$' || true)" = 2 ] || busy=1
        done
        [ "$busy" = 0 ] && return 0
        sleep 1
    done
}

echo "== ringkv: 3 nodes, replication factor 3, QUORUM"
servers=""
for i in 1 2 3; do
    seed=""; [ "$i" -gt 1 ] && seed=17812
    start_node "rows$i" $((17800 + 10 * i)) "$seed" --replication-factor 3
    servers="$servers $node_pid"
    [ "$i" = 1 ] && wait_for "$bin/ringkv" --host 127.0.0.1:17810 info
done
wait_up 127.0.0.1:17810 3
settle=settle_ringkv runs ringkv ringkv://127.0.0.1:17810,127.0.0.1:17820,127.0.0.1:17830 "$servers"
stop_all

echo "== redis-server hashes (appendonly everysec)"
redis-server --port 6392 --bind 127.0.0.1 --dir "$work" --appendonly yes --appendfsync everysec \
    --save "" --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
wait_for redis-cli -p 6392 ping
runs redis redis://127.0.0.1:6392 "$redis_pid"
stop_all

echo "== Garage K2V: 3 nodes"
start_garage 3950
runs k2v "$k2v" "${garage_pids[*]}"
stop_all

python3 - "$results" "$hz" <<'PY'
import json, sys
results, hz = sys.argv[1], int(sys.argv[2])
def get(name):
    with open(f"{results}/{name}.json") as f:
        data = json.load(f)
    ticks = int(open(f"{results}/{name}.ticks").read())
    return data, ticks / hz
def op(data, kind):
    return data["ops"].get(kind, {})
rows = []
for store in ["ringkv", "redis", "k2v"]:
    for run, kind, what in [
        ("e", "scan", "e: scan 1-100 rows"),
        ("get", "read", "c: point read of a row"),
        ("latest", "latest", "last 20 rows of a 100,000-row partition"),
        ("big-get", "read", "point read in that partition"),
        ("batch", "batch", "batch of 10 rows"),
        ("put", "update", "one row written"),
    ]:
        data, cpu = get(f"{store}-{run}")
        o = op(data, kind)
        n = data["operations"] or 1
        read = data.get("rows_read", 0)
        written = data.get("rows_written", 0)
        moved = read if kind in ("scan", "latest", "read") else written
        moved = moved or n
        rows.append((store, what, data["throughput_ops_per_second"], o.get("p50_us", 0) / 1000,
                     o.get("p99_us", 0) / 1000, cpu * 1e6 / n, cpu * 1e6 / moved,
                     moved / n, sum(data["errors"][k] for k in ("unavailable", "timeout", "overloaded", "other"))))
print("| store | run | ops/s | p50 ms | p99 ms | server CPU µs/op | server CPU µs/row | rows/op | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]:,.0f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.0f} | {r[6]:.1f} | {r[7]:.1f} | {r[8]} |")
PY
