#!/usr/bin/env bash
# Validates the Kubernetes manifests against the schemas of a current
# Kubernetes release, offline (kubernetes-validate carries them), with strict
# checking: an unknown or misspelt field fails. No cluster is needed.
# scripts/test.sh (and so CI) runs it. Installs kubernetes-validate into a
# virtualenv under $HOME/.cache/ringkv the first time.
set -euo pipefail
cd "$(dirname "$0")"
source ../../scripts/lib/prereqs.sh
ensure_tools python3:python3
# Debian's python3 makes virtualenvs only with python3-venv.
python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.37.0}"
VALIDATOR_VERSION="1.37.0"
venv="$HOME/.cache/ringkv/venv"
validate="$venv/bin/kubernetes-validate"
if ! "$validate" --version 2>/dev/null | grep -qx "$VALIDATOR_VERSION"; then
    echo "Installing kubernetes-validate $VALIDATOR_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "kubernetes-validate==$VALIDATOR_VERSION"
fi

# The validator must catch a broken manifest, or its passing means nothing.
broken="$(mktemp /tmp/ringkv-k8s-broken.XXXXXX.yaml)"
trap 'rm -f "$broken"' EXIT
sed 's/^  serviceName: ringkv$/  serviceNmae: ringkv/' ringkv.yaml >"$broken"
if "$validate" --strict --quiet -k "$KUBERNETES_VERSION" "$broken" >/dev/null 2>&1; then
    echo "kubernetes-validate accepted a StatefulSet with a misspelt field; not trusting it" >&2
    exit 1
fi

"$validate" --strict -k "$KUBERNETES_VERSION" ./*.yaml
