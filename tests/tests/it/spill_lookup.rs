//! Whether a tenant whose lane opens has a spill backlog left by an earlier
//! owner of its partition. A replica lists the backlogs once when it gains
//! partitions and opens its lanes from that list: every tenant's first event
//! opens a lane in each of router and sender (a thousand of them at a start
//! over a thousand tenants), and a request per lane held each partition's
//! dispatch 20-30 ms on a busy server (issue 20). Without a list, a lane asks
//! in one request: the read of the tenant's last spilled message, naming the
//! stream without asking for its info first. What it answers, that a
//! missing stream is an error rather than "no backlog", and that a router
//! started over a left backlog opens its lanes from the list, backlog first.
//!
//! The request count itself is not asserted: the server neither relays API
//! requests to a `$JS.API.>` subscriber every time nor counts them in the
//! account's info before answering (both tried, both flaky). The lanes count
//! how they learnt of a backlog instead (`switchyard_lane_opened_total`).

use std::time::Duration;

use sqlx::PgPool;
use switchyard_shared::{
    ids::TenantId,
    lanes::spill,
    subjects::{self, Direction},
    tenants::BotKind,
};
use switchyard_tests::{fixtures, nats_server::NatsServer, poll, services, traffic};

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

/// An event spilled to the tenant's own lane as a previous owner of its
/// partition would have left it, without the partition header: the backlog
/// scan then cannot place it, so only the list taken when the partition was
/// gained can make the lane start from it.
async fn leave_spilled(
    js: &async_nats::jetstream::Context,
    tenant: &TenantId,
    id: &str,
    body: String,
) {
    js.publish_with_headers(
        subjects::spill(Direction::Inbound, tenant),
        traffic::event_headers(tenant, id),
        body.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_router_started_over_a_left_backlog_opens_its_lanes_from_one_list_and_answers_the_backlog_first(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let (_client, js) = fixtures::jetstream_with_streams(&nats.url(), 4).await;
    for id in ["alpha", "bravo", "charlie"] {
        fixtures::add_tenant(&pool, id, |new| new.bot_kind = BotKind::Echo).await;
    }
    let alpha = fixtures::tenant("alpha");
    let chat = "1@s.whatsapp.net";
    for i in 0..3 {
        let id = format!("old-{i}");
        let body = traffic::message_body(Some("alpha"), &id, chat, &id);
        leave_spilled(&js, &alpha, &id, body).await;
    }
    for tenant in ["alpha", "bravo", "charlie"] {
        for i in 0..3 {
            let id = format!("{tenant}-new-{i}");
            let body = traffic::message_body(Some(tenant), &id, chat, &id);
            traffic::publish_inbound(&js, &fixtures::tenant(tenant), &id, body).await;
        }
    }
    let env = services::env(
        &nats.url(),
        &services::database_url(&pool),
        &[
            ("SWITCHYARD_PARTITIONS", "4"),
            // Longer than the test: the periodic scan cannot help.
            ("SWITCHYARD_LANE_BACKLOG_SCAN", "1h"),
        ],
    );
    let router = services::start_router(&env).await;
    let replies = poll::until("every reply", Duration::from_secs(30), || async {
        let all = traffic::replies_by_tenant(&js).await;
        let count = |t: &str| all.get(t).map_or(0, Vec::len);
        (count("alpha") >= 6 && count("bravo") >= 3 && count("charlie") >= 3).then_some(all)
    })
    .await;
    let alpha_bodies: Vec<&str> = replies["alpha"].iter().map(|r| r.body.as_str()).collect();
    assert_eq!(
        alpha_bodies,
        [
            "echo: old-0",
            "echo: old-1",
            "echo: old-2",
            "echo: alpha-new-0",
            "echo: alpha-new-1",
            "echo: alpha-new-2"
        ],
        "the backlog left in alpha's spill lane is answered first, in order, and once"
    );
    let ops = router.ops_addr;
    let known = traffic::metric(ops, "switchyard_lane_opened_total", "backlog=\"known\"").await;
    let asked = traffic::metric(ops, "switchyard_lane_opened_total", "backlog=\"asked\"").await;
    assert_eq!(
        known, 3.0,
        "each tenant's inbound lane opened from the list"
    );
    assert_eq!(asked, 0.0, "no lane asked on its own");
    router.stop().await;
}
