#!/usr/bin/env bash
# Installs the project-local tools (the pinned nats-server) into .tools/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_nats_server
log "nats-server: $("$NATS_SERVER" --version)"
