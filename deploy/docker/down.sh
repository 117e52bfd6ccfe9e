#!/usr/bin/env bash
# Stops the Docker cluster. Data stays in its volumes, so up.sh brings the
# same cluster back; `down.sh --volumes` deletes the data too.
set -euo pipefail
cd "$(dirname "$0")"
source lib.sh
files=(-f docker-compose.yml -f docker-compose.5nodes.yml)
# The secure variant's variables, so compose can read its file too.
export RINGKV_ADMIN_PASSWORD="${RINGKV_ADMIN_PASSWORD:-unused}"
[ -f docker-compose.secure.yml ] && files+=(-f docker-compose.secure.yml)
# Every profile, so a monitoring Prometheus stops too.
compose -p "${RINGKV_PROJECT:-ringkv}" "${files[@]}" --profile monitoring down "$@"
