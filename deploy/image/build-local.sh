#!/usr/bin/env bash
# Builds the image from the real Dockerfile on a machine that has no image
# registry but reaches Debian's package archive (issue #18, point 7), then
# runs every binary in it. Not part of CI: a release build from scratch takes
# long. See deploy/README.md, "The image".
#
# The Dockerfile starts from rust:<RUST_VERSION>-slim-<DEBIAN_VERSION> and
# debian:<DEBIAN_VERSION>-slim (both read from the Dockerfile's ARG lines). With
# no registry, this script makes both locally under exactly those tags, so the
# Dockerfile builds unmodified:
#   - debian:bookworm-slim: `debootstrap --variant=minbase` from the Debian
#     mirror the host's apt uses, trimmed with the dpkg path excludes of the
#     official slim images (docs, man pages, locales), then `docker import`ed.
#     Close to the official image, not byte-identical.
#   - rust:1.95.0-slim-bookworm: a generated Dockerfile FROM that base that
#     installs what the official slim image installs (ca-certificates, gcc,
#     libc6-dev; no pkg-config, so a build needing more fails here as it would
#     there) and copies in the host's own toolchain of that version (its
#     rustc, cargo, rustdoc and lib/, found through `rustc +<version> --print
#     sysroot`) as /usr/local/rust, with CARGO_HOME=/usr/local/cargo like the
#     official image, but no rustup. A Dockerfile rather than a chroot: apt
#     runs in a container, with no mounts to clean up on the host. When this
#     host adds CA certificates of its own (/usr/local/share/ca-certificates,
#     e.g. for a TLS-intercepting egress proxy), cargo in that image trusts
#     them through CARGO_HTTP_CAINFO only: /etc/ssl/certs, whose bundle the
#     runtime image copies, stays Debian's (checked at the end).
# Existing base images are kept unless --rebuild is given.
#
# The daemon: if `docker info` answers (DOCKER_HOST or the default socket) it
# is used; otherwise a private dockerd starts (Debian's docker.io, containerd
# and runc), detached, with everything under the work directory: vfs storage,
# no iptables, no bridge (so builds use --network host), at nice 10 so a
# release build leaves the machine usable. It keeps running for the next run;
# `--stop-daemon` stops it. Without the buildx plugin the legacy builder is
# used (DOCKER_BUILDKIT=0; the Dockerfile's `# syntax=` line is then ignored).
#
# Then: `docker build --network host` of the repository's Dockerfile as
# switchyard:local, `<binary> --version` of the five binaries and `--probe` of
# the three services (read-only root, UID 10001, no network: the probe must
# fail, and say why), the simulator served for real from a container, and the
# image sizes. Every step is logged with its duration.
#
# Usage: bash deploy/image/build-local.sh [--rebuild] [--bases-only] [--stop-daemon]
#   --rebuild      make the two base images again even if they exist
#   --bases-only   stop after the daemon and the base images (no release build)
#   --stop-daemon  stop the private daemon this script started, and exit
# Needs root for debootstrap and dockerd. Environment: SWITCHYARD_IMAGE_WORK
# (work directory, default ~/.cache/switchyard-image; outside the repository so
# no tree walk meets the daemon's files), SWITCHYARD_IMAGE (switchyard:local),
# DEBIAN_MIRROR (else the host's apt mirror), RUST_SYSROOT (else the host's
# toolchain), SWITCHYARD_IMAGE_SIM_PORT (18190), SWITCHYARD_IMAGE_EXTRA_CA_DIR
# (/usr/local/share/ca-certificates).
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

REBUILD=0
BASES_ONLY=0
STOP_DAEMON=0
for arg in "$@"; do
  case "$arg" in
    --rebuild) REBUILD=1 ;;
    --bases-only) BASES_ONLY=1 ;;
    --stop-daemon) STOP_DAEMON=1 ;;
    -h|--help) awk 'NR > 1 && /^# shellcheck/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument $arg (try --help)" ;;
  esac
done

WORK="${SWITCHYARD_IMAGE_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard-image}"
IMAGE="${SWITCHYARD_IMAGE:-switchyard:local}"
SIM_PORT="${SWITCHYARD_IMAGE_SIM_PORT:-18190}"
EXTRA_CA_DIR="${SWITCHYARD_IMAGE_EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"
DAEMON_DIR="$WORK/docker"
DAEMON_PID="$DAEMON_DIR/dockerd.pid"
PRIVATE_HOST="unix://$DAEMON_DIR/docker.sock"
DAEMON_NICE=10
BINARIES=(switchyard-ingest switchyard-router switchyard-sender switchyard wabridges-sim)
SERVICES=(switchyard-ingest switchyard-router switchyard-sender)

# The versions the Dockerfile names, so the base tags always match it.
dockerfile_arg() {
  sed -n "s/^ARG $1=\(.*\)$/\1/p" "$REPO_ROOT/Dockerfile" | head -n 1
}
RUST_VERSION="$(dockerfile_arg RUST_VERSION)"
DEBIAN_VERSION="$(dockerfile_arg DEBIAN_VERSION)"
[[ -n "$RUST_VERSION" && -n "$DEBIAN_VERSION" ]] \
  || die "no ARG RUST_VERSION= / ARG DEBIAN_VERSION= line in $REPO_ROOT/Dockerfile"
DEBIAN_TAG="debian:$DEBIAN_VERSION-slim"
# The commit the binaries print, taken once: HEAD may move during a long build.
COMMIT="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
RUST_TAG="rust:$RUST_VERSION-slim-$DEBIAN_VERSION"

# Each step is timed; the table is printed at the end.
TIMINGS=()
step() {
  local label="$1" start=$SECONDS elapsed
  shift
  log "$label"
  "$@"
  elapsed=$((SECONDS - start))
  TIMINGS+=("$(printf '%-44s %3dm%02ds' "$label" $((elapsed / 60)) $((elapsed % 60)))")
  log "$label: done in $((elapsed / 60))m$((elapsed % 60))s"
}

need_root() {
  [[ $EUID -eq 0 ]] || die "$1 needs root (run with sudo)"
}

have_image() {
  docker image inspect "$1" >/dev/null 2>&1
}

# Empties a directory this script made, refusing if anything is mounted in it
# (a debootstrap that failed half-way may leave /proc mounted there).
clear_dir() {
  if [[ -d "$1" ]] && findmnt -rn -o TARGET | grep -q "^$1\(/\|$\)"; then
    die "something is still mounted under $1: unmount it first"
  fi
  rm -rf "$1"
}

private_daemon_pid() {
  local pid
  [[ -s "$DAEMON_PID" ]] || return 1
  pid="$(cat "$DAEMON_PID")"
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 1
  printf '%s\n' "$pid"
}

stop_daemon() {
  local pid
  if ! pid="$(private_daemon_pid)"; then
    log "no private dockerd of this script runs"
    return 0
  fi
  log "stopping the private dockerd (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 30); do
    [[ -d "/proc/$pid" ]] || return 0
    sleep 1
  done
  die "dockerd $pid did not stop within 30 s"
}

start_daemon() {
  if [[ "${DOCKER_HOST:-}" != "$PRIVATE_HOST" ]] && docker info >/dev/null 2>&1; then
    log "a daemon answers at ${DOCKER_HOST:-the default socket}: using it (builds run at its own priority)"
    return 0
  fi
  export DOCKER_HOST="$PRIVATE_HOST"
  if docker info >/dev/null 2>&1; then
    log "the private daemon already runs: $DOCKER_HOST"
    return 0
  fi
  need_root "starting dockerd"
  local tool
  for tool in dockerd containerd runc; do
    command -v "$tool" >/dev/null \
      || die "no daemon answers and $tool is missing: apt-get install -y docker.io containerd runc"
  done
  mkdir -p "$DAEMON_DIR"
  log "starting a private dockerd at $DOCKER_HOST (vfs, no bridge, no iptables, nice $DAEMON_NICE; log $DAEMON_DIR/dockerd.log)"
  setsid nice -n "$DAEMON_NICE" dockerd \
    --host "$DOCKER_HOST" \
    --data-root "$DAEMON_DIR/data" \
    --exec-root "$DAEMON_DIR/exec" \
    --pidfile "$DAEMON_PID" \
    --storage-driver=vfs --iptables=false --bridge=none \
    </dev/null >"$DAEMON_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
      docker version --format 'daemon: Docker {{.Server.Version}} (API {{.Server.APIVersion}}), client {{.Client.Version}}' >&2
      return 0
    fi
    sleep 1
  done
  tail -n 20 "$DAEMON_DIR/dockerd.log" >&2
  die "dockerd did not answer within 60 s"
}

choose_builder() {
  if docker buildx version >/dev/null 2>&1; then
    log "builder: BuildKit (docker buildx)"
  else
    export DOCKER_BUILDKIT=0
    log "builder: legacy (no buildx plugin; DOCKER_BUILDKIT=0, the '# syntax=' line is ignored)"
  fi
}

# The first URI of the host's apt sources that serves suite $1 (deb822
# .sources files, then one-line .list files).
apt_mirror_for() {
  local suite="$1" found
  shopt -s nullglob
  local sources=(/etc/apt/sources.list.d/*.sources) lists=(/etc/apt/sources.list.d/*.list)
  shopt -u nullglob
  [[ ! -f /etc/apt/sources.list ]] || lists+=(/etc/apt/sources.list)
  found="$(for f in "${sources[@]}"; do cat "$f"; echo; done | awk -v suite="$suite" '
    function flush() {
      if (!done && uris != "" && enabled && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1]; done = 1 }
      uris = ""; suites = ""; enabled = 1
    }
    BEGIN { enabled = 1 }
    /^[[:space:]]*$/ { flush(); next }
    /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
    /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
    /^Enabled:[[:space:]]*no/ { enabled = 0 }
    END { flush() }')"
  if [[ -z "$found" && ${#lists[@]} -gt 0 ]]; then
    found="$(cat "${lists[@]}" | awk -v suite="$suite" '
      $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite && !done) { print $i; done = 1 } }')"
  fi
  printf '%s\n' "${found%/}"
}

make_debian_base() {
  if have_image "$DEBIAN_TAG" && ((REBUILD == 0)); then
    log "$DEBIAN_TAG exists: kept (--rebuild makes it again)"
    return 0
  fi
  need_root "debootstrap"
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
  local mirror security rootfs="$WORK/rootfs-$DEBIAN_VERSION"
  mirror="${DEBIAN_MIRROR:-$(apt_mirror_for "$DEBIAN_VERSION")}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  security="$(apt_mirror_for "$DEBIAN_VERSION-security")"
  security="${security:-http://deb.debian.org/debian-security}"
  log "debootstrap --variant=minbase $DEBIAN_VERSION from $mirror (log $WORK/debootstrap.log)"
  clear_dir "$rootfs"
  mkdir -p "$WORK"
  debootstrap --variant=minbase "$DEBIAN_VERSION" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }

  # Slim: what the official slim images leave out (their dpkg path
  # excludes), also for every package installed later.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{groff,info,linda,locale,man}/* "$rootfs"/usr/share/lintian/overrides/*
  # apt: the same mirror, with updates and security; no package lists or
  # downloaded packages in the image.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $DEBIAN_VERSION $DEBIAN_VERSION-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $DEBIAN_VERSION-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs/var/log/bootstrap.log"
  # The host's name and resolver stay out (the container runtime provides both).
  : >"$rootfs/etc/hostname"
  : >"$rootfs/etc/resolv.conf"

  log "docker import as $DEBIAN_TAG"
  tar --numeric-owner -C "$rootfs" -cf - . \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        --message "debootstrap --variant=minbase $DEBIAN_VERSION $mirror (deploy/image/build-local.sh)" \
        - "$DEBIAN_TAG" >/dev/null
  clear_dir "$rootfs"
}

# The host's toolchain of RUST_VERSION: its sysroot (bin/, lib/).
host_sysroot() {
  local sysroot="${RUST_SYSROOT:-}"
  if [[ -z "$sysroot" ]]; then
    sysroot="$(rustc "+$RUST_VERSION" --print sysroot 2>/dev/null || rustc --print sysroot 2>/dev/null)" \
      || die "no rustc on this machine: set RUST_SYSROOT to a Rust $RUST_VERSION toolchain"
  fi
  "$sysroot/bin/rustc" --version | grep -q "^rustc $RUST_VERSION " \
    || die "$sysroot is not Rust $RUST_VERSION ($("$sysroot/bin/rustc" --version)): set RUST_SYSROOT"
  printf '%s\n' "$sysroot"
}

make_rust_base() {
  if have_image "$RUST_TAG" && ((REBUILD == 0)); then
    log "$RUST_TAG exists: kept (--rebuild makes it again)"
    return 0
  fi
  local sysroot context="$WORK/rust-context"
  sysroot="$(host_sysroot)"
  log "toolchain: $sysroot ($("$sysroot/bin/rustc" --version))"
  clear_dir "$context"
  mkdir -p "$context/rust/bin"
  # Hard links when the toolchain is on the same file system (no 500 MB copy).
  cp -al "$sysroot/lib" "$context/rust/" 2>/dev/null || cp -a "$sysroot/lib" "$context/rust/"
  cp -a "$sysroot/bin/rustc" "$sysroot/bin/cargo" "$sysroot/bin/rustdoc" "$context/rust/bin/"
  cat >"$context/Dockerfile" <<EOF
# Generated by deploy/image/build-local.sh: stands in for the official
# $RUST_TAG (its packages and CARGO_HOME; the host's toolchain, no rustup).
FROM $DEBIAN_TAG
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/*
COPY rust/ /usr/local/rust/
ENV RUST_VERSION=$RUST_VERSION \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && chmod -R a+w /usr/local/cargo \\
 && rustc --version && cargo --version
EOF
  # The CA certificates this host adds to Debian's (a TLS-intercepting egress
  # proxy, say): without them cargo cannot reach crates.io from the build. They
  # go to cargo alone (CARGO_HTTP_CAINFO), never into /etc/ssl/certs, whose
  # bundle the Dockerfile copies into the runtime image.
  local extra_ca=()
  shopt -s nullglob
  extra_ca=("$EXTRA_CA_DIR"/*.crt)
  shopt -u nullglob
  if ((${#extra_ca[@]} > 0)); then
    log "this host adds ${#extra_ca[@]} CA certificate(s) ($EXTRA_CA_DIR): cargo in $RUST_TAG trusts them through CARGO_HTTP_CAINFO, outside /etc/ssl/certs"
    cat "${extra_ca[@]}" >"$context/host-extra-ca.crt"
    cat >>"$context/Dockerfile" <<'EOF'
# Build-only trust for this host's egress (see deploy/image/build-local.sh).
COPY host-extra-ca.crt /usr/local/share/build-ca/host-extra.crt
RUN cat /etc/ssl/certs/ca-certificates.crt /usr/local/share/build-ca/host-extra.crt \
      >/usr/local/share/build-ca/bundle.crt
ENV CARGO_HTTP_CAINFO=/usr/local/share/build-ca/bundle.crt
EOF
  fi
  docker build --network host -t "$RUST_TAG" "$context"
  clear_dir "$context"
}

build_image() {
  if [[ -f "${CARGO_HOME:-$HOME/.cargo}/config.toml" ]] && grep -q 'replace-with' "${CARGO_HOME:-$HOME/.cargo}/config.toml"; then
    log "note: this host replaces crates.io in its cargo config; the image build does not see it and fetches from crates.io"
  fi
  log "docker build --network host -t $IMAGE (commit $COMMIT) from $REPO_ROOT"
  docker build --network host --build-arg SWITCHYARD_GIT_COMMIT="$COMMIT" -t "$IMAGE" "$REPO_ROOT"
}

# The way compose and Kubernetes run it: read-only root, UID/GID 10001.
run_in_image() {
  docker run --rm --read-only --user 10001:10001 "$@"
}

check_versions() {
  local bin out
  for bin in "${BINARIES[@]}"; do
    out="$(run_in_image --network none "$IMAGE" "$bin" --version)" || die "$bin --version failed"
    printf '  %s --version: %s\n' "$bin" "$out"
    [[ "$out" == *"(commit $COMMIT)"* ]] || die "$bin --version does not name commit $COMMIT"
  done
}

# No service runs in these containers: the probe must say not ready and exit 1.
check_probes() {
  local svc out rc
  for svc in "${SERVICES[@]}"; do
    rc=0
    out="$(run_in_image --network none "$IMAGE" "$svc" --probe 2>&1)" || rc=$?
    printf '  %s --probe (nothing listening): exit %s: %s\n' "$svc" "$rc" "$out"
    ((rc != 0)) || die "$svc --probe passed with no service running"
    [[ "$out" == *"/readyz"* ]] || die "$svc --probe failed without naming /readyz"
  done
}

# One binary served for real: the simulator needs neither NATS nor PostgreSQL.
check_simulator() {
  local name="switchyard-local-sim-check" answer=""
  command -v curl >/dev/null || { log "no curl: simulator check skipped"; return 0; }
  docker rm -f "$name" >/dev/null 2>&1 || true
  # A throw-away key for this check only (the simulator never prints it).
  docker run -d --name "$name" --read-only --user 10001:10001 --network host \
    -e WA_API_KEY=sk_image_check_local -e WABRIDGES_SIM_ADDR="127.0.0.1:$SIM_PORT" \
    "$IMAGE" wabridges-sim >/dev/null
  for _ in $(seq 1 20); do
    answer="$(curl -fsS "http://127.0.0.1:$SIM_PORT/_sim/bridges" 2>/dev/null)" && break
    sleep 0.5
  done
  printf '  wabridges-sim in a container (read-only, UID 10001), GET /_sim/bridges: %s\n' "${answer:-no answer}"
  docker logs "$name" 2>&1 | tail -n 3 | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    log: /'
  docker rm -f "$name" >/dev/null
  [[ -n "$answer" ]] || die "the simulator in the image did not answer on 127.0.0.1:$SIM_PORT"
}

# The runtime's CA bundle is the one Debian's ca-certificates made in the
# build stage, without the build-only certificates of this host.
check_ca_bundle() {
  local runtime base
  runtime="$(run_in_image --network none "$IMAGE" sha256sum /etc/ssl/certs/ca-certificates.crt)"
  base="$(run_in_image --network none "$RUST_TAG" sha256sum /etc/ssl/certs/ca-certificates.crt)"
  printf '  runtime /etc/ssl/certs/ca-certificates.crt: %s\n' "${runtime%% *}"
  [[ "${runtime%% *}" == "${base%% *}" ]] || die "the runtime's CA bundle is not the build stage's Debian bundle"
  printf "  equal to Debian's bundle in %s (no build-only certificate in the image)\n" "$RUST_TAG"
}

show_sizes() {
  local tag bytes
  for tag in "$IMAGE" "$DEBIAN_TAG" "$RUST_TAG"; do
    bytes="$(docker image inspect --format '{{.Size}}' "$tag")"
    printf '  %-28s %5d MB\n' "$tag" $((bytes / 1000000))
  done
}

if ((STOP_DAEMON)); then
  stop_daemon
  exit 0
fi
command -v docker >/dev/null || die "the docker CLI is missing"
mkdir -p "$WORK"
log "work directory $WORK; bases $DEBIAN_TAG and $RUST_TAG; image $IMAGE"

step "daemon" start_daemon
choose_builder
step "base image $DEBIAN_TAG" make_debian_base
step "base image $RUST_TAG" make_rust_base
if ((BASES_ONLY)); then
  log "--bases-only: stopping before the release build"
else
  step "docker build $IMAGE" build_image
  step "--version of the five binaries" check_versions
  step "--probe of the three services" check_probes
  step "wabridges-sim served from the image" check_simulator
  step "the runtime's CA bundle" check_ca_bundle
  log "image sizes"
  show_sizes
fi
log "step durations"
printf '  %s\n' "${TIMINGS[@]}"
if [[ "${DOCKER_HOST:-}" == "$PRIVATE_HOST" ]]; then
  log "the private daemon keeps running: DOCKER_HOST=$DOCKER_HOST docker ...; stop it with: bash deploy/image/build-local.sh --stop-daemon"
fi
