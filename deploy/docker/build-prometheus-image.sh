#!/usr/bin/env bash
# Builds the Prometheus image of the compose file's `monitoring` profile
# (default tag ringkv-prometheus:local) without a registry or base image:
# Debian's prometheus binary (installed when missing) and exactly the shared
# libraries it links are staged into a FROM scratch image, as build-image.sh
# does for ringkv. The configuration is mounted by the compose file from
# deploy/prometheus/.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/prereqs.sh
ensure_tools prometheus:prometheus
tag="${RINGKV_PROMETHEUS_IMAGE:-ringkv-prometheus:local}"
bin="$(command -v prometheus)"

ctx="$(mktemp -d /tmp/ringkv-prometheus-image.XXXXXX)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/bin" "$root/etc/prometheus" "$ctx/data"
cp "$bin" "$root/bin/prometheus"
for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
if [ -d /usr/share/prometheus ]; then
    mkdir -p "$root/usr/share"
    cp -rL /usr/share/prometheus "$root/usr/share/prometheus"
fi
echo "nobody:x:65534:65534:nobody:/prometheus:/bin/prometheus" >"$root/etc/passwd"
echo "nogroup:x:65534:" >"$root/etc/group"
echo "hosts: files dns" >"$root/etc/nsswitch.conf"

cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data /prometheus
USER 65534:65534
EXPOSE 9090/tcp
VOLUME /prometheus
ENTRYPOINT ["/bin/prometheus"]
DOCKERFILE

docker build --quiet -t "$tag" "$ctx" >/dev/null
echo "built $tag ($("$bin" --version 2>&1 | head -1))"
