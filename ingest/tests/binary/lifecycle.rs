//! The switchyard-ingest binary starts, reports healthy, exposes metrics, stops on
//! SIGTERM, refuses an old nats-server, prints its version and probes its own
//! readiness.

use switchyard_tests::lifecycle;

#[tokio::test]
async fn starts_reports_healthy_and_stops_cleanly_on_sigterm() {
    lifecycle::assert_starts_and_stops(env!("CARGO_BIN_EXE_switchyard-ingest")).await;
}

#[tokio::test]
async fn refuses_a_nats_server_older_than_2_12_5() {
    lifecycle::assert_refuses_old_nats(env!("CARGO_BIN_EXE_switchyard-ingest")).await;
}

#[tokio::test]
async fn probe_exits_0_against_a_ready_instance_and_1_against_nothing() {
    lifecycle::assert_probe_follows_readiness(env!("CARGO_BIN_EXE_switchyard-ingest")).await;
}

#[test]
fn version_prints_the_crate_version_and_the_git_commit() {
    lifecycle::assert_prints_version(
        env!("CARGO_BIN_EXE_switchyard-ingest"),
        "switchyard-ingest",
        env!("CARGO_PKG_VERSION"),
    );
}
