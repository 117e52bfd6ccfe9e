#!/usr/bin/env bash
# Regenerates BENCHMARKS.md: ringkv against redis-server, etcd and RocksDB
# in-process, all driven by ringkv-bench on this machine, one run each.
#
#   deploy/bench/compare.sh            # about 12 minutes
#   DURATION=60 deploy/bench/compare.sh
#
# Installs redis-server and etcd-server from the distribution's packages if
# missing and starts private instances on loopback (ports 6390, 2391-2396);
# ringkv nodes use ports 7700-7799. Everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/prereqs.sh
ensure_prereqs

DURATION="${DURATION:-20}"
CONCURRENCY="${CONCURRENCY:-32}"
VALUE_SIZE="${VALUE_SIZE:-100}"
RECORDS="${RECORDS:-100000}"

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
if [ "${#need[@]}" -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    echo "== installing ${need[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== building"
cargo build --release --workspace --all-features --bins --locked
bin="$CARGO_TARGET_DIR/release"
work="$(mktemp -d /tmp/ringkv-compare.XXXXXX)"
results="$work/results"
mkdir -p "$results"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # command...
    for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "timed out waiting for: $*" >&2; return 1
}

# start_ringkv NAME INDEX RF SYNC [SEED_GOSSIP_PORT]
start_ringkv() {
    local name="$1" i="$2" rf="$3" sync="$4" seed="${5:-}" base=$((7700 + 10 * $2))
    local seeds=()
    [ -n "$seed" ] && seeds=(--seeds "127.0.0.1:$seed")
    "$bin/ringkv-node" --node-name "$name" --data-dir "$work/$name" \
        --listen-client "127.0.0.1:$base" --listen-peer "127.0.0.1:$((base + 1))" \
        --listen-gossip "127.0.0.1:$((base + 2))" --listen-http "127.0.0.1:$((base + 3))" \
        --listen-resp "127.0.0.1:$((base + 4))" \
        --replication-factor "$rf" --commitlog-sync "$sync" --ring-delay-ms 200 "${seeds[@]}" \
        >"$work/$name.log" 2>&1 &
    pids+=($!)
    wait_for "$bin/ringkv" --host "127.0.0.1:$base" info
}

stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}

# bench NAME PHASE TARGET [ringkv-bench options...]
bench() {
    local name="$1" phase="$2" target="$3"; shift 3
    echo "-- $name"
    "$bin/ringkv-bench" "$phase" --target "$target" --records "$RECORDS" --value-size "$VALUE_SIZE" \
        --concurrency "$CONCURRENCY" --quiet --json "$results/$name.json" "$@" | tail -n 2
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

echo "== 1. one node: ringkv (N=1, ONE) vs redis-server vs RocksDB in-process"
start_ringkv single 0 1 periodic
set_get ringkv1 ringkv://127.0.0.1:7700 --read-consistency ONE --write-consistency ONE
stop_all
redis-server --port 6390 --bind 127.0.0.1 --dir "$work" --appendonly yes --appendfsync everysec \
    --save "" --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for redis-cli -p 6390 ping
set_get redis redis://127.0.0.1:6390
stop_all
set_get rocksdb "rocksdb://$work/rocksdb"

echo "== 2. three nodes: ringkv (N=3, QUORUM) vs etcd (3 members)"
for sync in periodic group; do
    start_ringkv "r3$sync-1" 1 3 "$sync"
    start_ringkv "r3$sync-2" 2 3 "$sync" 7712
    start_ringkv "r3$sync-3" 3 3 "$sync" 7712
    wait_for bash -c "[ \$('$bin/ringkv' --host 127.0.0.1:7710 status | grep -c '^UP *NORMAL') -ge 3 ]"
    set_get "ringkv3-$sync" ringkv://127.0.0.1:7710,127.0.0.1:7720,127.0.0.1:7730
    stop_all
    rm -rf "$work"/r3"$sync"-*
done
cluster="e1=http://127.0.0.1:2392,e2=http://127.0.0.1:2394,e3=http://127.0.0.1:2396"
for i in 1 2 3; do
    client=$((2389 + 2 * i)); peer=$((client + 1))
    etcd --name "e$i" --data-dir "$work/etcd$i" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token ringkv-compare \
        >"$work/etcd$i.log" 2>&1 &
    pids+=($!)
done
for port in 2391 2393 2395; do
    wait_for "$bin/ringkv-bench" run --target "etcd://127.0.0.1:$port" --ops 1 --records 1 --quiet
done
set_get etcd etcd://127.0.0.1:2391,127.0.0.1:2393,127.0.0.1:2395
stop_all

echo "== 3. three ringkv nodes: YCSB a, b, c at ONE, QUORUM, ALL"
start_ringkv y1 4 3 periodic
start_ringkv y2 5 3 periodic 7742
start_ringkv y3 6 3 periodic 7742
wait_for bash -c "[ \$('$bin/ringkv' --host 127.0.0.1:7740 status | grep -c '^UP *NORMAL') -ge 3 ]"
targets=ringkv://127.0.0.1:7740,127.0.0.1:7750,127.0.0.1:7760
bench ycsb-load load "$targets" --write-consistency ALL
for level in ONE QUORUM ALL; do
    for workload in a b c; do
        bench "ycsb-$workload-$level" run "$targets" --workload "$workload" --duration "$DURATION" \
            --read-consistency "$level" --write-consistency "$level"
    done
done
# Latency at half the maximum throughput (open loop, coordinated-omission corrected).
max=$(python3 -c "import json;print(json.load(open('$results/ycsb-a-QUORUM.json'))['throughput_ops_per_second'])")
half=$(python3 -c "print(max(1, int($max / 2)))")
bench ycsb-a-QUORUM-half run "$targets" --workload a --duration "$DURATION" --rate "$half" \
    --concurrency 256 --read-consistency QUORUM --write-consistency QUORUM
stop_all

echo "== writing BENCHMARKS.md"
export RESULTS="$results" CRITERION_DIR="$criterion_dir" DURATION CONCURRENCY VALUE_SIZE RECORDS
export MACHINE="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(uname -sr)"
export VERSIONS="ringkv $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(rustc --version), redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), etcd $(etcd --version | head -1 | awk '{print $3}')"
python3 deploy/bench/report.py > BENCHMARKS.md
echo "wrote BENCHMARKS.md"
