# Sourced by the scripts in scripts/: makes sure the machine can build
# ringkv, installing what is missing on Debian/Ubuntu.
#
# RocksDB is C++ compiled from source (needs a C++ compiler) and its Rust
# bindings are generated with libclang; ringkv-bench's etcd driver needs
# protoc. Cargo's build cache goes outside the
# clone ($HOME/.cache/ringkv/target unless CARGO_TARGET_DIR is set), so the
# 15-20 minute RocksDB build happens once per machine, not once per clone.

ensure_prereqs() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "ringkv: cargo not found; install Rust 1.88 or newer with rustup, then rerun" >&2
        exit 1
    fi
    local need=()
    command -v c++ >/dev/null 2>&1 || need+=(g++)
    command -v make >/dev/null 2>&1 || need+=(make)
    # ringkv-bench's etcd driver generates gRPC code with protoc at build time.
    command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
    if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 \
        && ! ls /usr/lib/*/libclang.so >/dev/null 2>&1 \
        && [ -z "${LIBCLANG_PATH:-}" ]; then
        need+=(libclang-dev)
    fi
    if [ "${#need[@]}" -gt 0 ]; then
        echo "Installing build prerequisites: ${need[*]}"
        apt_install "${need[@]}"
    fi
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ringkv/target}"
}

# ensure_tools COMMAND:PACKAGE...: installs the Debian package of each
# command that is missing (the tests' own tools, e.g. redis-cli).
ensure_tools() {
    local need=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        echo "Installing test tools: ${need[*]}"
        apt_install "${need[@]}"
    fi
}

# ensure_python_modules MODULE:REQUIREMENT...: installs, with pip, each
# Python module python3 cannot import (the tests' own Redis client).
ensure_python_modules() {
    local pair
    for pair in "$@"; do
        if ! python3 -c "import ${pair%%:*}" >/dev/null 2>&1; then
            echo "Installing the Python package ${pair#*:}"
            python3 -m pip install --quiet --disable-pip-version-check "${pair#*:}"
        fi
    done
}

apt_install() {
    local need=("$@")
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        else
            echo "ringkv: missing ${need[*]}; install them (apt-get install ${need[*]}) and rerun" >&2
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ringkv: missing ${need[*]}; install them with your package manager and rerun" >&2
        exit 1
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}
