//! A tenant lane's opening asks JetStream whether the tenant has a spill
//! backlog left by an earlier owner of its partition. Every tenant's first
//! event opens a lane in each of router and sender (a thousand of them at a
//! start over a thousand tenants), so the question is one request: the read
//! of the tenant's last spilled message, naming the stream without asking
//! for its info first (issue 20). What it answers, and that a missing
//! stream is an error rather than "no backlog".
//!
//! The request count itself is not asserted: the server neither relays API
//! requests to a `$JS.API.>` subscriber every time nor counts them in the
//! account's info before answering (both tried, both flaky).

use switchyard_shared::{
    ids::TenantId,
    lanes::spill,
    subjects::{self, Direction},
};
use switchyard_tests::{fixtures, nats_server::NatsServer};

#[tokio::test]
async fn a_lanes_backlog_check_sees_a_backlog_in_its_direction_and_a_missing_stream_is_an_error() {
    let nats = NatsServer::start();
    let (_client, js) = fixtures::jetstream_with_streams(&nats.url(), 4).await;
    let acme = TenantId::parse("acme").unwrap();

    let empty = spill::has_backlog(&js, Direction::Inbound, &acme)
        .await
        .unwrap();
    assert!(!empty, "nothing spilled yet");
    js.publish(subjects::spill(Direction::Inbound, &acme), "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let backlog = spill::has_backlog(&js, Direction::Inbound, &acme)
        .await
        .unwrap();
    assert!(backlog, "the spilled message is a backlog");
    let other = spill::has_backlog(&js, Direction::Outbound, &acme)
        .await
        .unwrap();
    assert!(!other, "in its own direction only");

    assert!(
        js.delete_stream(subjects::SPILL_STREAM)
            .await
            .unwrap()
            .success
    );
    let missing = spill::has_backlog(&js, Direction::Inbound, &acme).await;
    assert!(
        missing.is_err(),
        "no SPILL stream is an error, not an empty lane: {missing:?}"
    );
}
