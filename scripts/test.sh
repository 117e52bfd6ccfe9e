#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, unit, property and
# integration tests (integration tests start real ringkv-node processes on
# loopback ports), then the Docker fault suite when Docker is available.
# Installs missing build prerequisites first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/prereqs.sh
ensure_prereqs

if cargo fmt --version >/dev/null 2>&1; then
    echo "== cargo fmt --check"
    cargo fmt --all -- --check
else
    echo "== rustfmt is not installed; skipping the format check"
fi

echo "== build (release; the first build compiles RocksDB: 15-20 minutes)"
cargo build --release --workspace --all-features --bins --locked

if cargo clippy --version >/dev/null 2>&1; then
    echo "== cargo clippy"
    cargo clippy --release --workspace --all-features --all-targets --locked -- -D warnings
else
    echo "== clippy is not installed; skipping lints"
fi

# The RESP tests drive the nodes with Redis's own tools; the monitoring
# tests run a real Prometheus, the console tests a headless Chromium, the
# clock tests run a node under libfaketime.
ensure_tools redis-cli:redis-tools redis-benchmark:redis-tools \
    prometheus:prometheus promtool:prometheus chromium:chromium faketime:faketime
# ...and redis-py, the most used Redis library, against the hash commands.
ensure_python_modules redis:redis==5.2.1

# scripts/simulate.sh --planted applies these to a scratch tree; a patch
# the code has moved away from would silently test nothing.
echo "== planted bugs still apply"
for patch in scripts/planted-bugs/*.patch; do
    git apply --check "$patch"
done

echo "== Kubernetes manifests (schema validation)"
deploy/k8s/validate.sh

echo "== tests"
cargo test --release --workspace --all-features --locked

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo "== Docker fault suite"
    deploy/docker/fault-tests.sh
else
    echo "== Docker is not available here: skipping the Docker fault suite (deploy/docker/fault-tests.sh)"
fi
