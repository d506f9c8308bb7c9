//! The switchyard-ingest binary starts, reports healthy, exposes metrics, stops on
//! SIGTERM, and refuses an old nats-server.

use switchyard_tests::lifecycle;

#[tokio::test]
async fn starts_reports_healthy_and_stops_cleanly_on_sigterm() {
    lifecycle::assert_starts_and_stops(env!("CARGO_BIN_EXE_switchyard-ingest")).await;
}

#[tokio::test]
async fn refuses_a_nats_server_older_than_2_12_5() {
    lifecycle::assert_refuses_old_nats(env!("CARGO_BIN_EXE_switchyard-ingest")).await;
}
