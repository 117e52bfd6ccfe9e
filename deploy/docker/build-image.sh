#!/usr/bin/env bash
# Builds the ringkv Docker image (default tag ringkv:local) without a
# registry or base image: the release binaries and exactly the shared
# libraries they link are staged into a FROM scratch image. Prints its size.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/prereqs.sh
ensure_prereqs
if ! command -v docker >/dev/null 2>&1; then
    echo "ringkv: docker not found; install Docker Engine to build the image" >&2
    exit 1
fi
tag="${RINGKV_IMAGE:-ringkv:local}"

echo "== building release binaries"
cargo build --release --workspace --all-features --bins --locked
bin="$CARGO_TARGET_DIR/release"

ctx="$(mktemp -d /tmp/ringkv-image.XXXXXX)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/bin" "$root/etc" "$ctx/data"
for b in ringkv-node ringkv; do
    cp "$bin/$b" "$root/bin/$b"
    strip --strip-unneeded "$root/bin/$b" 2>/dev/null || true
done
# The dynamic loader and every library the binaries need, at the paths
# they are loaded from.
for lib in $(ldd "$bin/ringkv-node" "$bin/ringkv" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
echo "ringkv:x:10001:10001:ringkv:/data:/bin/ringkv" >"$root/etc/passwd"
echo "ringkv:x:10001:" >"$root/etc/group"
echo "hosts: files dns" >"$root/etc/nsswitch.conf"

cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 data /data
USER 10001:10001
ENV RINGKV_DATA_DIR=/data \
    RINGKV_LISTEN_CLIENT=0.0.0.0:7400 \
    RINGKV_LISTEN_PEER=0.0.0.0:7401 \
    RINGKV_LISTEN_GOSSIP=0.0.0.0:7402 \
    RINGKV_LISTEN_HTTP=0.0.0.0:7480 \
    RINGKV_LISTEN_RESP=0.0.0.0:7479
EXPOSE 7400/tcp 7401/tcp 7402/udp 7479/tcp 7480/tcp
VOLUME /data
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/bin/ringkv", "--host", "127.0.0.1:7400", "--timeout-ms", "2000", "info"]
ENTRYPOINT ["/bin/ringkv-node"]
DOCKERFILE

echo "== docker build -t $tag"
docker build --quiet -t "$tag" "$ctx" >/dev/null
size=$(docker image inspect "$tag" --format '{{.Size}}')
echo "built $tag: $((size / 1024 / 1024)) MiB ($(ls "$root/bin" | tr '\n' ' ')+ $(find "$root/lib" "$root/lib64" "$root/usr" -type f 2>/dev/null | wc -l) shared libraries)"
