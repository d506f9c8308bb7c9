//! Bursts, with real NATS, PostgreSQL, the simulator, ingest, router and
//! sender: with a debounce set, a person's quick lines become one bot turn
//! whose answer holds them in order (also when the burst is larger than the
//! router's in-memory bound); without one, each line is its own turn.

use std::time::Duration;

use crate::whatsapp_support::{Rig, WITHIN};
use sqlx::PgPool;
use switchyard_bridge_sim::RecordedSend;
use switchyard_tests::poll;

const PHONE: &str = "15557000001";

fn chat_sends(rig: &Rig, tenant: &str) -> Vec<RecordedSend> {
    rig.sends_for(tenant)
        .into_iter()
        .filter(|s| s.chat.starts_with(PHONE))
        .collect()
}

/// Waits until the chat's answer to `body` has gone out (a sync point: every
/// earlier turn of the chat went out before it, per-chat order).
async fn answered(rig: &Rig, tenant: &str, body: &str) -> Vec<RecordedSend> {
    let expected = format!("echo: {body}");
    poll::until(&format!("{tenant} answers {body}"), WITHIN, || async {
        let sends = chat_sends(rig, tenant);
        sends.iter().any(|s| s.body == expected).then_some(sends)
    })
    .await
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_five_message_burst_with_debounce_on_yields_one_bot_turn_with_the_lines_in_order(
    pool: PgPool,
) {
    let rig = Rig::start(&pool, &["alpha"]).await;
    rig.set_whatsapp("alpha", |w| w.debounce_ms = 600).await;
    let router = rig.router(&[]).await;
    let sender = rig.sender(&[]).await;
    let lines = ["one", "two", "three", "four", "five"];

    rig.sim
        .post_burst("alpha", PHONE, &lines, Duration::from_millis(150))
        .await
        .unwrap();
    let burst = answered(&rig, "alpha", "one\ntwo\nthree\nfour\nfive").await;
    // A later, separate message: its answer comes after anything else the
    // burst could still have produced in this chat.
    rig.customer_says("alpha", PHONE, "later").await;
    let all = answered(&rig, "alpha", "later").await;

    let bodies: Vec<&str> = all.iter().map(|s| s.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["echo: one\ntwo\nthree\nfour\nfive", "echo: later"],
        "one turn for the burst, in order, then one for the later message"
    );
    assert_eq!(burst.len(), 1);
    sender.stop().await;
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn without_debounce_each_line_of_a_burst_is_its_own_turn_in_order(pool: PgPool) {
    let rig = Rig::start(&pool, &["alpha"]).await;
    let router = rig.router(&[]).await;
    let sender = rig.sender(&[]).await;
    let lines = ["one", "two", "three", "four", "five"];

    rig.sim
        .post_burst("alpha", PHONE, &lines, Duration::from_millis(50))
        .await
        .unwrap();
    let all = answered(&rig, "alpha", "five").await;

    let bodies: Vec<String> = all.iter().map(|s| s.body.clone()).collect();
    let expected: Vec<String> = lines.iter().map(|l| format!("echo: {l}")).collect();
    assert_eq!(bodies, expected);
    sender.stop().await;
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_burst_larger_than_the_routers_in_memory_bound_is_still_one_turn(pool: PgPool) {
    let rig = Rig::start(&pool, &["alpha"]).await;
    rig.set_whatsapp("alpha", |w| w.debounce_ms = 600).await;
    // One chat at a time: the worker holds at most 2 messages taken from the lane.
    let router = rig.router(&[("SWITCHYARD_CHATS_IN_FLIGHT", "1")]).await;
    let sender = rig.sender(&[]).await;
    let lines: Vec<String> = (0..12).map(|i| format!("line {i:02}")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();

    rig.sim
        .post_burst("alpha", PHONE, &refs, Duration::from_millis(40))
        .await
        .unwrap();
    answered(&rig, "alpha", &lines.join("\n")).await;
    rig.customer_says("alpha", PHONE, "later").await;
    let all = answered(&rig, "alpha", "later").await;

    assert_eq!(all.len(), 2, "{all:?}");
    sender.stop().await;
    router.stop().await;
}
