#!/usr/bin/env bash
# Runs each attack of the hardening issues against real nodes on loopback,
# beside an honest client, and prints what the honest client saw:
#   - 2,048 HTTP/2 streams with headers and no body on the client port, and
#     on a replica's peer port (one connection stopped every client before);
#   - connections held silent past the caps of the client, peer and HTTP
#     ports, and TLS handshakes that never finish;
#   - 32 clients guessing passwords with authentication on.
# Each attack is a test of tests/it/stranger.rs: it also fails if the
# honest client sees an error or the node's bounds do not hold.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/prereqs.sh
ensure_prereqs
ensure_tools redis-cli:redis-tools
cargo build --release --workspace --all-features --bins --locked
cargo test --release --locked --test it -- stranger:: --nocapture --test-threads 1 2>&1 \
    | grep -E '^(attack-check:|test |test result)'
