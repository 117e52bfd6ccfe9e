#!/usr/bin/env bash
# A/B of two ringkv-node binaries on one node (N = 1, ONE), alternating
# rounds on the same machine: for each round and binary, a fresh node and
# data directory, 100,000 records of 100 bytes loaded, then a GET run and a
# SET (update) run with ringkv-bench (32 in flight, uniform keys). Server
# CPU per operation is utime + stime from /proc/PID/stat before and after
# each run. Prints one line per run and the means.
#
#   deploy/bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS] [-- NODE FLAGS...]
#
# NEW_FLAGS and NEW_BENCH_FLAGS (environment) add flags to the new node and
# to ringkv-bench against it only: e.g. the same binary twice, the second
# with TLS and authentication on.
set -euo pipefail
old=$1 new=$2 rounds=${3:-3} seconds=${4:-10}
shift $(( $# >= 4 ? 4 : $# ))
[ "${1:-}" = "--" ] && shift
extra=("$@")
bench="${CARGO_TARGET_DIR:-$HOME/.cache/ringkv/target}/release/ringkv-bench"
tick=$(getconf CLK_TCK)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_one() { # binary label round
    local bin=$1 label=$2 round=$3 dir="$work/$2-$3"
    local node_flags=() bench_flags=()
    if [ "$label" = new ]; then
        read -r -a node_flags <<<"${NEW_FLAGS:-}"
        read -r -a bench_flags <<<"${NEW_BENCH_FLAGS:-}"
    fi
    mkdir -p "$dir"
    "$bin" "${node_flags[@]}" --data-dir "$dir/data" --listen-client 127.0.0.1:17700 --listen-peer 127.0.0.1:17701 \
        --listen-gossip 127.0.0.1:17702 --listen-http 127.0.0.1:17780 --listen-resp 127.0.0.1:17779 --replication-factor 1 \
        --ring-delay-ms 200 "${extra[@]}" >"$dir/log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do
        "$bench" run "${bench_flags[@]}" --target ringkv://127.0.0.1:17700 --ops 1 --quiet --records 10 \
            --read-consistency ONE --write-consistency ONE >/dev/null 2>&1 && break
        sleep 0.2
    done
    "$bench" load "${bench_flags[@]}" --target ringkv://127.0.0.1:17700 --records 100000 --concurrency 32 \
        --write-consistency ONE --quiet >/dev/null
    for mix in read=1 update=1; do
        local before after ops
        before=$(cpu_ticks "$pid")
        "$bench" run "${bench_flags[@]}" --target ringkv://127.0.0.1:17700 --workload custom --mix "$mix" \
            --records 100000 --distribution uniform --concurrency 32 --duration "$seconds" \
            --read-consistency ONE --write-consistency ONE --quiet --json "$dir/$mix.json" >/dev/null
        after=$(cpu_ticks "$pid")
        ops=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['operations'])" "$dir/$mix.json")
        python3 - "$label" "$round" "$mix" "$ops" "$seconds" "$before" "$after" "$tick" <<'PY'
import sys
label, rnd, mix, ops, secs, before, after, tick = sys.argv[1:]
ops, secs = int(ops), float(secs)
cpu_us = (int(after) - int(before)) / int(tick) * 1e6
print(f"{label} round {rnd} {mix:9} {ops/secs:9.0f} ops/s {cpu_us/max(ops,1):7.1f} us CPU/op")
PY
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

for round in $(seq 1 "$rounds"); do
    run_one "$old" old "$round"
    run_one "$new" new "$round"
done | tee "$work/results"
python3 - "$work/results" <<'PY'
import sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    parts = line.split()
    rows[(parts[0], parts[3])].append((float(parts[4]), float(parts[6])))
for mix in ("read=1", "update=1"):
    old, new = rows[("old", mix)], rows[("new", mix)]
    mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)
    print(f"{mix:9} old {mean(old,0):8.0f} ops/s {mean(old,1):6.1f} us/op | new {mean(new,0):8.0f} ops/s {mean(new,1):6.1f} us/op | new/old ops {mean(new,0)/mean(old,0):.2f}x cpu {mean(new,1)/mean(old,1):.2f}x")
PY
