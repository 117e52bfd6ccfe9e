#!/usr/bin/env bash
# Builds ringkv, starts a local node on 127.0.0.1:7400 and shows the shell
# working against it. The node keeps running; stop it with
# scripts/stop-local.sh. State and logs live in .ringkv-local/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/prereqs.sh
ensure_prereqs

echo "== building (the first build compiles RocksDB: 15-20 minutes)"
cargo build --release --workspace --bins --locked
bin="$CARGO_TARGET_DIR/release"
state="$PWD/.ringkv-local"
mkdir -p "$state"

scripts/stop-local.sh >/dev/null 2>&1 || true

"$bin/ringkv-node" --node-name node1 --data-dir "$state/node1" \
    --listen-client 127.0.0.1:7400 --replication-factor 1 \
    >>"$state/node1.log" 2>&1 &
echo $! >"$state/node1.pid"

for _ in $(seq 1 100); do
    if "$bin/ringkv" --host 127.0.0.1:7400 info >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$(cat "$state/node1.pid")" 2>/dev/null; then
        echo "ringkv-node exited; last log lines:" >&2
        tail -n 5 "$state/node1.log" >&2
        exit 1
    fi
    sleep 0.2
done

run() {
    echo "\$ ringkv $*"
    "$bin/ringkv" "$@"
}
echo
echo "== ringkv is running on 127.0.0.1:7400 (log: $state/node1.log)"
run info
run put hello world
run get hello
run --json get hello
run del hello
run get hello
cat <<EOT

The shell is $bin/ringkv. Try:
  $bin/ringkv                   # interactive shell (HELP lists commands)
  $bin/ringkv put k v --ttl 60  # one-shot commands
Stop the node with: scripts/stop-local.sh
EOT
