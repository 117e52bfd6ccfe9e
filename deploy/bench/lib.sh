# What the benchmark scripts share. Source it from a script in deploy/bench:
#
#   source "$(dirname "$0")/lib.sh"
#   bench_setup ringkv-NAME          # cd to the repository, build, make $work
#
# It sets $bin (release binaries), $work (a scratch directory removed on
# exit), $hz (clock ticks per second) and the array pids (processes killed
# on exit).

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/lib/prereqs.sh

bench_setup() { # NAME
    ensure_prereqs
    cargo build --release --workspace --all-features --bins --locked >/dev/null
    bin="$CARGO_TARGET_DIR/release"
    work="$(mktemp -d "/tmp/$1.XXXXXX")"
    hz=$(getconf CLK_TCK)
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    stop_all
    rm -rf "$work"
}

# Kills the processes started so far and forgets them.
stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}

wait_for() { # COMMAND...: retries for up to a minute
    for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "timed out waiting for: $*" >&2
    return 1
}

# CPU time (utime + stime, in clock ticks) the processes have used so far.
ticks() { # PID...
    local sum=0 pid
    for pid in "$@"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
    echo "$sum"
}

# A field of a ringkv-bench JSON result.
json_field() { # FILE FIELD
    python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"
}

# Starts a ringkv node on ports BASE..BASE+4 (client, peer, gossip, HTTP,
# RESP); its pid is appended to pids and left in $node_pid.
start_node() { # NAME BASE_PORT SEED_GOSSIP_PORT|"" [NODE FLAGS...]; $node_bin picks the binary
    local name="$1" base="$2" seed="$3" seeds=()
    shift 3
    [ -n "$seed" ] && seeds=(--seeds "127.0.0.1:$seed")
    "${node_bin:-$bin/ringkv-node}" --node-name "$name" --data-dir "$work/$name" \
        --listen-client "127.0.0.1:$base" --listen-peer "127.0.0.1:$((base + 1))" \
        --listen-gossip "127.0.0.1:$((base + 2))" --listen-http "127.0.0.1:$((base + 3))" \
        --listen-resp "127.0.0.1:$((base + 4))" --ring-delay-ms 200 "${seeds[@]}" "$@" \
        >"$work/$name.log" 2>&1 &
    node_pid=$!
    pids+=("$node_pid")
}

# Waits until the node at HOST:PORT sees COUNT nodes UP and NORMAL.
wait_up() { # HOST:PORT COUNT
    wait_for bash -c "[ \$('$bin/ringkv' --host $1 status | grep -c '^UP *NORMAL') -ge $2 ]"
}
