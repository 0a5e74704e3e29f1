#!/usr/bin/env bash
# A three-node loopback cluster in a temporary directory, `tessera bench
# sync` against it, and everything stopped and removed at the end (also on
# failure or Ctrl-C).
#
#   benches/sync-cluster.sh                      push, idle and reconnect
#   benches/sync-cluster.sh push                 one scenario
#   benches/sync-cluster.sh push -- --writes-per-sec 400 --duration 30
#                                                flags after -- go to every bench run
#
# Environment:
#   TESSERA_BIN  the binary (default: target/release/tessera; build it
#                with `make release`)
#   BASE_PORT    node i listens on BASE_PORT + 10*i (api), +1 (peer),
#                +2 (sync, UDP); default 27700
#   IDLE_NODE    the node `idle` measures (default 2, a follower: the
#                leader's memory also moves with replication)
#   KEEP_DIR=1   keep the data directories and node logs
#
# The nodes run with the guest limit off ([limits] guests_burst = 0: setup
# makes thousands of guest identities from one address) and
# RUST_LOG=warn (ten thousand sessions would otherwise log as many lines).
# The exit status is 1 when a scenario missed a floor.
set -euo pipefail

BIN=${TESSERA_BIN:-target/release/tessera}
BASE=${BASE_PORT:-27700}
IDLE_NODE=${IDLE_NODE:-2}
[[ -x $BIN ]] || { echo "no binary at $BIN (make release, or set TESSERA_BIN)" >&2; exit 2; }

scenarios=()
while [[ $# -gt 0 && $1 != -- ]]; do scenarios+=("$1"); shift; done
[[ ${1:-} == -- ]] && shift
extra=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(push idle reconnect)

dir=$(mktemp -d "${TMPDIR:-/tmp}/tessera-sync-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ ${KEEP_DIR:-0} == 1 ]]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$dir/node.toml" <<'EOF'
[limits]
guests_burst = 0

[sync]
max_connections = 20000
EOF

api() { echo "127.0.0.1:$((BASE + 10 * $1))"; }
peer() { echo "127.0.0.1:$((BASE + 10 * $1 + 1))"; }
sync_addr() { echo "127.0.0.1:$((BASE + 10 * $1 + 2))"; }

declare -A node_pid
start() { # start ID [--join-token T]
    local id=$1; shift
    RUST_LOG=${RUST_LOG:-warn} "$BIN" serve --config "$dir/node.toml" --node-id "$id" --data-dir "$dir/n$id" \
        --api-addr "$(api "$id")" --peer-addr "$(peer "$id")" --sync-addr "$(sync_addr "$id")" "$@" \
        >"$dir/n$id.log" 2>&1 &
    pids+=($!)
    node_pid[$id]=$!
}
wait_port() {
    local host=${1%:*} port=${1##*:}
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1; see $dir" >&2
    return 1
}

join=$("$BIN" cluster join-token generate)
start 1
start 2 --join-token "$join"
start 3 --join-token "$join"
for i in 1 2 3; do wait_port "$(api "$i")"; done
"$BIN" --endpoint "http://$(api 1)" cluster form --token-file "$dir/admin-token" --join-token "$join" \
    --member "2=$(peer 2),$(api 2)" --member "3=$(peer 3),$(api 3)" >"$dir/form.log"
export TESSERA_ADMIN_TOKEN
TESSERA_ADMIN_TOKEN=$(cat "$dir/admin-token")
"$BIN" --endpoint "http://$(api 1)" cluster status

all="http://$(api 1),http://$(api 2),http://$(api 3)"
status=0
for s in "${scenarios[@]}"; do
    case $s in
    idle) cmd=("$BIN" bench sync --scenario idle --endpoint "http://$(api "$IDLE_NODE")" --node-pid "${node_pid[$IDLE_NODE]}") ;;
    *) cmd=("$BIN" bench sync --scenario "$s" --endpoint "$all") ;;
    esac
    cmd+=("${extra[@]}")
    echo "+ ${cmd[*]}" >&2
    "${cmd[@]}" || status=1
done
exit $status
