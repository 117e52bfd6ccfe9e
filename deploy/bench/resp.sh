#!/usr/bin/env bash
# The RESP port against redis-server, in one run on this machine:
#  1. redis-benchmark -t set,get against redis-server and against one ringkv
#     node's RESP port, same -c/-P/-d, pipelined and not;
#  2. ringkv-bench GET and SET through the RESP port (its redis:// driver)
#     and through the gRPC API (ringkv://).
# Server CPU per operation comes from /proc/PID/stat (utime + stime) read
# before and after each run. Prints a markdown table (BENCHMARKS.md, "RESP").
#
#   deploy/bench/resp.sh                 # about 3 minutes
#   REQUESTS=500000 DURATION=20 deploy/bench/resp.sh
#
# ringkv: one node, replication factor 1, consistency ONE, commitlog_sync
# periodic (its default); redis-server: appendonly yes, appendfsync
# everysec. Ports: redis 6391, ringkv 17790-17794.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_tools redis-server:redis-server redis-benchmark:redis-tools

REQUESTS="${REQUESTS:-200000}"
CLIENTS="${CLIENTS:-32}"
VALUE_SIZE="${VALUE_SIZE:-100}"
DURATION="${DURATION:-15}"
KEYSPACE="${KEYSPACE:-100000}"

bench_setup ringkv-resp-bench

redis-server --port 6391 --bind 127.0.0.1 --dir "$work" --appendonly yes --appendfsync everysec \
    --save "" --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
start_node resp-bench 17790 "" --replication-factor 1
ringkv_pid=$node_pid
wait_for redis-cli -p 6391 ping
wait_for redis-cli -p 17794 ping
# ringkv's connection level: ONE (a single replica).
resp_one=(redis-cli -p 17794 RINGKV.CONSISTENCY ONE)
"${resp_one[@]}" >/dev/null

rows="$work/rows"
: >"$rows"
# measure NAME PID COMMAND...: runs COMMAND, records its output and the
# server's CPU seconds spent meanwhile.
measure() {
    local name="$1" pid="$2"; shift 2
    local before after
    before=$(ticks "$pid")
    "$@" >"$work/$name.out" 2>&1
    after=$(ticks "$pid")
    echo "$name $(( after - before ))" >>"$rows"
}

for pipeline in 1 16; do
    for test in set get; do
        for store in redis ringkv; do
            port=6391; pid=$redis_pid
            [ "$store" = ringkv ] && { port=17794; pid=$ringkv_pid; }
            # redis-benchmark opens fresh connections (QUORUM by default on
            # ringkv); with one node and replication factor 1 QUORUM is ONE.
            measure "rb-$store-$test-P$pipeline" "$pid" redis-benchmark -h 127.0.0.1 -p "$port" \
                -t "$test" -n "$REQUESTS" -c "$CLIENTS" -P "$pipeline" -d "$VALUE_SIZE" \
                -r "$KEYSPACE" --csv
        done
    done
done

bench() { # NAME PID TARGET ARGS...
    local name="$1" pid="$2" target="$3"; shift 3
    measure "$name" "$pid" "$bin/ringkv-bench" run --target "$target" --records "$KEYSPACE" \
        --value-size "$VALUE_SIZE" --concurrency "$CLIENTS" --duration "$DURATION" --quiet \
        --json "$work/$name.json" "$@"
}
"$bin/ringkv-bench" load --target ringkv://127.0.0.1:17790 --records "$KEYSPACE" \
    --value-size "$VALUE_SIZE" --concurrency "$CLIENTS" --quiet --write-consistency ONE >/dev/null
"$bin/ringkv-bench" load --target redis://127.0.0.1:6391 --records "$KEYSPACE" \
    --value-size "$VALUE_SIZE" --concurrency "$CLIENTS" --quiet >/dev/null
for test in get set; do
    if [ "$test" = get ]; then mix=(--workload c); else mix=(--workload custom --mix update=1); fi
    bench "bench-redis-$test" "$redis_pid" redis://127.0.0.1:6391 "${mix[@]}" --distribution uniform
    bench "bench-resp-$test" "$ringkv_pid" redis://127.0.0.1:17794 "${mix[@]}" --distribution uniform
    bench "bench-grpc-$test" "$ringkv_pid" ringkv://127.0.0.1:17790 "${mix[@]}" --distribution uniform \
        --read-consistency ONE --write-consistency ONE
done

WORK="$work" HZ="$hz" REQUESTS="$REQUESTS" CLIENTS="$CLIENTS" VALUE_SIZE="$VALUE_SIZE" python3 - <<'PY'
import csv, json, os
work, hz, requests = os.environ["WORK"], int(os.environ["HZ"]), int(os.environ["REQUESTS"])
cpu = dict(line.split() for line in open(f"{work}/rows"))
def rb(name):
    rows = list(csv.reader(open(f"{work}/{name}.out")))
    data = [r for r in rows if r and r[0] not in ("test",)]
    rps = float(data[0][1])
    return rps, float(data[0][4]) if len(data[0]) > 4 else float("nan")
print("| redis-benchmark | pipeline | redis-server ops/s | ringkv RESP ops/s | ringkv / redis | redis CPU µs/op | ringkv CPU µs/op |")
print("|---|---:|---:|---:|---:|---:|---:|")
for pipeline in (1, 16):
    for test in ("set", "get"):
        r = rb(f"rb-redis-{test}-P{pipeline}")
        k = rb(f"rb-ringkv-{test}-P{pipeline}")
        rc = int(cpu[f"rb-redis-{test}-P{pipeline}"]) / hz / requests * 1e6
        kc = int(cpu[f"rb-ringkv-{test}-P{pipeline}"]) / hz / requests * 1e6
        print(f"| {test.upper()} | {pipeline} | {r[0]:,.0f} | {k[0]:,.0f} | {k[0] / r[0]:.2f}× | {rc:.1f} | {kc:.1f} |")
print()
print("| ringkv-bench | redis-server ops/s | ringkv RESP ops/s | ringkv gRPC ops/s | RESP / redis | gRPC / redis | redis CPU µs/op | RESP CPU µs/op | gRPC CPU µs/op | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for test in ("get", "set"):
    cells, errors = [], 0
    for store in ("redis", "resp", "grpc"):
        name = f"bench-{store}-{test}"
        j = json.load(open(f"{work}/{name}.json"))
        ops = j["throughput_ops_per_second"]
        total = j["operations"]
        errors += sum(v for k, v in j["errors"].items() if isinstance(v, int))
        cells.append((ops, int(cpu[name]) / hz / max(total, 1) * 1e6))
    r, s, g = cells
    print(f"| {test.upper()} | {r[0]:,.0f} | {s[0]:,.0f} | {g[0]:,.0f} | {s[0] / r[0]:.2f}× | {g[0] / r[0]:.2f}× | {r[1]:.1f} | {s[1]:.1f} | {g[1]:.1f} | {errors} |")
PY
