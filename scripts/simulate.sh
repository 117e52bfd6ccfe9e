#!/usr/bin/env bash
# The deterministic simulation (node/src/sim) beyond CI's fixed seeds.
#
#   scripts/simulate.sh --seeds N [--first SEED] [--mix MIX] [--change C]
#       sweeps N seeds (default first seed 100000; MIX one of partition,
#       crash, pause, clock, lossy, mixed; default: each in turn; C a
#       topology change made during the faults: join, decommission,
#       removenode, replace, or churn (all of them in a row, with restarts);
#       default none) and lists every failing seed
#       with the command that replays it;
#   scripts/simulate.sh --replay SEED --mix MIX [--change C]
#       runs one seed again and prints its history, event by event;
#   scripts/simulate.sh --planted
#       applies each deliberately broken change in scripts/planted-bugs/ to
#       a scratch worktree and checks that CI's seeds catch it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/prereqs.sh
ensure_prereqs

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

mode="" seeds="" first="" mix="" seed="" change=""
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) mode=sweep; seeds="${2:?--seeds needs a count}"; shift 2 ;;
        --first) first="${2:?--first needs a seed}"; shift 2 ;;
        --mix) mix="${2:?--mix needs a name}"; shift 2 ;;
        --change) change="${2:?--change needs a name}"; shift 2 ;;
        --replay) mode=replay; seed="${2:?--replay needs a seed}"; shift 2 ;;
        --planted) mode=planted; shift ;;
        *) usage ;;
    esac
done

test_sim() {
    cargo test --release --locked -p ringkv-node --lib "$@"
}

case "$mode" in
    sweep)
        SIM_SEEDS="$seeds" SIM_FIRST_SEED="${first:-100000}" SIM_MIX="$mix" SIM_CHANGE="$change" \
            test_sim sim::tests::sweep -- --ignored --nocapture
        ;;
    replay)
        SIM_SEED="$seed" SIM_MIX="${mix:-mixed}" SIM_CHANGE="$change" \
            test_sim sim::tests::replay -- --ignored --nocapture
        ;;
    planted)
        caught=0 total=0
        for patch in scripts/planted-bugs/*.patch; do
            total=$((total + 1))
            name="$(basename "$patch" .patch)"
            tree="$(mktemp -d)/ringkv-$name"
            git worktree add --quiet --detach "$tree" HEAD
            trap 'git worktree remove --force "$tree" 2>/dev/null || true' EXIT
            git -C "$tree" apply "$PWD/$patch"
            echo "== planted bug: $name"
            log="$(mktemp)"
            if (cd "$tree" && cargo test --release --locked -p ringkv-node --lib sim::tests::seeds_ >"$log" 2>&1); then
                echo "   NOT caught: CI's seeds all passed with $name"
            else
                caught=$((caught + 1))
                grep -m 3 -E '^seed [0-9]+' "$log" | sed 's/^/   caught: /' || true
            fi
            git worktree remove --force "$tree"
            trap - EXIT
        done
        echo "$caught of $total planted bugs caught by CI's seeds"
        [ "$caught" -eq "$total" ]
        ;;
    *) usage ;;
esac
