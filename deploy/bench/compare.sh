#!/usr/bin/env bash
# Regenerates BENCHMARKS.md: ringkv against redis-server, etcd, Garage (K2V)
# and RocksDB in-process, all driven by ringkv-bench on this machine, one
# run each, with server CPU per operation read from /proc; redis-benchmark
# against redis-server and ringkv's RESP port (resp.sh); and the fault
# suite's convergence times. The sections written by hand (before/after
# measurements of each issue) are kept as they are.
#
#   deploy/bench/compare.sh                  # about 35 minutes
#   DURATION=60 deploy/bench/compare.sh
#   FAULTS=0 deploy/bench/compare.sh         # without the Docker fault suite
#
# Installs redis-server, redis-tools and etcd-server from the distribution's
# packages if missing, and Garage (with K2V) with `cargo install` into
# ~/.cache/ringkv/garage (about 15 minutes, once). Private instances listen
# on loopback: redis 6390, etcd 2391-2396, Garage 3900-3934, ringkv
# 7700-7799. Everything started is stopped on exit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION="${DURATION:-20}"
CONCURRENCY="${CONCURRENCY:-32}"
VALUE_SIZE="${VALUE_SIZE:-100}"
RECORDS="${RECORDS:-100000}"
FAULTS="${FAULTS:-1}"

ensure_tools redis-server:redis-server redis-benchmark:redis-tools etcd:etcd-server
ensure_garage

echo "== building"
bench_setup ringkv-compare
results="$work/results"
mkdir -p "$results"

# The processes whose CPU the next measurements count (a store's servers).
servers=()

# bench NAME PHASE TARGET [ringkv-bench options...]: one ringkv-bench run;
# the servers' CPU seconds meanwhile go to NAME.cpu (with no servers, the
# CPU of ringkv-bench itself: the in-process store).
bench() {
    local name="$1" phase="$2" target="$3"; shift 3
    echo "-- $name"
    local args=("$phase" --target "$target" --records "$RECORDS" --value-size "$VALUE_SIZE"
        --concurrency "$CONCURRENCY" --quiet --json "$results/$name.json" "$@")
    if [ "${#servers[@]}" -gt 0 ]; then
        local before after
        before=$(ticks "${servers[@]}")
        "$bin/ringkv-bench" "${args[@]}" | tail -n 2
        after=$(ticks "${servers[@]}")
        python3 -c "import sys; print((int(sys.argv[2]) - int(sys.argv[1])) / $hz)" \
            "$before" "$after" >"$results/$name.cpu"
    else
        python3 - "$results/$name.cpu" "$bin/ringkv-bench" "${args[@]}" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[2:], check=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{usage.ru_utime + usage.ru_stime}\n")
PY
    fi
}

set_get() { # PREFIX TARGET [options...]
    local prefix="$1" target="$2"; shift 2
    bench "$prefix-load" load "$target" "$@"
    bench "$prefix-set" run "$target" --workload custom --mix update=1 --distribution uniform --duration "$DURATION" "$@"
    bench "$prefix-get" run "$target" --workload c --distribution uniform --duration "$DURATION" "$@"
}

echo "== micro-benchmarks (criterion)"
criterion_dir="$CARGO_TARGET_DIR/criterion"
rm -rf "$criterion_dir"
cargo bench --all-features --bench hot_paths -- --warm-up-time 1 --measurement-time 3 >"$work/criterion.txt" 2>&1
echo "== internode transports: gRPC vs the framed protocol"
cargo bench --all-features --bench internode -- 5 32 2>/dev/null | grep -v '^$' >"$results/internode.txt"

echo "== 1. one node: ringkv (N=1, ONE) vs redis-server vs RocksDB in-process"
start_node single 7700 "" --replication-factor 1
servers=("$node_pid")
wait_for "$bin/ringkv" --host 127.0.0.1:7700 info
set_get ringkv1 ringkv://127.0.0.1:7700 --read-consistency ONE --write-consistency ONE
# The same node through its RESP port (N=1: the connection's QUORUM is ONE).
bench ringkv1-resp-set run redis://127.0.0.1:7704 --workload custom --mix update=1 \
    --distribution uniform --duration "$DURATION"
bench ringkv1-resp-get run redis://127.0.0.1:7704 --workload c --distribution uniform --duration "$DURATION"
stop_all
redis-server --port 6390 --bind 127.0.0.1 --dir "$work" --appendonly yes --appendfsync everysec \
    --save "" --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
servers=($!)
wait_for redis-cli -p 6390 ping
set_get redis redis://127.0.0.1:6390
stop_all
servers=()
set_get rocksdb "rocksdb://$work/rocksdb"

echo "== redis-benchmark: redis-server vs ringkv's RESP port (resp.sh)"
deploy/bench/resp.sh >"$results/resp.md"

echo "== 2. three nodes: ringkv (N=3, QUORUM) vs etcd (3 members) vs Garage K2V (3 nodes)"
for sync in periodic group; do
    servers=()
    for i in 1 2 3; do
        seed=""; [ "$i" -gt 1 ] && seed=7712
        start_node "r3$sync-$i" $((7700 + 10 * i)) "$seed" --replication-factor 3 --commitlog-sync "$sync"
        servers+=("$node_pid")
        [ "$i" = 1 ] && wait_for "$bin/ringkv" --host 127.0.0.1:7710 info
    done
    wait_up 127.0.0.1:7710 3
    set_get "ringkv3-$sync" ringkv://127.0.0.1:7710,127.0.0.1:7720,127.0.0.1:7730
    stop_all
    rm -rf "$work"/r3"$sync"-*
done
cluster="e1=http://127.0.0.1:2392,e2=http://127.0.0.1:2394,e3=http://127.0.0.1:2396"
servers=()
for i in 1 2 3; do
    client=$((2389 + 2 * i)); peer=$((client + 1))
    etcd --name "e$i" --data-dir "$work/etcd$i" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token ringkv-compare \
        >"$work/etcd$i.log" 2>&1 &
    pids+=($!)
    servers+=($!)
done
for port in 2391 2393 2395; do
    wait_for "$bin/ringkv-bench" run --target "etcd://127.0.0.1:$port" --ops 1 --records 1 --quiet
done
set_get etcd etcd://127.0.0.1:2391,127.0.0.1:2393,127.0.0.1:2395
stop_all

start_garage 3900
servers=("${garage_pids[@]}")
set_get garage "$k2v"
stop_all

echo "== 3. three ringkv nodes: YCSB a, b, c at ONE, QUORUM, ALL"
servers=()
for i in 4 5 6; do
    seed=""; [ "$i" -gt 4 ] && seed=7742
    start_node "y$i" $((7700 + 10 * i)) "$seed" --replication-factor 3
    servers+=("$node_pid")
    [ "$i" = 4 ] && wait_for "$bin/ringkv" --host 127.0.0.1:7740 info
done
wait_up 127.0.0.1:7740 3
targets=ringkv://127.0.0.1:7740,127.0.0.1:7750,127.0.0.1:7760
bench ycsb-load load "$targets" --write-consistency ALL
for level in ONE QUORUM ALL; do
    for workload in a b c; do
        bench "ycsb-$workload-$level" run "$targets" --workload "$workload" --duration "$DURATION" \
            --read-consistency "$level" --write-consistency "$level"
    done
done
# Latency at half the maximum throughput (open loop, coordinated-omission corrected).
max=$(json_field "$results/ycsb-a-QUORUM.json" throughput_ops_per_second)
half=$(python3 -c "print(max(1, int($max / 2)))")
bench ycsb-a-QUORUM-half run "$targets" --workload a --duration "$DURATION" --rate "$half" \
    --concurrency 256 --read-consistency QUORUM --write-consistency QUORUM
stop_all

if [ "$FAULTS" = 1 ]; then
    echo "== convergence: the Docker fault suite"
    deploy/docker/build-image.sh >/dev/null
    RINGKV_FAULTS_JSON="$results/faults.json" cargo test --release --workspace --all-features --locked \
        -p ringkv-tests --test docker_faults -- --ignored --nocapture 2>&1 | tail -n 12
fi

echo "== writing BENCHMARKS.md"
export RESULTS="$results" CRITERION_DIR="$criterion_dir" DURATION CONCURRENCY VALUE_SIZE RECORDS HZ="$hz"
export MACHINE="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(uname -sr)"
export VERSIONS="ringkv $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(rustc --version), redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), etcd $(etcd --version | head -1 | awk '{print $3}'), Garage $("$garage" --version 2>/dev/null | sed -n 's/^garage cargo:\([^ ]*\).*/\1/p')"
python3 deploy/bench/report.py BENCHMARKS.md >"$work/BENCHMARKS.md"
mv "$work/BENCHMARKS.md" BENCHMARKS.md
echo "wrote BENCHMARKS.md"
