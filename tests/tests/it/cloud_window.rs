//! The Cloud API's customer-service window, account events and tiers end to
//! end (issue 22 point 6; docs/cloud-api.md sections 3.3, 5, 6 and 7): the
//! Cloud simulator posts signed batches to ingest, the router records each
//! chat's window from Meta's timestamp and carries out account notices, the
//! sender refuses a free-form reply outside the window and holds tenants
//! whose token Meta says is gone.
//!
//! The services run with a 60 s window (the simulator's compressed one) and
//! a 20 s margin, so a message written 45 s ago still gets its bot turn
//! (within the window) while its reply is already past `window - margin`.

use std::time::Duration;

use sqlx::PgPool;
use switchyard_bridge_sim::cloud::{Batch, BatchItem};
use switchyard_shared::{
    cloud_api::channel,
    ids::TenantId,
    lanes::dead_letter,
    subjects,
    tenant_status::{HoldReason, StatusStore, merge::merge},
};
use switchyard_tests::{poll, traffic};

use crate::cloud_support::{self, CloudRig, text_written_at, unix_now};

const WITHIN: Duration = Duration::from_secs(30);
const WINDOW_S: i64 = 60;

async fn start(pool: &PgPool) -> CloudRig {
    cloud_support::start_rig(
        pool,
        &[
            ("SWITCHYARD_CLOUD_WINDOW", "60s"),
            ("SWITCHYARD_CLOUD_WINDOW_MARGIN", "20s"),
            // A new token lifts its tenant's hold at the next refresh.
            ("SWITCHYARD_TENANT_REFRESH", "1s"),
        ],
    )
    .await
}

async fn post(rig: &CloudRig, batch: Batch) {
    let report = rig.cloud.post_batch(&batch).await.expect("post");
    assert!(
        report.first.as_ref().is_some_and(|d| d.acknowledged()),
        "{report:?}"
    );
}

/// Every `/messages` call (accepted or not) made on `number`.
fn calls_on(rig: &CloudRig, number: &str) -> usize {
    rig.cloud
        .sends()
        .iter()
        .filter(|s| s.phone_number_id == number)
        .count()
}

async fn ledger(pool: &PgPool, tenant: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT status FROM deliveries WHERE tenant_id = $1 ORDER BY reply_id")
        .bind(tenant)
        .fetch_all(pool)
        .await
        .expect("ledger")
}

async fn token_state(pool: &PgPool, tenant: &str) -> String {
    sqlx::query_scalar("SELECT token_state FROM cloud_channels WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(pool)
        .await
        .expect("channel row")
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_reply_inside_the_window_is_sent_and_the_window_kept_from_metas_timestamp(pool: PgPool) {
    let rig = start(&pool).await;
    let written = unix_now() - 5;
    post(
        &rig,
        Batch::new().item(text_written_at(
            "PN1",
            "wamid.in1",
            "17770001",
            "hello",
            written,
        )),
    )
    .await;
    rig.cloud.open_window("PN1", "17770001").expect("window");
    poll::until("the reply sent on PN1", WITHIN, || async {
        (!rig.cloud.accepted_sends().is_empty()).then_some(())
    })
    .await;
    let sends = rig.cloud.accepted_sends();
    assert_eq!(sends.len(), 1, "{sends:#?}");
    assert_eq!(sends[0].phone_number_id, "PN1");
    // The window is Meta's time of the message, not the time we handled it.
    let recorded: i64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM last_inbound_at)::bigint FROM cloud_windows \
          WHERE tenant_id = 'cloud-a' AND chat_id = '17770001'",
    )
    .fetch_one(&pool)
    .await
    .expect("the chat's window row");
    assert_eq!(recorded, written);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_reply_whose_window_closed_is_dead_lettered_without_a_call(pool: PgPool) {
    let rig = start(&pool).await;
    // The simulator would accept the send: only our own check can stop it.
    rig.cloud.open_window("PN1", "17770002").expect("window");
    let written = unix_now() - 45;
    assert!(
        written > unix_now() - WINDOW_S,
        "the router still answers it"
    );
    post(
        &rig,
        Batch::new()
            .item(text_written_at(
                "PN1",
                "wamid.late",
                "17770002",
                "still there?",
                written,
            ))
            .text("PN2", "17770020", "the neighbour writes now"),
    )
    .await;
    poll::until("cloud-a's reply dead in the ledger", WITHIN, || async {
        (ledger(&pool, "cloud-a").await == ["dead"]).then_some(())
    })
    .await;
    poll::until("the neighbour answered", WITHIN, || async {
        (calls_on(&rig, "PN2") == 1).then_some(())
    })
    .await;
    assert_eq!(
        calls_on(&rig, "PN1"),
        0,
        "no call: {:#?}",
        rig.cloud.sends()
    );
    let letters =
        traffic::read_stream(&rig.p.js, subjects::DLQ_STREAM, "dlq.outbound.cloud-a").await;
    assert_eq!(letters.len(), 1);
    let headers = &letters[0].1;
    assert_eq!(
        headers.get(dead_letter::HEADER_REASON).map(|v| v.as_str()),
        Some("window_closed")
    );
    let detail = headers
        .get(dead_letter::HEADER_LAST_ERROR)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    assert!(detail.starts_with("window_closed"), "{detail}");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_inbound_message_older_than_the_window_gets_no_bot_turn(pool: PgPool) {
    let rig = start(&pool).await;
    let stale = unix_now() - 2 * WINDOW_S;
    post(
        &rig,
        Batch::new().item(text_written_at(
            "PN1",
            "wamid.stale",
            "17770003",
            "old news",
            stale,
        )),
    )
    .await;
    // The same chat writes again: its messages are handled in order, so once
    // this one is answered the stale one was handled before it.
    post(&rig, Batch::new().text("PN1", "17770003", "fresh news")).await;
    poll::until("the fresh message answered", WITHIN, || async {
        (calls_on(&rig, "PN1") >= 1).then_some(())
    })
    .await;
    rig.p.settled(WITHIN).await;
    let sends = rig.cloud.sends();
    assert_eq!(sends.len(), 1, "one reply only: {sends:#?}");
    let body = sends[0].body["text"]["body"].as_str().unwrap_or_default();
    assert!(body.contains("fresh news"), "{body}");
    // No turn at all: a reply to the stale message would have left a ledger
    // row (dead, its window closed) and a dead letter.
    assert_eq!(ledger(&pool, "cloud-a").await, ["wired"]);
    let letters = traffic::read_stream(&rig.p.js, subjects::DLQ_STREAM, "dlq.*.cloud-a").await;
    assert!(letters.is_empty(), "{letters:?}");
    // The window follows the newest message, whatever the order handled.
    let age: i64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM now() - last_inbound_at))::bigint FROM cloud_windows \
          WHERE tenant_id = 'cloud-a' AND chat_id = '17770003'",
    )
    .fetch_one(&pool)
    .await
    .expect("window row");
    assert!(age < WINDOW_S, "{age}");
}

/// Polls the status bucket until `tenant` is held for `reason` with a reply waiting.
async fn held_with_a_reply_waiting(rig: &CloudRig, tenant: &str, reason: HoldReason) {
    let id = TenantId::parse(tenant).unwrap();
    poll::until(
        &format!("{tenant} held ({reason:?}) with a reply waiting"),
        WITHIN,
        || async {
            let store = StatusStore::existing(&rig.p.js).await.ok()??;
            let state = merge(&id, &store.tenant(&id).await.ok()?)?;
            (state.holds.iter().any(|h| h.reason == reason) && state.replies_waiting >= 1)
                .then_some(())
        },
    )
    .await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_uninstalled_app_holds_that_wabas_tenants_only_until_a_new_token(pool: PgPool) {
    let rig = start(&pool).await;
    // Meta's notice only: the simulator keeps accepting WABA1's tokens, so
    // a send that went out anyway would be recorded as accepted.
    post(
        &rig,
        Batch::new().account_update("WABA1", "PARTNER_APP_UNINSTALLED"),
    )
    .await;
    poll::until("WABA1's tokens marked rejected", WITHIN, || async {
        (token_state(&pool, "cloud-a").await == "rejected"
            && token_state(&pool, "cloud-b").await == "rejected")
            .then_some(())
    })
    .await;
    assert_eq!(token_state(&pool, "cloud-c").await, "active");
    post(
        &rig,
        Batch::new()
            .text("PN1", "17770001", "to cloud-a")
            .text("PN2", "17770002", "to cloud-b")
            .text("PN3", "17770003", "to cloud-c"),
    )
    .await;
    poll::until("cloud-c answered", WITHIN, || async {
        (calls_on(&rig, "PN3") == 1).then_some(())
    })
    .await;
    held_with_a_reply_waiting(&rig, "cloud-a", HoldReason::Unauthorized).await;
    held_with_a_reply_waiting(&rig, "cloud-b", HoldReason::Unauthorized).await;
    assert_eq!(
        (calls_on(&rig, "PN1"), calls_on(&rig, "PN2")),
        (0, 0),
        "{:#?}",
        rig.cloud.sends()
    );
    // An operator connects a new token for cloud-a: its reply goes out with
    // it; cloud-b stays held, nothing was dead-lettered.
    let tenant_a = TenantId::parse("cloud-a").unwrap();
    let fresh = rig.cloud.add_token("WABA1").expect("token");
    let sealed = cloud_support::token_keys().seal(&tenant_a, &fresh.clone().into());
    assert!(channel::set_token(&pool, &tenant_a, &sealed).await.unwrap());
    let send = poll::until("cloud-a answered after its new token", WITHIN, || async {
        rig.cloud
            .accepted_sends()
            .into_iter()
            .find(|s| s.phone_number_id == "PN1")
    })
    .await;
    assert_eq!(
        send.token.as_ref().map(|t| t.as_str()),
        Some(fresh.as_str())
    );
    assert_eq!(calls_on(&rig, "PN2"), 0);
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'dead'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(dead, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_tier_change_is_recorded_on_that_number_only(pool: PgPool) {
    let rig = start(&pool).await;
    let report = rig
        .cloud
        .set_messaging_limit("PN1", "TIER_10K", "THROUGHPUT_UPGRADE", true)
        .await
        .expect("tier change")
        .expect("posted");
    assert!(
        report.first.as_ref().is_some_and(|d| d.acknowledged()),
        "{report:?}"
    );
    // A portfolio-wide capability update with a quality rating, for WABA2.
    post(
        &rig,
        Batch::new().item(BatchItem::Raw {
            waba_id: "WABA2".to_owned(),
            field: "business_capability_update".to_owned(),
            value: serde_json::json!({"max_daily_conversations_per_business": "TIER_2K",
                                      "quality_rating": "YELLOW"}),
        }),
    )
    .await;
    let limits = |tenant: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (Option<String>, Option<String>)>(
                "SELECT messaging_limit, quality FROM cloud_channels WHERE tenant_id = $1",
            )
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .expect("channel row")
        }
    };
    poll::until("cloud-a's tier recorded", WITHIN, || async {
        (limits("cloud-a").await.0.as_deref() == Some("TIER_10K")).then_some(())
    })
    .await;
    poll::until("cloud-c's tier and quality recorded", WITHIN, || async {
        (limits("cloud-c").await == (Some("TIER_2K".to_owned()), Some("YELLOW".to_owned())))
            .then_some(())
    })
    .await;
    assert_eq!(
        limits("cloud-b").await,
        (None, None),
        "its WABA neighbour is untouched"
    );
    // `switchyard status cloud-c` shows them.
    let vars = crate::cli_support::vars(
        &switchyard_tests::services::database_url(&pool),
        Some(&rig.p.nats.url()),
        None,
    );
    let (_, status) = crate::cli_support::run_json(&["status", "cloud-c"], &vars).await;
    assert_eq!(status["cloud"]["phone_number_id"], "PN3", "{status}");
    assert_eq!(status["cloud"]["messaging_limit"], "TIER_2K");
    assert_eq!(status["cloud"]["quality"], "YELLOW");
    assert_eq!(status["cloud"]["token_state"], "active");
}
