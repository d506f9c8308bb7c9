#!/usr/bin/env bash
# The local demo: builds the binaries, starts the whole stack on loopback
# (its own nats-server, a fresh `switchyard_demo` database, ingest, router,
# sender and the WA Bridges simulator with the Cloud API simulator beside it),
# adds three WA Bridges demo tenants and one Cloud API tenant, provisions the
# bridges and the Cloud number, sends demo traffic through both simulators'
# webhook sides and prints each tenant's conversation as it left on its own
# bridge or number. The stack keeps running (logs and pids under .run/);
# `deploy/down.sh` stops it. `--stop` stops it at the end instead. See
# deploy/README.md.
#
# Ports (override through the environment): DEMO_NATS_PORT=14222,
# DEMO_INGEST_PORT=18080, DEMO_SIM_PORT=18090, DEMO_CLOUD_SIM_PORT=18091,
# DEMO_OPS_PORT_BASE=19100 (ingest +1, router +2, sender +3). Port 4222 is
# never used.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STOP_AT_END=0
for arg in "$@"; do
  case "$arg" in
    --stop) STOP_AT_END=1 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $arg (try --help)" ;;
  esac
done

RUN_DIR="$REPO_ROOT/.run"
NATS_PORT="${DEMO_NATS_PORT:-14222}"
INGEST_PORT="${DEMO_INGEST_PORT:-18080}"
SIM_PORT="${DEMO_SIM_PORT:-18090}"
CLOUD_SIM_PORT="${DEMO_CLOUD_SIM_PORT:-18091}"
OPS_BASE="${DEMO_OPS_PORT_BASE:-19100}"
DEMO_DB="switchyard_demo"
API_KEY="sk_demo_local"
WEBHOOK_SECRET="demo-webhook-secret-not-for-production"
SIM_URL="http://127.0.0.1:$SIM_PORT"
CLOUD_SIM_URL="http://127.0.0.1:$CLOUD_SIM_PORT"
# The Cloud API's app secret (signs every Cloud webhook) and verify token (the
# GET handshake): fixed local-only values like the ones above.
CLOUD_APP_SECRET="demo-cloud-app-secret-not-for-production"
CLOUD_VERIFY_TOKEN="demo-cloud-verify-token"
[[ "$NATS_PORT" != 4222 ]] || die "DEMO_NATS_PORT must not be 4222 (the machine's own NATS)"

install_nats_server
find_postgres
command -v curl >/dev/null || die "curl is needed"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"

# A previous demo still running: stop it first, so this run starts clean.
if compgen -G "$RUN_DIR/*.pid" >/dev/null; then
  log "stopping the previous demo stack"
  bash "$REPO_ROOT/deploy/down.sh"
fi
mkdir -p "$RUN_DIR"

log "building the binaries (cargo, target dir $CARGO_TARGET_DIR)"
(cd "$REPO_ROOT" && cargo build --quiet --bins -p switchyard-ingest -p switchyard-router \
  -p switchyard-sender -p switchyard-bridge-sim -p switchyard-cli)
BIN="$CARGO_TARGET_DIR/debug"

for port in "$NATS_PORT" "$INGEST_PORT" "$SIM_PORT" "$CLOUD_SIM_PORT" $((OPS_BASE + 1)) $((OPS_BASE + 2)) $((OPS_BASE + 3)); do
  ! tcp_open 127.0.0.1 "$port" || die "port $port is taken; set DEMO_*_PORT (see deploy/README.md)"
done

# Starts "$@" in the background with its log and pid under .run/.
start() {
  local name="$1"; shift
  "$@" >"$RUN_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
}

# Waits (at most $3 seconds) until GET $2 answers 2xx; $1 names it for errors.
wait_http() {
  local what="$1" url="$2" deadline=$((SECONDS + ${3:-30}))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$what did not come up; see $RUN_DIR/*.log"
    sleep 0.2
  done
}

log "nats-server on 127.0.0.1:$NATS_PORT (store $RUN_DIR/nats)"
rm -rf "$RUN_DIR/nats"
start nats "$NATS_SERVER" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$RUN_DIR/nats" -m "$((OPS_BASE))"
wait_http nats-server "http://127.0.0.1:$OPS_BASE/healthz"

ADMIN_URL="$DATABASE_URL"
DEMO_URL="$(url_with_database "$ADMIN_URL" "$DEMO_DB")"
log "fresh database $DEMO_DB (dropped and recreated: it holds demo data only)"
psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$DEMO_DB\" WITH (FORCE)" >/dev/null
ensure_database "$DEMO_DB"
export DATABASE_URL="$DEMO_URL"
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
export WA_API_URL="$SIM_URL" WA_API_KEY="$API_KEY"
export SWITCHYARD_WEBHOOK_SECRET="$WEBHOOK_SECRET"
export SWITCHYARD_PUBLIC_URL="http://127.0.0.1:$INGEST_PORT"
export SWITCHYARD_LOG="${SWITCHYARD_LOG:-info}"
# The Cloud API settings: ingest's /cloud route, the sender's Graph URL (the
# Cloud simulator), and a token key made for this run that seals (CLI) and
# opens (sender) the Cloud tenant's token. Secrets travel in the environment,
# never on a command line.
export SWITCHYARD_CLOUD_APP_SECRET="$CLOUD_APP_SECRET" SWITCHYARD_CLOUD_VERIFY_TOKEN="$CLOUD_VERIFY_TOKEN"
export SWITCHYARD_CLOUD_API_URL="$CLOUD_SIM_URL"
SWITCHYARD_CLOUD_TOKEN_KEYS="$("$BIN/switchyard" tenants cloud keys-generate demo1)"
export SWITCHYARD_CLOUD_TOKEN_KEYS
"$BIN/switchyard" migrate

log "wabridges-sim on $SIM_URL (Cloud API simulator on $CLOUD_SIM_URL), ingest on 127.0.0.1:$INGEST_PORT, router, sender"
# The Cloud simulator reads its app secret and verify token from the
# environment above; --cloud-real-clock: Meta's 24 h window, as the services'.
start wabridges-sim "$BIN/wabridges-sim" --addr "127.0.0.1:$SIM_PORT" --api-key "$API_KEY" \
  --cloud-addr "127.0.0.1:$CLOUD_SIM_PORT" --cloud-real-clock
SWITCHYARD_HTTP_ADDR="127.0.0.1:$INGEST_PORT" SWITCHYARD_OPS_ADDR="127.0.0.1:$((OPS_BASE + 1))" \
  start ingest "$BIN/switchyard-ingest"
SWITCHYARD_OPS_ADDR="127.0.0.1:$((OPS_BASE + 2))" start router "$BIN/switchyard-router"
SWITCHYARD_OPS_ADDR="127.0.0.1:$((OPS_BASE + 3))" start sender "$BIN/switchyard-sender"
wait_http wabridges-sim "$SIM_URL/_sim/bridges"
wait_http "Cloud API simulator" "$CLOUD_SIM_URL/_sim/cloud/state"
for i in 1 2 3; do
  wait_http "service on ops port $((OPS_BASE + i))" "http://127.0.0.1:$((OPS_BASE + i))/readyz" 60
done

add_demo_tenants "$BIN/switchyard"
add_demo_cloud_tenant "$BIN/switchyard"
log "Cloud webhooks to ingest: PUT $CLOUD_SIM_URL/_sim/cloud/webhook, then Meta's GET handshake"
jq -nc --arg url "http://127.0.0.1:$INGEST_PORT/cloud" '{url: $url}' \
  | curl -fsS -X PUT --data-binary @- "$CLOUD_SIM_URL/_sim/cloud/webhook"
curl -fsS -X POST "$CLOUD_SIM_URL/_sim/cloud/handshake" | jq -e .verified >/dev/null \
  || die "ingest's /cloud did not answer the verification handshake; see $RUN_DIR/ingest.log"
send_demo_traffic
send_demo_cloud_traffic
EXPECTED=$DEMO_EXPECTED_REPLIES
CLOUD_EXPECTED=$DEMO_CLOUD_EXPECTED_REPLIES

deadline=$((SECONDS + 60))
until (($(curl -fsS "$SIM_URL/_sim/sends" | jq length) >= EXPECTED)); do
  ((SECONDS < deadline)) || die "only $(curl -fsS "$SIM_URL/_sim/sends" | jq length) of $EXPECTED replies arrived; see $RUN_DIR/*.log"
  sleep 0.2
done
until (($(cloud_replies | jq length) >= CLOUD_EXPECTED)); do
  ((SECONDS < deadline)) || die "only $(cloud_replies | jq length) of $CLOUD_EXPECTED Cloud API replies arrived; see $RUN_DIR/*.log"
  sleep 0.2
done

log "what each bridge sent (GET $SIM_URL/_sim/sends?customer_ref=...)"
for tenant in acme globex initech; do
  printf '\n\033[1m%s\033[0m (bridge %s)\n' "$tenant" \
    "$(curl -fsS "$SIM_URL/_sim/bridges/$tenant" | jq -r '"#\(.id), phone +\(.phone)"')"
  curl -fsS "$SIM_URL/_sim/sends?customer_ref=$tenant" | jq -r \
    '.[] | "  to +\(.chat): \(.body | gsub("\n"; "\n      "))"'
done
others=$(curl -fsS "$SIM_URL/_sim/sends" | jq '[.[] | select(.customer_ref as $r | ["acme","globex","initech"] | index($r) | not)] | length')
echo
if ((others == 0)); then
  log "every reply went out on its own tenant's bridge"
else
  die "$others replies went to a bridge that is not a demo tenant's"
fi

log "what the Cloud API number sent (GET $CLOUD_SIM_URL/_sim/cloud/sends)"
printf '\n\033[1m%s\033[0m (Cloud API, phone number id %s, +%s)\n' \
  "$DEMO_CLOUD_TENANT" "$DEMO_CLOUD_NUMBER" "$DEMO_CLOUD_DISPLAY"
cloud_replies | jq -r '.[] | "  to \(.to): \(.body.text.body // "(\(.kind))" | gsub("\n"; "\n      "))"'
# Every accepted Cloud send must have used the tenant's own number and token
# (the token is compared inside jq, from the environment: never printed).
foreign=$(cloud_replies | DEMO_CLOUD_TOKEN="$DEMO_CLOUD_TOKEN" jq --arg number "$DEMO_CLOUD_NUMBER" \
  '[.[] | select(.phone_number_id != $number or .token != $ENV.DEMO_CLOUD_TOKEN)] | length')
echo
if ((foreign == 0)); then
  log "every Cloud API reply went out on $DEMO_CLOUD_TENANT's own phone number id with its own token"
else
  die "$foreign Cloud API replies went out on another number or with another token"
fi

if ((STOP_AT_END)); then
  bash "$REPO_ROOT/deploy/down.sh"
else
  cat >&2 <<EOF

The stack is running (logs: $RUN_DIR/*.log):
  ingest      http://127.0.0.1:$INGEST_PORT/hook/<tenant>/<token>
  simulator   $SIM_URL/_sim/sends   (control API: docs/wabridges.md)
  Cloud API   $CLOUD_SIM_URL/_sim/cloud/sends   (control API: docs/cloud-api.md section 12)
  nats        nats://127.0.0.1:$NATS_PORT
  database    $DEMO_DB
  ops         http://127.0.0.1:$((OPS_BASE + 1))/metrics (ingest), +2 router, +3 sender
Try: curl -s -XPOST $CLOUD_SIM_URL/_sim/cloud/batches -d '[{"kind":"message","phone_number_id":"$DEMO_CLOUD_NUMBER","from":{"wa_id":"447700900019"},"content":{"type":"text","body":"hi"}}]'
 or: curl -s -XPOST $SIM_URL/_sim/bridges/acme/webhook -d '{"event":"message","message_id":"3EB0DEMO1","chat_id":"447700900009@s.whatsapp.net","from_me":false,"timestamp":$(date +%s),"body":"hi"}'
Stop it with: bash deploy/down.sh
EOF
fi
