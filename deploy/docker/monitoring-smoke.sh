#!/usr/bin/env bash
# Brings up the compose cluster with its `monitoring` profile as a private
# project and checks that its Prometheus scrapes all three nodes with the
# shipped configuration and has loaded the alert rules; then removes it.
# Run by fault-tests.sh.
set -euo pipefail
cd "$(dirname "$0")"
export RINGKV_PROJECT=ringkv-monitoring RINGKV_SUBNET_PREFIX=172.30.250
export RINGKV_CLIENT_PORT=17420 RINGKV_HTTP_PORT=17492 RINGKV_RESP_PORT=17491
export RINGKV_PROMETHEUS_PORT=19090
prometheus="http://127.0.0.1:$RINGKV_PROMETHEUS_PORT"
trap './down.sh --volumes >/dev/null 2>&1 || true' EXIT
fail() { echo "monitoring-smoke: $*" >&2; exit 1; }

./up.sh --monitoring

# query EXPR: the value of an instant query that yields one sample.
query() {
    curl -sf --get "$prometheus/api/v1/query" --data-urlencode "query=$1" \
        | jq -r '.data.result[0].value[1] // empty'
}
# expect EXPR VALUE: waits up to 120 s for the query to yield VALUE.
expect() {
    local got=""
    for _ in $(seq 1 240); do
        got=$(query "$1" 2>/dev/null || true)
        [ "$got" = "$2" ] && return 0
        sleep 0.5
    done
    fail "$1: expected $2, Prometheus says '${got}'"
}
expect 'count(up{job="ringkv",cluster="ringkv-docker"} == 1)' 3
expect 'sum(ringkv_cluster_members{status="up"})' 9
expect 'count(ringkv_build_info)' 3
# Every alert the shipped rules file defines.
shipped=$(grep -c '^ *- alert:' ../prometheus/ringkv-alerts.yml)
rules=$(curl -sf "$prometheus/api/v1/rules" | jq '[.data.groups[].rules[]] | length')
[ "$rules" = "$shipped" ] || fail "Prometheus loaded $rules alert rules, expected $shipped"
echo "monitoring-smoke: the compose monitoring profile's Prometheus scrapes 3 nodes and holds $shipped alert rules"
