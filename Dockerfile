# syntax=docker/dockerfile:1
#
# One image with every Switchyard binary: switchyard-ingest, switchyard-router,
# switchyard-sender, switchyard (the operator CLI, also the migration job) and
# wabridges-sim. Pick one with the container's command; there is no entrypoint.
#
#   docker build --build-arg SWITCHYARD_GIT_COMMIT="$(git rev-parse --short HEAD)" -t switchyard .
#
# Stages: `chef` (the toolchain and cargo-chef), `planner` (the dependency
# recipe), `builder` (dependencies first, in a layer of their own, then the
# workspace), `runtime` (debian slim, the five binaries, nothing else).
#
# Why cargo-chef rather than a hand-made stage of manifests and stub sources:
# the workspace has nine members, a build script, several [[bin]] and [[bench]]
# targets; a stub stage must mirror every one of them and silently stops
# caching when a member or target is added. cargo-chef derives the recipe
# (manifests, lock file, target skeletons) from the workspace itself, so the
# dependency layer is rebuilt only when Cargo.toml or Cargo.lock change. The
# price is one `cargo install` in the first stage, cached like any layer.
#
# The toolchain is the image's (RUST_VERSION, kept equal to rust-toolchain.toml's
# channel); rust-toolchain.toml stays out of the context (.dockerignore) so that
# rustup does not fetch the components it lists (rustfmt, clippy) for a build
# that needs neither.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_VERSION=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_VERSION} AS chef
RUN cargo install --locked --version 0.1.78 cargo-chef
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# The packages that own the five binaries (the load tool and the tests stay out).
ARG PACKAGES="-p switchyard-ingest -p switchyard-router -p switchyard-sender -p switchyard-cli -p switchyard-bridge-sim"
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer changes only with Cargo.toml / Cargo.lock.
# hadolint ignore=SC2086
RUN cargo chef cook --release --locked --recipe-path recipe.json ${PACKAGES}
COPY . .
# There is no .git in the context: the commit the binaries print comes from here
# (shared/build-info/build.rs falls back to it, then to "unknown").
ARG SWITCHYARD_GIT_COMMIT=unknown
# hadolint ignore=SC2086
RUN SWITCHYARD_GIT_COMMIT="${SWITCHYARD_GIT_COMMIT}" cargo build --release --locked ${PACKAGES} \
 && mkdir -p /out \
 && cp target/release/switchyard-ingest target/release/switchyard-router \
       target/release/switchyard-sender target/release/switchyard \
       target/release/wabridges-sim /out/

FROM debian:${DEBIAN_VERSION}-slim AS runtime
# TLS roots for the provider, NATS and PostgreSQL over TLS (rustls reads
# webpki roots built in; this bundle serves anything that reads the system's).
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/ /usr/local/bin/
# A numeric user that exists nowhere else: no passwd entry is needed, and
# runAsNonRoot can verify it. The binaries write nothing to disk, so the root
# filesystem can be mounted read-only (/tmp as a tmpfs or emptyDir if anything
# ever needs scratch space).
USER 10001:10001
WORKDIR /tmp
# No HEALTHCHECK: orchestrators call `<service> --probe` (compose) or GET the
# ops port's /readyz and /healthz (Kubernetes).
CMD ["switchyard", "--help"]
