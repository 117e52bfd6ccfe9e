#!/usr/bin/env bash
# Builds ringkv, starts a local 3-node cluster on loopback (replication
# factor 3) and shows the shell working against it. The nodes keep running;
# stop them with scripts/stop-local.sh. State and logs live in .ringkv-local/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/prereqs.sh
ensure_prereqs

echo "== building (the first build compiles RocksDB: 15-20 minutes)"
cargo build --release --workspace --all-features --bins --locked
bin="$CARGO_TARGET_DIR/release"

scripts/stop-local.sh >/dev/null 2>&1 || true
echo "== starting 3 nodes"
scripts/start-local.sh 3

run() {
    echo "\$ ringkv $*"
    "$bin/ringkv" "$@"
}
echo
run status
run put hello world
run --host 127.0.0.1:7420 get hello
run --json get hello
run getendpoints hello
run --consistency ALL del hello
run get hello
cat <<EOT

The shell is $bin/ringkv. Try:
  $bin/ringkv                   # interactive shell (HELP lists commands)
  $bin/ringkv put k v --ttl 60  # one-shot commands
  $bin/ringkv status            # the cluster, as node1 sees it
Stop the cluster with: scripts/stop-local.sh   (logs: .ringkv-local/*.log)
EOT
