//! Pacing and order on the sender, against the simulator with real NATS and
//! PostgreSQL: with a minimum gap of G, no two sends on one bridge are closer
//! than G (measured at the simulator) while other tenants keep their
//! throughput; a multi-part reply goes out in order and, after a failure,
//! resumes from the failed part without resending earlier parts.

use std::{collections::BTreeMap, time::Duration};

use crate::whatsapp_support::{self, Rig, WITHIN, t};
use async_nats::HeaderMap;
use sqlx::PgPool;
use switchyard_bridge_sim::Fault;
use switchyard_shared::{
    ids::EventId,
    replies::{OutboundReply, Priority},
    subjects,
};

const GAP_MS: u64 = 250;
/// Replies of the paced tenant: at least (n - 1) gaps, about 5.75 s.
const PACED_SENDS: usize = 24;
/// Chats and replies per chat of the free tenant. Held to the paced rhythm its
/// 100 sends would need 25 s; unpaced they take well under a second on a quiet
/// machine and a few on a loaded one (300 sends took 4.3–4.7 s on a 2-core box
/// with other VMs stealing CPU, which outlasted the paced tenant's 12 sends).
const FREE_CHATS: usize = 10;
const FREE_SENDS_PER_CHAT: usize = 10;

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn with_a_minimum_gap_no_two_sends_on_one_bridge_are_closer_than_it_while_others_keep_their_throughput(
    pool: PgPool,
) {
    let rig = Rig::start(&pool, &["paced", "free"]).await;
    rig.set_whatsapp("paced", |w| w.min_send_gap_ms = GAP_MS as u32)
        .await;
    let sender = rig.sender(&[]).await;
    rig.replies("paced", "p", "15550004001@s.whatsapp.net", PACED_SENDS)
        .await;
    for chat in 0..FREE_CHATS {
        rig.replies(
            "free",
            &format!("f{chat}"),
            &format!("1555000500{chat}@s.whatsapp.net"),
            FREE_SENDS_PER_CHAT,
        )
        .await;
    }
    let free_sends = FREE_CHATS * FREE_SENDS_PER_CHAT;
    rig.sim
        .wait_for_sends(PACED_SENDS + free_sends, Duration::from_secs(30))
        .await
        .unwrap();

    let paced = rig.sends_for("paced");
    whatsapp_support::once_each(&paced);
    let gaps: Vec<u64> = paced.windows(2).map(|w| w[1].at_ms - w[0].at_ms).collect();
    eprintln!("paced gaps (ms): {gaps:?}");
    assert!(
        gaps.iter().all(|g| *g >= GAP_MS),
        "two sends closer than {GAP_MS} ms: {gaps:?}"
    );
    let free = rig.sends_for("free");
    whatsapp_support::once_each(&free);
    // The free tenant is not held to the paced one's rhythm: all its sends are
    // done before the paced tenant's (which need PACED_SENDS - 1 gaps).
    let free_done = free.iter().map(|s| s.at_ms).max().unwrap();
    let paced_done = paced.iter().map(|s| s.at_ms).max().unwrap();
    eprintln!(
        "free: {free_sends} sends in {} ms; paced: {PACED_SENDS} sends in {} ms",
        free_done - free.iter().map(|s| s.at_ms).min().unwrap(),
        paced_done - paced[0].at_ms
    );
    assert!(
        free_done < paced_done,
        "the free tenant was slowed to the paced one's rhythm"
    );
    sender.stop().await;
}

/// Publishes one reply of `parts.len()` parts, as the router does for a turn.
async fn publish_turn(rig: &Rig, tenant: &str, event: &str, chat: &str, parts: &[String]) {
    let event_id = EventId::parse(event).unwrap();
    for (i, body) in parts.iter().enumerate() {
        let part = u16::try_from(i).unwrap();
        let reply = OutboundReply {
            tenant: t(tenant),
            reply_id: OutboundReply::reply_id_for(&event_id, part),
            event_id: event_id.clone(),
            chat_id: switchyard_shared::message_ids::ChatId::parse(chat).unwrap(),
            body: body.clone(),
            part,
            parts: u16::try_from(parts.len()).unwrap(),
            priority: Priority::Live,
            received_at_ms: None,
            menu: None,
        };
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, reply.msg_id().as_str());
        rig.js
            .publish_with_headers(
                subjects::outbound(&t(tenant)),
                headers,
                serde_json::to_vec(&reply).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_multi_part_reply_goes_out_in_order_and_resumes_from_the_failed_part(pool: PgPool) {
    let rig = Rig::start(&pool, &["alpha"]).await;
    // Slow enough that several chats' parts are in flight together.
    rig.sim
        .set_latency("alpha", Duration::from_millis(40))
        .unwrap();
    for chat in 0..6 {
        let parts: Vec<String> = (0..4).map(|p| format!("c{chat}:part{p}")).collect();
        publish_turn(
            &rig,
            "alpha",
            &format!("turn-{chat}"),
            &format!("1555000600{chat}@s.whatsapp.net"),
            &parts,
        )
        .await;
    }
    let sender = rig.sender(&[]).await;
    rig.sim.wait_for_sends(3, WITHIN).await.unwrap();
    // The next two calls fail in the middle of the replies.
    rig.sim
        .set_fault("alpha", Fault::ServerError { status: 503 }, Some(2))
        .unwrap();
    rig.sim.wait_for_sends(24, WITHIN).await.unwrap();

    let failed = rig
        .sim
        .attempts()
        .iter()
        .filter(|a| a.status == 503)
        .count();
    assert_eq!(failed, 2, "the failures happened mid-run");
    let sends = rig.sends_for("alpha");
    whatsapp_support::once_each(&sends);
    let mut by_chat: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &sends {
        by_chat
            .entry(s.chat.clone())
            .or_default()
            .push(s.body.clone());
    }
    for (chat, bodies) in &by_chat {
        let c = &chat[chat.len() - 1..];
        let expected: Vec<String> = (0..4).map(|p| format!("c{c}:part{p}")).collect();
        assert_eq!(bodies, &expected, "chat {chat} got its parts out of order");
    }
    assert_eq!(by_chat.len(), 6);
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn past_the_per_contact_hourly_cap_a_reply_is_dead_lettered_and_other_chats_go_on(
    pool: PgPool,
) {
    let rig = Rig::start(&pool, &["alpha"]).await;
    rig.set_whatsapp("alpha", |w| w.contact_hourly_cap = 3)
        .await;
    let sender = rig.sender(&[]).await;
    rig.replies("alpha", "busy", "15550008001@s.whatsapp.net", 5)
        .await;
    rig.replies("alpha", "calm", "15550008002@s.whatsapp.net", 2)
        .await;
    let dead =
        switchyard_tests::poll::until("two capped replies dead-lettered", WITHIN, || async {
            let d = switchyard_tests::traffic::dead_letters(
                &rig.js,
                switchyard_shared::subjects::Direction::Outbound,
            )
            .await;
            (d.len() >= 2).then_some(d)
        })
        .await;
    assert!(
        dead.iter()
            .all(|(tenant, why, _)| tenant == "alpha" && why == "contact_cap"),
        "{dead:?}"
    );
    rig.sim.wait_for_sends(5, WITHIN).await.unwrap();
    let sends = rig.sends_for("alpha");
    whatsapp_support::once_each(&sends);
    let to = |chat: &str| sends.iter().filter(|s| s.chat == chat).count();
    assert_eq!(to("15550008001"), 3, "the cap holds for the busy chat");
    assert_eq!(to("15550008002"), 2, "the other chat is not held");
    sender.stop().await;
}
