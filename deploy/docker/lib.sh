# Sourced by the Docker scripts: the compose command of this machine.
compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose "$@"
    else
        echo "ringkv: neither 'docker compose' nor 'docker-compose' is installed" >&2
        return 1
    fi
}
