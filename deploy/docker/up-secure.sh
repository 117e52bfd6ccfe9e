#!/usr/bin/env bash
# Starts the Docker cluster with everything on (docker-compose.secure.yml):
# mutual TLS between nodes, TLS and authentication for clients,
# authenticated gossip. On the first run it makes, in deploy/docker/secure/
# (or $RINGKV_SECURE_DIR): a CA and a node certificate for the nodes'
# addresses (deploy/tls/make-certs.sh), a client certificate, a gossip
# secret and the admin's password. Then it waits until node 1 sees every
# node UP and NORMAL, and prints how to use the shell against it.
# Stop it with deploy/docker/down.sh (add --volumes to delete the data).
set -euo pipefail
cd "$(dirname "$0")"
source lib.sh
project="${RINGKV_PROJECT:-ringkv}"
prefix="${RINGKV_SUBNET_PREFIX:-172.30.247}"
secure="${RINGKV_SECURE_DIR:-$PWD/secure}"
shell="${CARGO_TARGET_DIR:-$HOME/.cache/ringkv/target}/release/ringkv"
host="127.0.0.1:${RINGKV_CLIENT_PORT:-7400}"

if [ ! -f "$secure/node.pem" ]; then
    ../tls/make-certs.sh "$secure" node "$prefix.11" "$prefix.12" "$prefix.13" \
        ringkv-1 ringkv-2 ringkv-3 >/dev/null
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secure/gossip.secret"
    head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secure/admin.password"
fi
# The nodes run as user 10001: let them read the files (a test setup; keep
# real keys readable only by the node's user).
chmod 755 "$secure"
chmod 644 "$secure"/*.pem "$secure"/*.key "$secure/gossip.secret" "$secure/admin.password"
export RINGKV_SECURE_DIR="$secure"
RINGKV_ADMIN_PASSWORD=$(cat "$secure/admin.password")
export RINGKV_ADMIN_PASSWORD

./build-image.sh
compose -p "$project" -f docker-compose.yml -f docker-compose.secure.yml up -d
export RINGKV_CA="$secure/ca.pem" RINGKV_USER=admin RINGKV_PASSWORD="$RINGKV_ADMIN_PASSWORD"
for _ in $(seq 1 600); do
    normal=$("$shell" --host "$host" status 2>/dev/null | grep -c '^UP *NORMAL' || true)
    if [ "$normal" -ge 3 ]; then
        "$shell" --host "$host" status
        echo "ringkv is up with TLS and authentication. Use the shell with:"
        echo "  export RINGKV_CA=$secure/ca.pem RINGKV_USER=admin RINGKV_PASSWORD=\$(cat $secure/admin.password)"
        echo "  $shell --host $host status"
        exit 0
    fi
    sleep 0.5
done
echo "ringkv: the secure cluster did not reach 3 nodes within 300 s; see: docker logs ${project}_ringkv-1_1" >&2
exit 1
