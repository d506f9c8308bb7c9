//! The Cloud API channel end to end (issue 22), with WA Bridges tenants
//! beside it: the Cloud simulator posts signed batches mixing tenants to
//! ingest's `/cloud`, the router runs each tenant's bot, the sender answers
//! on each tenant's own phone number id with its own token; WA Bridges
//! tenants are answered on their bridges as before. Also: delivery statuses
//! reach the ledger, and a revoked token holds its own tenant only.

use std::time::Duration;

use sqlx::PgPool;
use switchyard_bridge_sim::{
    cloud::{Batch, StatusMode, StatusPlan},
    events::TextMessage,
};
use switchyard_tests::poll;

use crate::cloud_support::{self, CloudRig};

const WITHIN: Duration = Duration::from_secs(30);

async fn start(pool: &PgPool) -> CloudRig {
    cloud_support::start_rig(pool, &[]).await
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn cloud_and_bridge_tenants_are_each_answered_once_on_their_own_number(pool: PgPool) {
    let m = start(&pool).await;
    let handshake = m.cloud.verify_webhook().await.expect("handshake");
    assert!(handshake.verified, "{handshake:?}");
    // One batch for all three Cloud tenants (two WABAs), twice per tenant.
    let mut batch = Batch::new();
    for (tenant, number, _) in &m.tenants {
        for i in 0..2 {
            batch = batch.text(
                number,
                &format!("1777000{}{i}", &number[2..]),
                &format!("{tenant} #{i}"),
            );
        }
    }
    let report = m.cloud.post_batch(&batch).await.expect("post");
    assert!(
        report.first.as_ref().is_some_and(|d| d.acknowledged()),
        "{report:?}"
    );
    // The bridge tenants' traffic at the same time.
    for tenant in ["wa-a", "wa-b"] {
        let status =
            m.p.post(
                tenant,
                TextMessage::new("15550001", format!("{tenant} hello")).to_json(),
            )
            .await;
        assert_eq!(status, Some(200));
    }
    poll::until("every Cloud message answered", WITHIN, || async {
        (m.cloud.accepted_sends().len() >= 6).then_some(())
    })
    .await;
    poll::until("both bridge messages answered", WITHIN, || async {
        (m.p.sends().len() >= 2).then_some(())
    })
    .await;
    m.p.settled(WITHIN).await;
    let sends = m.cloud.accepted_sends();
    assert_eq!(
        sends.len(),
        6,
        "each Cloud message answered exactly once: {sends:#?}"
    );
    for (tenant, number, token) in &m.tenants {
        let mine: Vec<_> = sends
            .iter()
            .filter(|s| &s.phone_number_id == number)
            .collect();
        assert_eq!(mine.len(), 2, "{tenant}: {mine:#?}");
        for send in mine {
            assert_eq!(
                send.token.as_ref().map(|t| t.as_str()),
                Some(token.as_str()),
                "{tenant} sends with its own token"
            );
            let body = send.body["text"]["body"].as_str().unwrap_or_default();
            assert!(
                body.contains(&format!("{tenant} #")),
                "{tenant}'s reply answers {tenant}'s message: {body}"
            );
            assert!(
                send.to
                    .as_deref()
                    .is_some_and(|to| to.starts_with("+1777000")),
                "{send:?}"
            );
        }
    }
    let bridge_sends = m.p.sends();
    assert_eq!(bridge_sends.len(), 2, "{bridge_sends:#?}");
    for send in &bridge_sends {
        assert!(
            send.body.contains(&format!("{} hello", send.customer_ref)),
            "{send:?}"
        );
    }
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn delivery_statuses_reach_the_ledger_forward_only(pool: PgPool) {
    let m = start(&pool).await;
    m.cloud
        .set_statuses(
            "PN1",
            StatusPlan {
                mode: StatusMode::ReadWithoutDelivered,
                batched: false,
            },
        )
        .expect("status plan");
    let report = m
        .cloud
        .post_batch(&Batch::new().text("PN1", "17770001", "status please"))
        .await
        .expect("post");
    assert!(
        report.first.as_ref().is_some_and(|d| d.acknowledged()),
        "{report:?}"
    );
    let row = poll::until("the reply's ledger row to say read", WITHIN, || async {
        sqlx::query_as::<_, (String, Option<String>, Option<String>)>(
            "SELECT status, recipient_status, provider_message_id FROM deliveries WHERE tenant_id = 'cloud-a'",
        )
        .fetch_optional(&pool)
        .await
        .expect("ledger")
        .filter(|(_, recipient, _)| recipient.as_deref() == Some("read"))
    })
    .await;
    assert_eq!(row.0, "wired");
    let sent = m.cloud.accepted_sends();
    assert_eq!(
        row.2.as_deref(),
        sent[0].wamid.as_deref(),
        "recorded against the right send"
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_revoked_token_holds_its_own_tenant_only(pool: PgPool) {
    let m = start(&pool).await;
    let (_, _, token_a) = &m.tenants[0];
    m.cloud.revoke_token(token_a, false).await.expect("revoke");
    let report = m
        .cloud
        .post_batch(
            &Batch::new()
                .text("PN1", "17770001", "to the revoked tenant")
                .text("PN2", "17770002", "to its WABA neighbour")
                .text("PN3", "17770003", "to another WABA"),
        )
        .await
        .expect("post");
    assert!(
        report.first.as_ref().is_some_and(|d| d.acknowledged()),
        "{report:?}"
    );
    poll::until("the two healthy tenants answered", WITHIN, || async {
        (m.cloud.accepted_sends().len() >= 2).then_some(())
    })
    .await;
    let state = poll::until("cloud-a's token marked rejected", WITHIN, || async {
        sqlx::query_scalar::<_, String>(
            "SELECT token_state FROM cloud_channels WHERE tenant_id = 'cloud-a'",
        )
        .fetch_one(&pool)
        .await
        .ok()
        .filter(|s| s == "rejected")
    })
    .await;
    assert_eq!(state, "rejected");
    let accepted: Vec<String> = m
        .cloud
        .accepted_sends()
        .into_iter()
        .map(|s| s.phone_number_id)
        .collect();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert!(!accepted.contains(&"PN1".to_owned()));
    // cloud-a's reply is held, not lost: no dead letter, the ledger row waits.
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'dead'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(dead, 0);
    let others = sqlx::query_scalar::<_, String>(
        "SELECT token_state FROM cloud_channels WHERE tenant_id <> 'cloud-a'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(others, ["active", "active"]);
}
