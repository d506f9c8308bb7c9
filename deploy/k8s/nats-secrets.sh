#!/usr/bin/env bash
# The per-service NATS passwords on Kubernetes: one random password per user
# (ingest, router, sender, cli; 24 random bytes in hex), written into two
# Secrets with the same keys (<user>-password):
#   switchyard-nats-users  in the NATS namespace: the servers' environment
#                          (deploy/k8s/nats-values.yaml, container.env);
#   switchyard-nats        in Switchyard's namespace: each Deployment mounts
#                          only its own key as NATS_PASSWORD_FILE.
#
#   bash deploy/k8s/nats-secrets.sh [--namespace switchyard] [--nats-namespace nats]
#       creates both Secrets (refuses if either exists: nothing is overwritten)
#   bash deploy/k8s/nats-secrets.sh --rotate router [--namespace …] [--nats-namespace …]
#       a new password for one user, patched into both Secrets
#   --print  writes the Secrets (creation only) to stdout instead of applying them
#
# The passwords never appear on a command line (files in a private temporary
# directory). With a secret store (External Secrets, Vault, Sealed Secrets),
# create the same two Secrets from it instead. After creating them, install
# or upgrade the nats chart; after a rotation, restart the NATS servers and
# then the rotated service (deploy/README.md, "NATS users and secrets").
set -euo pipefail

USERS=(ingest router sender cli)
NS=switchyard
NATS_NS=nats
rotate=""
print=0
usage() { echo "usage: $0 [--namespace NS] [--nats-namespace NS] [--rotate ingest|router|sender|cli] [--print]" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --namespace) NS="${2:?}"; shift 2 ;;
    --nats-namespace) NATS_NS="${2:?}"; shift 2 ;;
    --rotate) rotate="${2:-}"; shift 2 || usage
      [[ " ${USERS[*]} " == *" $rotate "* ]] || usage ;;
    --print) print=1; shift ;;
    *) usage ;;
  esac
done
command -v kubectl >/dev/null || { echo "kubectl is needed" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 700 "$tmp"
new_password() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

if [[ -n "$rotate" ]]; then
  ((print == 0)) || usage
  printf '{"data":{"%s-password":"%s"}}' "$rotate" "$(new_password | base64 -w0)" >"$tmp/patch.json"
  kubectl -n "$NATS_NS" patch secret switchyard-nats-users --type merge --patch-file "$tmp/patch.json"
  kubectl -n "$NS" patch secret switchyard-nats --type merge --patch-file "$tmp/patch.json"
  echo "nats-secrets: new password for $rotate in $NATS_NS/switchyard-nats-users and $NS/switchyard-nats."
  echo "Now: kubectl -n $NATS_NS rollout restart statefulset/nats && kubectl -n $NATS_NS rollout status statefulset/nats"
  [[ "$rotate" == cli ]] || echo " and: kubectl -n $NS rollout restart deployment/switchyard-$rotate"
  exit 0
fi

from_files=()
for user in "${USERS[@]}"; do
  new_password >"$tmp/$user-password"
  from_files+=(--from-file="$user-password=$tmp/$user-password")
done
manifests() {
  kubectl create secret generic switchyard-nats-users -n "$NATS_NS" "${from_files[@]}" \
    --dry-run=client -o yaml
  echo "---"
  kubectl create secret generic switchyard-nats -n "$NS" "${from_files[@]}" \
    --dry-run=client -o yaml
}
if ((print)); then
  manifests
else
  # `create`, not `apply`: an existing Secret is an error, never overwritten.
  manifests | kubectl create -f -
fi
