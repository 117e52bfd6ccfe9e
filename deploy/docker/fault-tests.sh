#!/usr/bin/env bash
# The Docker fault suite: builds the image, starts a private 3-node cluster
# (project ringkv-faults, subnet 172.30.248.0/24, node 1 published on
# 127.0.0.1:17400) and runs, under a QUORUM writer of unique keys:
#   1. a 30 s network partition of one node (writers on both sides),
#   2. docker kill of one node mid-write, then restart,
#   3. docker pause of one node past failure detection, then unpause,
#   4. docker kill of 2 of 3 nodes (no write may be acknowledged),
#   5. growing to 5 nodes (bootstrap streaming) and back to 3 (decommission).
# After each it reads back every acknowledged write at QUORUM, waits for
# identical Merkle roots on all nodes, and prints a table of acknowledged
# writes, lost writes (must be 0) and time to converge (from the end of the
# fault to identical roots). Then it brings up the secure variant
# (secure-smoke.sh) and checks TLS, users and roles, and the monitoring
# profile (monitoring-smoke.sh): Prometheus scraping every node.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/prereqs.sh
ensure_prereqs
deploy/docker/build-image.sh
cargo test --release --workspace --all-features --locked -p ringkv-tests --test docker_faults -- --ignored --nocapture
deploy/docker/secure-smoke.sh
deploy/docker/monitoring-smoke.sh
