//! Live before bulk, with real NATS, PostgreSQL, the simulator, ingest,
//! router and sender: while 1,000 of a paced tenant's dead letters are being
//! replayed (through the real `dlq replay`, into its bulk lane), its customers'
//! live replies wait at most about one pacing gap, and another tenant's
//! replies do not wait at all.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::whatsapp_support::{self, Rig, WITHIN, t};
use async_nats::HeaderMap;
use sqlx::PgPool;
use switchyard_cli::{
    dlq::Filter,
    replay::{self, ReplayOptions},
};
use switchyard_shared::{
    events,
    ids::EventId,
    lanes::{dead_letter, message::HEADER_ORIGINAL_SUBJECT},
    message_ids::ChatId,
    replies::{OutboundReply, Priority},
    subjects::{self, Direction},
};
use switchyard_tests::poll;

const GAP_MS: u64 = 200;
const LETTERS: usize = 1_000;

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Stores `n` outbound dead letters for `tenant` as the sender would.
async fn seed_dead_letters(rig: &Rig, tenant: &str, n: usize) {
    let mut acks = Vec::new();
    for i in 0..n {
        let event_id = EventId::parse(&format!("old-{i}")).unwrap();
        let reply = OutboundReply {
            tenant: t(tenant),
            reply_id: OutboundReply::reply_id_for(&event_id, 0),
            event_id: event_id.clone(),
            chat_id: ChatId::parse(&format!("1555100{:04}@s.whatsapp.net", i % 20)).unwrap(),
            body: format!("{tenant}:bulk:{i:05}"),
            part: 0,
            parts: 1,
            priority: Priority::Live,
            received_at_ms: None,
            menu: None,
        };
        let mut h = HeaderMap::new();
        h.insert(events::HEADER_EVENT_ID, event_id.as_str());
        h.insert(
            HEADER_ORIGINAL_SUBJECT,
            subjects::outbound(&t(tenant)).as_str(),
        );
        h.insert(dead_letter::HEADER_REASON, "attempts_exhausted");
        h.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("dlq:{i}").as_str(),
        );
        acks.push(
            rig.js
                .publish_with_headers(
                    subjects::dead_letter(Direction::Outbound, &t(tenant)),
                    h,
                    serde_json::to_vec(&reply).unwrap().into(),
                )
                .await
                .unwrap(),
        );
        if acks.len() >= 200 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// A customer writes; returns how long until the bot's answer reached the
/// simulator (the echo bot answers `echo: <body>`).
async fn live_reply_latency(rig: &Rig, tenant: &str, phone: &str, body: &str) -> Duration {
    let posted = now_ms();
    rig.customer_says(tenant, phone, body).await;
    let expected = format!("echo: {body}");
    let sent_at = poll::until(&format!("{tenant} answers {body}"), WITHIN, || async {
        rig.sends_for(tenant)
            .into_iter()
            .find(|s| s.body == expected)
            .map(|s| s.at_ms)
    })
    .await;
    Duration::from_millis(sent_at.saturating_sub(posted))
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_replay_of_1000_dead_letters_delays_neither_its_tenants_live_replies_beyond_the_gap_nor_other_tenants(
    pool: PgPool,
) {
    let rig = Rig::start(&pool, &["alpha", "bravo"]).await;
    rig.set_whatsapp("alpha", |w| w.min_send_gap_ms = GAP_MS as u32)
        .await;
    let router = rig.router(&[]).await;
    let sender = rig.sender(&[]).await;
    // Before the replay: how fast each tenant is answered on this machine.
    let alpha_before = live_reply_latency(&rig, "alpha", "15552000001", "before").await;
    let bravo_before = live_reply_latency(&rig, "bravo", "15553000001", "before").await;

    seed_dead_letters(&rig, "alpha", LETTERS).await;
    let filter = Filter {
        tenant: Some(t("alpha")),
        direction: Some(Direction::Outbound),
        ..Default::default()
    };
    let options = ReplayOptions {
        batch: 200,
        dry_run: false,
        keep: false,
    };
    let report = replay::replay(&rig.js, &filter, options, |_| {})
        .await
        .unwrap();
    assert_eq!(report.republished, LETTERS);
    // The replay is flowing: alpha's bridge is busy with bulk sends.
    poll::until("bulk sends under way", WITHIN, || async {
        let bulk = rig
            .sends_for("alpha")
            .iter()
            .filter(|s| s.body.contains(":bulk:"))
            .count();
        (bulk >= 5).then_some(())
    })
    .await;

    let mut alpha_during = Vec::new();
    let mut bravo_during = Vec::new();
    for i in 0..3 {
        alpha_during
            .push(live_reply_latency(&rig, "alpha", "15552000002", &format!("during {i}")).await);
        bravo_during
            .push(live_reply_latency(&rig, "bravo", "15553000002", &format!("during {i}")).await);
    }
    let bulk_sent = rig
        .sends_for("alpha")
        .iter()
        .filter(|s| s.body.contains(":bulk:"))
        .count();
    eprintln!(
        "alpha: {alpha_before:?} before, {alpha_during:?} during; bravo: {bravo_before:?} before, \
         {bravo_during:?} during; {bulk_sent} of {LETTERS} bulk sends done"
    );
    assert!(
        bulk_sent < LETTERS / 2,
        "the replay was still running while live replies were measured ({bulk_sent} sent)"
    );
    // Live waits at most for the bulk send in flight and one gap (+ its jitter).
    let allowed = alpha_before + Duration::from_millis(GAP_MS * 3 / 2 + 250);
    for latency in &alpha_during {
        assert!(
            *latency <= allowed,
            "alpha's live reply waited {latency:?} (allowed {allowed:?})"
        );
    }
    let allowed = bravo_before + Duration::from_millis(250);
    for latency in &bravo_during {
        assert!(
            *latency <= allowed.max(Duration::from_millis(500)),
            "bravo's reply waited {latency:?} during alpha's replay"
        );
    }
    whatsapp_support::once_each(&rig.sends_for("alpha"));
    sender.stop().await;
    router.stop().await;
}
