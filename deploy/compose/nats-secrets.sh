#!/usr/bin/env bash
# The per-service NATS passwords of the compose stack, made once (a fresh
# random password per user, 24 random bytes in hex) under deploy/compose/secrets/
# (gitignored):
#
#   secrets/nats-<user>.password   one per user (ingest, router, sender, cli):
#                                  the compose secret the service reads through
#                                  NATS_PASSWORD_FILE=/run/secrets/nats-<user>-password
#   secrets/nats.env               SY_NATS_<USER>_PASSWORD=… for the three NATS
#                                  servers (env_file), which resolve the
#                                  $SY_NATS_*_PASSWORD of deploy/nats/permissions.conf
#
#   bash deploy/compose/nats-secrets.sh                  # makes what is missing, keeps the rest
#   bash deploy/compose/nats-secrets.sh --rotate router  # a new password for one user
#
# After a rotation, recreate the NATS servers (their environment changed) and
# restart that service (deploy/README.md, "NATS users and secrets"). The
# directory is 0700 (other users of the host cannot read it); the password
# files are 0644 because compose bind-mounts them into containers running as
# UID 10001.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets"
USERS=(ingest router sender cli)

rotate=""
case "${1:-}" in
  "") ;;
  --rotate)
    rotate="${2:-}"
    [[ " ${USERS[*]} " == *" $rotate "* ]] || { echo "usage: $0 [--rotate ingest|router|sender|cli]" >&2; exit 2; }
    ;;
  *) echo "usage: $0 [--rotate ingest|router|sender|cli]" >&2; exit 2 ;;
esac

mkdir -p "$DIR"
chmod 700 "$DIR"
for user in "${USERS[@]}"; do
  file="$DIR/nats-$user.password"
  if [[ ! -s "$file" || "$user" == "$rotate" ]]; then
    od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$file.tmp"
    echo >>"$file.tmp"
    chmod 644 "$file.tmp"
    mv "$file.tmp" "$file"
    echo "nats-secrets: new password for $user ($file)"
  fi
done

# The servers' side, always derived from the files above (one source).
env_file="$DIR/nats.env"
(
  umask 077
  for user in "${USERS[@]}"; do
    printf 'SY_NATS_%s_PASSWORD=%s\n' "${user^^}" "$(head -n1 "$DIR/nats-$user.password")"
  done >"$env_file.tmp"
)
mv "$env_file.tmp" "$env_file"
echo "nats-secrets: $env_file is current"
