#!/usr/bin/env bash
# The production topology on one machine, as processes on loopback: a 3-node
# nats-server cluster (JetStream, R3 streams, the per-service users and
# permissions of deploy/nats/permissions.conf), the migrations, 2 ingest,
# 3 router and 3 sender replicas (release build) and the WA Bridges simulator,
# every port picked free, logs and pids under .run/cluster/. Then it adds the
# demo tenants and sends demo traffic through it. The stack keeps running;
# `deploy/cluster.sh --stop` stops it (only the pids it recorded).
#
# The simulator posts to ingest replica 1 (SWITCHYARD_PUBLIC_URL): there is no
# load balancer here; replica 2 answers on its own port for direct posts.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUN_DIR="$REPO_ROOT/.run/cluster"
CLUSTER_DB="switchyard_cluster"
API_KEY="sk_cluster_local"
WEBHOOK_SECRET="cluster-webhook-secret-not-for-production"
SERVICES=(ingest-1 ingest-2 router-1 router-2 router-3 sender-1 sender-2 sender-3 wabridges-sim)

stop_all() {
  local name pidfile pid
  for name in "${SERVICES[@]}" nats-1 nats-2 nats-3; do
    pidfile="$RUN_DIR/$name.pid"
    [[ -f "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
      log "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  --stop) stop_all; exit 0 ;;
  -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "unknown argument $1 (try --help)" ;;
esac

install_nats_server
find_postgres
command -v curl >/dev/null || die "curl is needed"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
if compgen -G "$RUN_DIR/*.pid" >/dev/null; then
  log "stopping the previous cluster"
  stop_all
fi
mkdir -p "$RUN_DIR"

log "building the release binaries (target dir $CARGO_TARGET_DIR)"
(cd "$REPO_ROOT" && cargo build --quiet --release --bins -p switchyard-ingest -p switchyard-router \
  -p switchyard-sender -p switchyard-bridge-sim -p switchyard-cli -p switchyard-loadtest)
BIN="$CARGO_TARGET_DIR/release"

# N distinct free loopback ports (bound together, then released).
free_ports() {
  python3 -c 'import socket,sys
s=[socket.socket() for _ in range(int(sys.argv[1]))]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))' "$1"
}
read -r -a P <<<"$(free_ports 21)"
NATS_CLIENT=("${P[0]}" "${P[1]}" "${P[2]}")
NATS_ROUTE=("${P[3]}" "${P[4]}" "${P[5]}")
NATS_MON=("${P[6]}" "${P[7]}" "${P[8]}")
INGEST_HTTP=("${P[9]}" "${P[10]}")
SIM_PORT="${P[11]}"
OPS=("${P[@]:12:8}")  # ingest-1 ingest-2 router-1..3 sender-1..3
SIM_URL="http://127.0.0.1:$SIM_PORT"

start() {
  local name="$1"; shift
  "$@" >"$RUN_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
}

wait_http() {
  local what="$1" url="$2" deadline=$((SECONDS + ${3:-30}))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$what did not come up; see $RUN_DIR/*.log"
    sleep 0.2
  done
}

# Waits until GET $2 answers 2xx (true) or process $1 has exited (false).
wait_ready_or_exit() {
  local pid="$1" url="$2" deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS < deadline)) || die "$url did not answer within 60 s; see $RUN_DIR/*.log"
    sleep 0.2
  done
}

# Per-service NATS passwords, fresh for this run (readable by this user only).
umask 077
for user in ingest router sender cli; do
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$RUN_DIR/nats-$user.password"
done
umask 022
export SY_NATS_INGEST_PASSWORD SY_NATS_ROUTER_PASSWORD SY_NATS_SENDER_PASSWORD SY_NATS_CLI_PASSWORD
SY_NATS_INGEST_PASSWORD="$(cat "$RUN_DIR/nats-ingest.password")"
SY_NATS_ROUTER_PASSWORD="$(cat "$RUN_DIR/nats-router.password")"
SY_NATS_SENDER_PASSWORD="$(cat "$RUN_DIR/nats-sender.password")"
SY_NATS_CLI_PASSWORD="$(cat "$RUN_DIR/nats-cli.password")"

log "nats-server cluster: 3 nodes on client ports ${NATS_CLIENT[*]}"
cp "$REPO_ROOT/deploy/nats/permissions.conf" "$RUN_DIR/permissions.conf"
routes=""
for i in 0 1 2; do routes+="\"nats-route://127.0.0.1:${NATS_ROUTE[$i]}\", "; done
for i in 0 1 2; do
  n=$((i + 1))
  rm -rf "$RUN_DIR/nats-$n"
  cat >"$RUN_DIR/nats-$n.conf" <<EOF
server_name: switchyard-n$n
listen: 127.0.0.1:${NATS_CLIENT[$i]}
http: 127.0.0.1:${NATS_MON[$i]}
jetstream { store_dir: "$RUN_DIR/nats-$n", max_file_store: 4GB }
cluster {
  name: switchyard-local
  listen: 127.0.0.1:${NATS_ROUTE[$i]}
  routes: [${routes%, }]
}
include ./permissions.conf
EOF
  start "nats-$n" "$NATS_SERVER" -c "$RUN_DIR/nats-$n.conf"
done
for i in 0 1 2; do
  wait_http "nats node $((i + 1))" "http://127.0.0.1:${NATS_MON[$i]}/healthz?js-enabled-only=true" 30
done
# JetStream needs a meta leader before streams can be created.
deadline=$((SECONDS + 30))
until curl -fsS "http://127.0.0.1:${NATS_MON[0]}/jsz" | jq -e '.meta_cluster.leader // empty' >/dev/null; do
  ((SECONDS < deadline)) || die "the NATS cluster elected no JetStream leader; see $RUN_DIR/nats-*.log"
  sleep 0.3
done

ADMIN_URL="$DATABASE_URL"
DATABASE_URL="$(url_with_database "$ADMIN_URL" "$CLUSTER_DB")"
export DATABASE_URL
log "fresh database $CLUSTER_DB"
psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$CLUSTER_DB\" WITH (FORCE)" >/dev/null
DATABASE_URL="$ADMIN_URL" ensure_database "$CLUSTER_DB"

export NATS_URL
NATS_URL="$(printf 'nats://127.0.0.1:%s,' "${NATS_CLIENT[@]}")"
NATS_URL="${NATS_URL%,}"
export SWITCHYARD_STREAM_REPLICAS=3
export WA_API_URL="$SIM_URL" WA_API_KEY="$API_KEY"
export SWITCHYARD_WEBHOOK_SECRET="$WEBHOOK_SECRET"
export SWITCHYARD_PUBLIC_URL="http://127.0.0.1:${INGEST_HTTP[0]}"
export SWITCHYARD_LOG="${SWITCHYARD_LOG:-info}"

# The CLI runs as the operator's NATS user.
cli() { NATS_USER=cli NATS_PASSWORD_FILE="$RUN_DIR/nats-cli.password" "$BIN/switchyard" "$@"; }
log "migrations"
cli migrate

log "wabridges-sim on $SIM_URL; 2 ingest, 3 router, 3 sender replicas"
start wabridges-sim "$BIN/wabridges-sim" --addr "127.0.0.1:$SIM_PORT" --api-key "$API_KEY"
# exec: the recorded pid is the service itself, so --stop reaches it.
as() { local user="$1"; shift; NATS_USER="$user" NATS_PASSWORD_FILE="$RUN_DIR/nats-$user.password" exec "$@"; }
# ops-port index of each replica: ingest-1 ingest-2 router-1..3 sender-1..3
launch() {
  local name="$1" user="$2" ops="$3"
  local bin="$BIN/switchyard-${name%-*}"
  case "$name" in
    ingest-*) SWITCHYARD_HTTP_ADDR="127.0.0.1:${INGEST_HTTP[$((${name#*-} - 1))]}" \
      SWITCHYARD_OPS_ADDR="127.0.0.1:${OPS[$ops]}" start "$name" as "$user" "$bin" ;;
    *) SWITCHYARD_OPS_ADDR="127.0.0.1:${OPS[$ops]}" start "$name" as "$user" "$bin" ;;
  esac
}
# The first replica of each service alone, until it has run 5 s: it creates
# the R3 streams and KV buckets. On a cluster that has just formed the first
# creates can outlast the services' 5 s request timeout (replicas racing to
# create the same bucket make it worse), so it gets a few tries.
launch_first() {
  local name="$1" user="$2" ops="$3" attempt pid
  for attempt in 1 2 3 4 5; do
    launch "$name" "$user" "$ops"
    pid="$(cat "$RUN_DIR/$name.pid")"
    if wait_ready_or_exit "$pid" "http://127.0.0.1:${OPS[$ops]}/readyz" && sleep 6 && kill -0 "$pid" 2>/dev/null; then
      return 0
    fi
    ((attempt < 5)) || die "$name could not set up its streams and buckets; see $RUN_DIR/$name.log"
    log "$name exited during start-up (attempt $attempt); starting it again"
    cp "$RUN_DIR/$name.log" "$RUN_DIR/$name.attempt-$attempt.log"
  done
}
launch_first ingest-1 ingest 0
launch_first router-1 router 2
launch_first sender-1 sender 5
launch ingest-2 ingest 1
launch router-2 router 3
launch router-3 router 4
launch sender-2 sender 6
launch sender-3 sender 7
wait_http wabridges-sim "$SIM_URL/_sim/bridges"
for i in $(seq 0 7); do
  wait_http "service on ops port ${OPS[$i]}" "http://127.0.0.1:${OPS[$i]}/readyz" 60
done

add_demo_tenants cli
send_demo_traffic
EXPECTED=$DEMO_EXPECTED_REPLIES
deadline=$((SECONDS + 60))
until (($(curl -fsS "$SIM_URL/_sim/sends" | jq length) >= EXPECTED)); do
  ((SECONDS < deadline)) || die "only $(curl -fsS "$SIM_URL/_sim/sends" | jq length) of $EXPECTED replies arrived; see $RUN_DIR/*.log"
  sleep 0.2
done
for tenant in acme globex initech; do
  printf '\n\033[1m%s\033[0m\n' "$tenant"
  curl -fsS "$SIM_URL/_sim/sends?customer_ref=$tenant" | jq -r \
    '.[] | "  to +\(.chat): \(.body | gsub("\n"; "\n      "))"'
done
echo
replicas=$(curl -fsS "http://127.0.0.1:${NATS_MON[0]}/jsz?accounts=true&streams=true&config=true" \
  | jq -r '[.account_details[]?.stream_detail[]? | "\(.name)=R\(.config.num_replicas)"] | join(" ")')
violations=$(cat "$RUN_DIR"/nats-*.log | grep -c "Violation" || true)
log "streams: $replicas; permission violations in the NATS logs: $violations"
# The load tool against this cluster (deploy/README.md, "Loading the cluster").
ops_urls="$(printf 'http://127.0.0.1:%s,' "${OPS[@]:2:6}")"
nats_monitors="$(printf 'http://127.0.0.1:%s,' "${NATS_MON[@]}")"
cat >"$RUN_DIR/load.sh" <<EOF
#!/usr/bin/env bash
# Written by deploy/cluster.sh: switchyard-load against this cluster.
# Usage: bash $RUN_DIR/load.sh [scenario...] [switchyard-load flags]
export DATABASE_URL='$DATABASE_URL'
export SWITCHYARD_WEBHOOK_SECRET='$WEBHOOK_SECRET'
exec "$BIN/switchyard-load" --target "http://127.0.0.1:${INGEST_HTTP[0]},http://127.0.0.1:${INGEST_HTTP[1]}" \\
  --sim-url "$SIM_URL" --ops-urls "${ops_urls%,}" --pids-dir "$RUN_DIR" \\
  --nats-monitors "${nats_monitors%,}" "\$@"
EOF
cat >&2 <<EOF

The cluster is running (logs and pids: $RUN_DIR):
  nats        $NATS_URL   (monitoring http://127.0.0.1:${NATS_MON[0]}, ${NATS_MON[1]}, ${NATS_MON[2]})
  ingest      http://127.0.0.1:${INGEST_HTTP[0]}, http://127.0.0.1:${INGEST_HTTP[1]}
  simulator   $SIM_URL/_sim/sends
  ops ports   ${OPS[*]} (ingest-1 ingest-2 router-1..3 sender-1..3)
  database    $CLUSTER_DB
Load it with: bash $RUN_DIR/load.sh baseline flood
Stop it with: bash deploy/cluster.sh --stop
EOF
