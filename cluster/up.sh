#!/usr/bin/env bash
# Starts the compose cluster and forms it through the CLI. Safe to re-run.
#
#   cluster/up.sh            three nodes (docker-compose.yml)
#   cluster/up.sh --five     five nodes (plus docker-compose.5.yml)
#
# The image has no shell, so the steps that need a loop run here, on the
# host, and every `tessera` command runs inside a node's container with
# `docker exec` (so `node1`, `node2`, ... resolve on the private network):
#
#   1. The cluster sealing key: $STATE/secrets/sealing.key, 64 hex chars,
#      made once (the secrets/ dir is mode 0700; the file is 0644 so that
#      the container's unprivileged user can read its read-only mount).
#   2. `docker compose up -d`.
#   3. Waits for node1's /healthz, then `cluster init` on node1. The admin
#      token it prints once goes to $STATE/.admin-token (mode 0600). On a
#      re-run node1 answers ClusterAlreadyInitializedException: the saved
#      token (or $TESSERA_ADMIN_TOKEN) is used from then on.
#   4. For every other node not yet a voter: waits for its /healthz, then
#      `cluster add-node --node-id ID --peer-addr nodeN:7701 --api-addr nodeN:7700`,
#      ID being node_id in cluster/nodeN.toml.
#   5. Waits until every node is a voter and a leader is known, and prints
#      `tessera cluster status`.
#
# Environment (all optional):
#   TESSERA_CLUSTER_STATE  dir for secrets/ and .admin-token (default: cluster/)
#   COMPOSE_PROJECT_NAME   compose project (default: tessera)
#   TESSERA_IMAGE          image (default: tessera:local; cluster/build-image.sh)
#   TESSERA_PUBLIC_URL     token issuer base for `cluster init`
#                          (default: http://localhost:<node1's host port>)
#   TESSERA_UP_TIMEOUT     seconds to wait for each step (default: 120)
#   TESSERA_NODE<N>_PORT, TESSERA_BIND, ...   see docker-compose.yml
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

nodes=(1 2 3)
files=("$here/docker-compose.yml")
while [ $# -gt 0 ]; do
    case "$1" in
        --five)
            nodes=(1 2 3 4 5)
            files+=("$here/docker-compose.5.yml")
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "up.sh: unknown argument $1 (try --help)" >&2
            exit 2
            ;;
    esac
    shift
done

state="${TESSERA_CLUSTER_STATE:-$here}"
mkdir -p "$state"
state="$(cd "$state" && pwd)"
token_file="$state/.admin-token"
key_file="$state/secrets/sealing.key"
timeout_s="${TESSERA_UP_TIMEOUT:-120}"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-tessera}"
export TESSERA_IMAGE="${TESSERA_IMAGE:-tessera:local}"
export TESSERA_SEALING_KEY="$key_file"
join_file="$state/secrets/join.token"

log() { echo "up.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

# `docker compose` (v2 plugin) if present, else the standalone docker-compose.
if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
else
    die "neither 'docker compose' nor 'docker-compose' is installed"
fi
compose_args=(-p "$COMPOSE_PROJECT_NAME")
for f in "${files[@]}"; do
    compose_args+=(-f "$f")
done
compose() { "${compose_cmd[@]}" "${compose_args[@]}" "$@"; }

docker image inspect "$TESSERA_IMAGE" >/dev/null 2>&1 ||
    die "image $TESSERA_IMAGE not found: build it first with cluster/build-image.sh"

# --- 1. the sealing key -----------------------------------------------------
if [ ! -s "$key_file" ]; then
    (
        umask 077
        mkdir -p "$state/secrets"
        chmod 0700 "$state/secrets"
        tmp="$key_file.tmp.$$"
        head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$tmp"
        [ "$(wc -c <"$tmp")" -eq 64 ] || { rm -f "$tmp"; exit 1; }
        chmod 0644 "$tmp"
        mv "$tmp" "$key_file"
    ) || die "could not write $key_file"
    log "made the cluster sealing key $key_file"
fi

# --- 1b. the join token -----------------------------------------------------
# Every node starts with it; once node1 is initialised it is registered with
# the cluster (no use limit, 30 days), and add-node admits nodes that hold it.
if [ ! -s "$join_file" ]; then
    (
        umask 077
        mkdir -p "$state/secrets"
        id="$(head -c 8 /dev/urandom | od -An -v -tx1 | tr -d ' \n')"
        secret="$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        printf 'tsrj_%s_%s\n' "$id" "$secret" >"$join_file.tmp.$$"
        mv "$join_file.tmp.$$" "$join_file"
    ) || die "could not write $join_file"
    log "made the join token $join_file"
fi
TESSERA_JOIN_TOKEN="$(tr -d ' \n' <"$join_file")"
export TESSERA_JOIN_TOKEN

# --- 2. the containers ------------------------------------------------------
services=()
for n in "${nodes[@]}"; do services+=("node$n"); done
log "starting ${services[*]} (project $COMPOSE_PROJECT_NAME, image $TESSERA_IMAGE)"
compose up -d "${services[@]}"

container() {
    local id
    id="$(compose ps -q "node$1" 2>/dev/null | head -n1)"
    [ -n "$id" ] || die "no container for node$1"
    echo "$id"
}

# host:port of node N's published api port, as the host reaches it.
api_host_port() {
    local hp
    hp="$(compose port "node$1" 7700 2>/dev/null | tail -n1)"
    [ -n "$hp" ] || return 1
    echo "${hp/0.0.0.0/127.0.0.1}"
}

# The HTTP status of GET path on host:port, or nothing (bash's /dev/tcp: no
# curl needed).
http_status() {
    local host="${1%:*}" port="${1##*:}"
    # shellcheck disable=SC2016 # the inner script expands its own $0..$2
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$0" >&3
        IFS=" " read -r _ code _ <&3 || exit 1
        echo "$code"' "$host" "$port" "$2" 2>/dev/null || true
}

wait_healthy() {
    local n="$1" deadline=$((SECONDS + timeout_s)) hp
    while :; do
        if hp="$(api_host_port "$n")" && [ "$(http_status "$hp" /healthz)" = "200" ]; then
            return 0
        fi
        case "$(docker inspect -f '{{.State.Status}}' "$(container "$n")" 2>/dev/null)" in
            exited | dead)
                compose logs --tail 30 "node$n" >&2 || true
                die "node$n exited (see its log above)"
                ;;
        esac
        if [ $SECONDS -ge $deadline ]; then
            compose logs --tail 30 "node$n" >&2 || true
            die "node$n did not answer /healthz within ${timeout_s}s"
        fi
        sleep 1
    done
}

# Runs the CLI inside node1's container against node1's api; the admin token
# travels in the environment, not on a command line. It uses node1's
# loopback address, the only place a fresh node answers `cluster init` from
# without a bootstrap token.
cli() {
    docker exec -e TESSERA_ADMIN_TOKEN -e TESSERA_JOIN_TOKEN "$(container 1)" \
        /usr/local/bin/tessera --endpoint http://127.0.0.1:7700 "$@"
}

# --- 3. cluster init on node1 -----------------------------------------------
wait_healthy 1
node1_hp="$(api_host_port 1)"
public_url="${TESSERA_PUBLIC_URL:-http://localhost:${node1_hp##*:}}"
deadline=$((SECONDS + timeout_s))
while :; do
    set +e
    out="$(cli --output json cluster init --public-url "$public_url" 2>&1)"
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then
        token="$(printf '%s' "$out" | sed -n 's/.*"admin_token":"\([^"]*\)".*/\1/p')"
        [ -n "$token" ] || die "cluster init printed no admin token: $out"
        if [ -s "$token_file" ]; then
            log "node1 was fresh: replacing the old admin token in $token_file"
        fi
        (
            umask 077
            printf '%s\n' "$token" >"$token_file.tmp.$$"
            chmod 0600 "$token_file.tmp.$$"
            mv "$token_file.tmp.$$" "$token_file"
        )
        log "cluster initialised (public url $public_url); admin token saved to $token_file"
        break
    fi
    if printf '%s' "$out" | grep -q "ClusterAlreadyInitializedException"; then
        log "node1 already belongs to an initialised cluster"
        break
    fi
    if [ $SECONDS -ge $deadline ]; then
        die "cluster init on node1 kept failing for ${timeout_s}s; last: $out"
    fi
    sleep 1
done

if [ -z "${TESSERA_ADMIN_TOKEN:-}" ]; then
    [ -s "$token_file" ] ||
        die "the cluster is initialised but there is no admin token in $token_file; export TESSERA_ADMIN_TOKEN"
    TESSERA_ADMIN_TOKEN="$(tr -d ' \n' <"$token_file")"
fi
export TESSERA_ADMIN_TOKEN

# Register the join token (again: a re-run replaces an expired one).
join_id="${TESSERA_JOIN_TOKEN:5:16}"
cli cluster join-token revoke "$join_id" >/dev/null 2>&1 || true
deadline=$((SECONDS + timeout_s))
while ! out="$(cli --output json cluster join-token create --max-uses 0 --ttl 2592000 \
    --description "cluster/up.sh" 2>&1)"; do
    [ $SECONDS -lt $deadline ] || die "registering the join token kept failing for ${timeout_s}s; last: $out"
    sleep 1
done

# Status as JSON, retried while node1 has no leader or is busy.
status_json() {
    local deadline=$((SECONDS + timeout_s)) out
    while :; do
        if out="$(cli --output json cluster status 2>&1)"; then
            printf '%s' "$out"
            return 0
        fi
        if printf '%s' "$out" | grep -q "Unauthenticated\|PermissionDenied"; then
            die "node1 refused the admin token from ${TESSERA_ADMIN_TOKEN:+the environment or }$token_file: $out"
        fi
        [ $SECONDS -lt $deadline ] || die "cluster status kept failing for ${timeout_s}s; last: $out"
        sleep 1
    done
}

# The node id of service nodeN: node_id in cluster/nodeN.toml (N unless an
# operator gave the node a new id after retiring the old one).
id_of() {
    local id
    id="$(sed -n 's/^[[:space:]]*node_id[[:space:]]*=[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$here/node$1.toml" | head -n1)"
    [ -n "$id" ] || die "no node_id in $here/node$1.toml"
    echo "$id"
}

# The role ("voter", "learner") of node N in a status JSON, or nothing.
role_of() {
    printf '%s' "$1" | grep -o '{[^{}]*}' | grep -E "\"node_id\":$2[,}]" |
        grep -o '"role":"[a-z]*"' | sed 's/"role":"\(.*\)"/\1/' | head -n1 || true
}

is_retired() {
    printf '%s' "$1" | grep -o '"retired_node_ids":\[[^]]*\]' | grep -qE "[[,]$2[],]"
}

# --- 4. add-node for the others ---------------------------------------------
for n in "${nodes[@]}"; do
    [ "$n" = 1 ] && continue
    id="$(id_of "$n")"
    status="$(status_json)"
    role="$(role_of "$status" "$id")"
    case "$role" in
        voter)
            log "node$n (id $id) is already a voter"
            continue
            ;;
        learner)
            die "node$n (id $id) is a member but still a learner (an earlier add-node was cut short);" \
                "see 'Troubleshooting' in cluster/README.md"
            ;;
    esac
    if is_retired "$status" "$id"; then
        die "node id $id (node$n) was removed from this cluster and can never rejoin: set a new node_id" \
            "in $here/node$n.toml and remove the volume of node$n (see 'Scaling' in cluster/README.md)"
    fi
    wait_healthy "$n"
    log "adding node$n as node id $id"
    deadline=$((SECONDS + timeout_s))
    while ! out="$(cli --output json cluster add-node --node-id "$id" \
        --peer-addr "node$n:7701" --api-addr "node$n:7700" 2>&1)"; do
        if printf '%s' "$out" | grep -q "NodeExistsException\|NodeIdRetiredException"; then
            die "cluster add-node $id: $out"
        fi
        [ $SECONDS -lt $deadline ] || die "cluster add-node $id kept failing for ${timeout_s}s; last: $out"
        sleep 1
    done
done

# --- 5. wait for every voter and a leader -----------------------------------
deadline=$((SECONDS + timeout_s))
while :; do
    status="$(status_json)"
    missing=()
    for n in "${nodes[@]}"; do
        [ "$(role_of "$status" "$(id_of "$n")")" = voter ] || missing+=("node$n")
    done
    if [ ${#missing[@]} -eq 0 ] && printf '%s' "$status" | grep -q '"leader_id":[0-9]'; then
        break
    fi
    [ $SECONDS -lt $deadline ] ||
        die "after ${timeout_s}s: not voters: ${missing[*]:-none}; status: $status"
    sleep 1
done

cli cluster status
echo
echo "Tessera is up: ${#nodes[@]} nodes. api ports on this host:"
for n in "${nodes[@]}"; do
    echo "  node$n  http://$(api_host_port "$n")   (/healthz /readyz /metrics)"
done
echo "Admin token: $token_file"
echo "  export TESSERA_ADMIN_TOKEN=\$(cat $token_file)"
echo "  tessera --endpoint http://$(api_host_port 1) cluster status"
