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

# Installs Garage (with K2V) into $GARAGE_ROOT (~/.cache/ringkv/garage)
# once, about 15 minutes; sets $garage.
ensure_garage() {
    GARAGE_ROOT="${GARAGE_ROOT:-$HOME/.cache/ringkv/garage}"
    garage="$GARAGE_ROOT/bin/garage"
    if ! [ -x "$garage" ]; then
        echo "== installing Garage with K2V into $GARAGE_ROOT"
        CARGO_TARGET_DIR="$GARAGE_ROOT/target" cargo install garage --locked --features k2v \
            --root "$GARAGE_ROOT"
        rm -rf "$GARAGE_ROOT/target"
    fi
}

# Starts 3 Garage nodes (replication factor 3, consistent mode: quorum
# reads and writes; LMDB metadata) on ports BASE.. (node i: S3 BASE+10i,
# RPC +1, K2V +4), with a bucket `bench` and a key for it; their pids are
# appended to pids and left in garage_pids, the ringkv-bench target in
# $k2v.
start_garage() { # BASE
    local base_port="$1" secret i base ids=() id key_info key_id key_secret
    secret=$(python3 -c "import secrets; print(secrets.token_hex(32))")
    garage_pids=()
    for i in 0 1 2; do
        base=$((base_port + 10 * i))
        mkdir -p "$work/garage$i"
        cat >"$work/garage$i/garage.toml" <<EOF
metadata_dir = "$work/garage$i/meta"
data_dir = "$work/garage$i/data"
db_engine = "lmdb"
replication_factor = 3
consistency_mode = "consistent"
rpc_bind_addr = "127.0.0.1:$((base + 1))"
rpc_public_addr = "127.0.0.1:$((base + 1))"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$base"

[k2v_api]
api_bind_addr = "127.0.0.1:$((base + 4))"
EOF
        "$garage" -c "$work/garage$i/garage.toml" server >"$work/garage$i.log" 2>&1 &
        pids+=($!)
        garage_pids+=($!)
    done
    wait_for "$garage" -c "$work/garage0/garage.toml" status
    for i in 0 1 2; do
        wait_for "$garage" -c "$work/garage$i/garage.toml" node id -q
        ids+=("$("$garage" -c "$work/garage$i/garage.toml" node id -q 2>/dev/null)")
    done
    local g=("$garage" -c "$work/garage0/garage.toml")
    for id in "${ids[@]:1}"; do "${g[@]}" node connect "$id" >/dev/null; done
    for id in "${ids[@]}"; do "${g[@]}" layout assign -z dc1 -c 1G "${id%@*}" >/dev/null; done
    "${g[@]}" layout apply --version 1 >/dev/null
    "${g[@]}" bucket create bench >/dev/null
    key_info=$("${g[@]}" key create bench-key)
    key_id=$(echo "$key_info" | sed -n 's/^Key ID: *//p' | head -1)
    key_secret=$(echo "$key_info" | sed -n 's/^Secret key: *//p' | head -1)
    "${g[@]}" bucket allow --read --write bench --key bench-key >/dev/null
    k2v="k2v://$key_id:$key_secret@127.0.0.1:$((base_port + 4)),127.0.0.1:$((base_port + 14)),127.0.0.1:$((base_port + 24))/bench"
    wait_for "$bin/ringkv-bench" run --target "$k2v" --ops 1 --records 1 --quiet
}
