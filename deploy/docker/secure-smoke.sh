#!/usr/bin/env bash
# Brings up the secure Docker variant (up-secure.sh) as a private project,
# checks that the shell works against it with TLS and a user, and that a
# plaintext client, a client that does not trust the cluster CA and a wrong
# password are all refused; then removes it. Run by fault-tests.sh.
set -euo pipefail
cd "$(dirname "$0")"
export RINGKV_PROJECT=ringkv-secure RINGKV_SUBNET_PREFIX=172.30.249
export RINGKV_CLIENT_PORT=17410 RINGKV_HTTP_PORT=17490 RINGKV_RESP_PORT=17489
RINGKV_SECURE_DIR=$(mktemp -d)
export RINGKV_SECURE_DIR
shell="${CARGO_TARGET_DIR:-$HOME/.cache/ringkv/target}/release/ringkv"
host="127.0.0.1:$RINGKV_CLIENT_PORT"
cleanup() {
    ./down.sh --volumes >/dev/null 2>&1 || true
    rm -rf "$RINGKV_SECURE_DIR"
}
trap cleanup EXIT

./up-secure.sh
export RINGKV_CA="$RINGKV_SECURE_DIR/ca.pem" RINGKV_USER=admin
RINGKV_PASSWORD=$(cat "$RINGKV_SECURE_DIR/admin.password")
export RINGKV_PASSWORD
fail() { echo "secure-smoke: $*" >&2; exit 1; }

"$shell" --host "$host" put smoke works >/dev/null || fail "put over TLS as admin"
[ "$("$shell" --host "$host" get smoke)" = works ] || fail "get over TLS as admin"
RINGKV_NEW_PASSWORD=reader-password-1 "$shell" --host "$host" user add reader --role read-only \
    >/dev/null || fail "user add"
[ "$(RINGKV_USER=reader RINGKV_PASSWORD=reader-password-1 "$shell" --host "$host" get smoke)" = works ] \
    || fail "a read-only user reads"
if RINGKV_USER=reader RINGKV_PASSWORD=reader-password-1 "$shell" --host "$host" put smoke no \
    2>/dev/null; then fail "a read-only user wrote"; fi
if RINGKV_PASSWORD=wrong "$shell" --host "$host" get smoke 2>/dev/null; then
    fail "a wrong password was accepted"
fi
if env -u RINGKV_CA "$shell" --host "$host" --timeout-ms 2000 get smoke 2>/dev/null; then
    fail "a plaintext client was served"
fi
other=$(mktemp -d)
../tls/make-certs.sh "$other" >/dev/null
if RINGKV_CA="$other/ca.pem" "$shell" --host "$host" --timeout-ms 2000 get smoke 2>/dev/null; then
    fail "a client trusting another CA connected"
fi
rm -rf "$other"
"$shell" --host "$host" status
echo "secure-smoke: TLS, users and roles work against the secure compose cluster"
