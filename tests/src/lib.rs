//! Test support: real dependencies, isolated per test.
//!
//! - [`nats_server`]: a private nats-server (the pinned binary from
//!   `.tools/`, on a port it picks and reports, temporary store, killed on drop), a TLS variant,
//!   and a 3-node cluster on loopback ports;
//! - [`old_nats`]: a stand-in that introduces itself as nats-server 2.9, to
//!   prove the services refuse it;
//! - [`otlp_collector`]: a stand-in OpenTelemetry collector (OTLP/HTTP protobuf) that keeps the spans it receives;
//! - [`pipeline`]: the whole pipeline (nats, simulator, ingest, router, sender) for end-to-end suites;
//! - [`fixtures`]: tenants with bridges on the simulator, streams, a sender's test environment;
//! - [`procstat`]: CPU and memory of processes, and the machine's busy and stolen CPU, read from /proc (benchmarks, load tests);
//! - [`scratch_db`]: a database of its own for a benchmark;
//! - [`bench`]: a benchmark's start-up (nats-server, migrated scratch database);
//! - [`tcp_proxy`]: a forwarder a test can cut, to take a server away from one client;
//! - [`poll`]: waiting for a condition with a deadline instead of sleeping;
//! - [`services`]: the services started in-process on port 0 through their real start-up path;
//! - [`traffic`]: inbound events published as ingest does, and readers of what came out;
//! - [`chaos`]: the chaos driver (production topology as processes, steady load, one fault kind per run, the figures).
//!
//! PostgreSQL comes from `#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]`,
//! which creates a fresh, migrated database per test.

// Test support, not a service: when an arrangement cannot be made (a server
// that will not start, a database that cannot be created), the test must stop
// loudly at that line rather than carry an error it has no use for.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod bench;
pub mod chaos;
pub mod fixtures;
pub mod lifecycle;
pub mod nats_server;
pub mod old_nats;
pub mod otlp_collector;
pub mod pipeline;
pub mod poll;
pub mod procstat;
pub mod scratch_db;
pub mod services;
pub mod tcp_proxy;
pub mod traffic;

/// The repository root (where `.tools/` lives).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}
