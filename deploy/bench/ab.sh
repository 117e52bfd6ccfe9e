#!/usr/bin/env bash
# A/B of two ringkv-node binaries, alternating rounds on the same machine:
# for each round and binary, fresh nodes and data directories, 100,000
# records of 100 bytes loaded, then a GET run and a SET (update) run with
# ringkv-bench (32 in flight, uniform keys). Server CPU per operation is
# utime + stime from /proc/PID/stat of every node before and after each
# run. Prints one line per run and the means.
#
#   deploy/bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS] [-- NODE FLAGS...]
#
# NODES=1 (default): one node, N = 1, consistency ONE. NODES=3: three nodes
# on loopback, N = 3, QUORUM, the bench's token-aware client spread over
# them. VIA="grpc resp" also runs each mix through the RESP port of the
# first node (ringkv-bench's redis:// driver); default: grpc only.
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

nodes=${NODES:-1}
level=ONE rf=1
[ "$nodes" -gt 1 ] && level=QUORUM rf=$nodes
read -r -a via <<<"${VIA:-grpc}"

run_one() { # binary label round
    local bin=$1 label=$2 round=$3 dir="$work/$2-$3"
    local node_flags=() bench_flags=() pids=() hosts=""
    if [ "$label" = new ]; then
        read -r -a node_flags <<<"${NEW_FLAGS:-}"
        read -r -a bench_flags <<<"${NEW_BENCH_FLAGS:-}"
    fi
    for i in $(seq 0 $((nodes - 1))); do
        local base=$((17700 + 10 * i)) seeds=()
        [ "$i" -gt 0 ] && seeds=(--seeds 127.0.0.1:17702)
        mkdir -p "$dir/n$i"
        "$bin" "${node_flags[@]}" --node-name "n$i" --data-dir "$dir/n$i/data" \
            --listen-client "127.0.0.1:$base" --listen-peer "127.0.0.1:$((base + 1))" \
            --listen-gossip "127.0.0.1:$((base + 2))" --listen-http "127.0.0.1:$((base + 3))" \
            --listen-resp "127.0.0.1:$((base + 9))" --replication-factor "$rf" \
            --ring-delay-ms 200 "${seeds[@]}" "${extra[@]}" >"$dir/n$i/log" 2>&1 &
        pids+=($!)
        hosts="${hosts:+$hosts,}127.0.0.1:$base"
        # Each node joins once the one before serves.
        for _ in $(seq 1 150); do
            "$bench" run "${bench_flags[@]}" --target "ringkv://127.0.0.1:$base" --ops 1 --quiet --records 10 \
                --read-consistency ONE --write-consistency ONE >/dev/null 2>&1 && break
            sleep 0.2
        done
    done
    "$bench" load "${bench_flags[@]}" --target "ringkv://$hosts" --records 100000 --concurrency 32 \
        --write-consistency "$level" --quiet >/dev/null
    for way in "${via[@]}"; do
        local target="ringkv://$hosts"
        [ "$way" = resp ] && target="redis://127.0.0.1:17709"
        for mix in read=1 update=1; do
            local before=0 after=0 ops tag="$mix"
            [ "$way" = resp ] && tag="resp:$mix"
            for pid in "${pids[@]}"; do before=$((before + $(cpu_ticks "$pid"))); done
            "$bench" run "${bench_flags[@]}" --target "$target" --workload custom --mix "$mix" \
                --records 100000 --distribution uniform --concurrency 32 --duration "$seconds" \
                --read-consistency "$level" --write-consistency "$level" --quiet --json "$dir/$tag.json" >/dev/null
            for pid in "${pids[@]}"; do after=$((after + $(cpu_ticks "$pid"))); done
            ops=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['operations'])" "$dir/$tag.json")
            python3 - "$label" "$round" "$tag" "$ops" "$seconds" "$before" "$after" "$tick" <<'PY'
import sys
label, rnd, mix, ops, secs, before, after, tick = sys.argv[1:]
ops, secs = int(ops), float(secs)
cpu_us = (int(after) - int(before)) / int(tick) * 1e6
print(f"{label} round {rnd} {mix:14} {ops/secs:9.0f} ops/s {cpu_us/max(ops,1):7.1f} us CPU/op")
PY
        done
    done
    kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
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
for mix in sorted({mix for _, mix in rows}):
    old, new = rows[("old", mix)], rows[("new", mix)]
    mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)
    print(f"{mix:14} old {mean(old,0):8.0f} ops/s {mean(old,1):6.1f} us/op | new {mean(new,0):8.0f} ops/s {mean(new,1):6.1f} us/op | new/old ops {mean(new,0)/mean(old,0):.2f}x cpu {mean(new,1)/mean(old,1):.2f}x")
PY
