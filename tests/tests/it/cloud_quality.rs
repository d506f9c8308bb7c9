//! A Cloud API number's quality drives its tenant's send limit (issue 22,
//! point 6): Meta downgrades the number (its rating in the Graph API, a
//! `phone_number_quality_update` webhook with no rating in it), the router
//! announces the notice, the sender holding the tenant reads the number's
//! health with the tenant's own token, records it, and schedules the tenant
//! at a quarter of its rate with no bulk; `switchyard status` shows the
//! lowered limit and why. The other Cloud tenants keep their limits.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use switchyard_bridge_sim::cloud::Batch;
use switchyard_tests::{poll, services};

use crate::{cli_support, cloud_support};

const WITHIN: Duration = Duration::from_secs(30);

async fn quality(pool: &PgPool, tenant: &str) -> Option<String> {
    sqlx::query_scalar("SELECT quality FROM cloud_channels WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(pool)
        .await
        .expect("channel row")
}

/// The instants (ms) of the simulator's accepted sends on `number`, in order.
fn send_times(m: &cloud_support::CloudRig, number: &str) -> Vec<u64> {
    let mut at: Vec<u64> = m
        .cloud
        .accepted_sends()
        .iter()
        .filter(|s| s.phone_number_id == number)
        .map(|s| s.at_ms)
        .collect();
    at.sort_unstable();
    at
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_quality_downgrade_lowers_the_tenants_send_rate_and_status_shows_it(pool: PgPool) {
    let m = cloud_support::start_rig(&pool, &[]).await;
    // cloud-a's plan: 120 a minute, 4 at once (its number allows 20/s);
    // read by the services with the tenants' first message.
    let changed = sqlx::query(
        "UPDATE tenants SET sends_per_minute = 120, send_burst = 4 WHERE id IN ('cloud-a', 'cloud-b')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 2);
    // A first message, so a sender holds cloud-a's lane (and reads its
    // number's health on first sight: GREEN, the simulator's default).
    m.cloud
        .post_batch(&Batch::new().text("PN1", "17771000", "hello"))
        .await
        .expect("post");
    poll::until("the first reply", WITHIN, || async {
        (send_times(&m, "PN1").len() == 1).then_some(())
    })
    .await;
    poll::until("GREEN read from Meta", WITHIN, || async {
        (quality(&pool, "cloud-a").await.as_deref() == Some("GREEN")).then_some(())
    })
    .await;

    // Meta rates the number RED; its webhook says only DOWNGRADE.
    m.cloud.set_quality("PN1", "RED").expect("quality");
    let posted = m
        .cloud
        .set_messaging_limit("PN1", "TIER_250", "DOWNGRADE", true)
        .await
        .expect("notice");
    assert!(
        posted
            .and_then(|r| r.first)
            .is_some_and(|d| d.acknowledged()),
        "the notice was taken"
    );
    poll::until("RED read from Meta and recorded", WITHIN, || async {
        (quality(&pool, "cloud-a").await.as_deref() == Some("RED")).then_some(())
    })
    .await;
    let tier: Option<String> = sqlx::query_scalar(
        "SELECT messaging_limit FROM cloud_channels WHERE tenant_id = 'cloud-a'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tier.as_deref(), Some("TIER_250"));

    // Six customers write at once to each of cloud-a (RED) and cloud-b
    // (same WABA, untouched). The sender applies the lowered limit a moment
    // after the rating is recorded (it re-reads the tenant's row on a task of
    // its own), so the first replies of the batch may still go at the old
    // rate and burst; the last three go at 30 a minute, one at once: at least
    // 2 s apart. cloud-b's six go within about a second (burst 4, 120 a minute).
    let mut batch = Batch::new();
    for i in 0..6 {
        batch = batch
            .text("PN1", &format!("1777200{i}"), &format!("a #{i}"))
            .text("PN2", &format!("1777300{i}"), &format!("b #{i}"));
    }
    m.cloud.post_batch(&batch).await.expect("post");
    poll::until("cloud-b's six replies", WITHIN, || async {
        (send_times(&m, "PN2").len() == 6).then_some(())
    })
    .await;
    poll::until("cloud-a's six replies", WITHIN, || async {
        (send_times(&m, "PN1").len() == 7).then_some(())
    })
    .await;
    let a = send_times(&m, "PN1");
    let b = send_times(&m, "PN2");
    let a_span = a[6] - a[4];
    let b_span = b[5] - b[3];
    assert!(
        a_span >= 3_500,
        "RED: cloud-a's last replies spaced about 2 s apart, got {a:?}"
    );
    assert!(
        b_span < a_span,
        "cloud-b keeps its own limit: {b:?} against cloud-a's {a:?}"
    );

    // `switchyard status` shows the limit and why.
    let vars = cli_support::vars(&services::database_url(&pool), Some(&m.p.nats.url()), None);
    let (_, status) = cli_support::run_json(&["status", "cloud-a"], &vars).await;
    let cloud = &status["cloud"];
    assert_eq!(cloud["quality"], "RED", "{status:#}");
    assert_eq!(
        cloud["send_limit"].as_str(),
        Some("30/min (quality RED: 25 % of 120/min; bulk stopped)"),
        "{status:#}"
    );
    let (_, neighbour) = cli_support::run_json(&["status", "cloud-b"], &vars).await;
    assert_eq!(
        neighbour["cloud"]["send_limit"],
        Value::from("120/min"),
        "{neighbour:#}"
    );

    // An upgrade restores it.
    m.cloud.set_quality("PN1", "GREEN").expect("quality");
    m.cloud
        .set_messaging_limit("PN1", "TIER_2K", "UPGRADE", true)
        .await
        .expect("notice");
    poll::until("GREEN again", WITHIN, || async {
        (quality(&pool, "cloud-a").await.as_deref() == Some("GREEN")).then_some(())
    })
    .await;
    let (_, status) = cli_support::run_json(&["status", "cloud-a"], &vars).await;
    assert_eq!(status["cloud"]["send_limit"], "120/min", "{status:#}");
}

/// The periodic sweep asks for every held Cloud tenant's health together,
/// but a sender reads no more than `SWITCHYARD_CLOUD_HEALTH_CONCURRENCY` at
/// once (each read takes a connection of the pool its sends share; a
/// thousand at once would empty it). Here one at a time, with every read
/// held 300 ms by the simulator so that reads asked for together overlap
/// unless the sender keeps them apart.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_health_sweep_reads_no_more_numbers_at_once_than_allowed(pool: PgPool) {
    let m = cloud_support::start_rig(
        &pool,
        &[
            ("SWITCHYARD_CLOUD_HEALTH_INTERVAL", "1s"),
            ("SWITCHYARD_CLOUD_HEALTH_CONCURRENCY", "1"),
        ],
    )
    .await;
    m.cloud.set_health_read_delay(Duration::from_millis(300));
    // A first message to each Cloud tenant, so the sender holds its lane.
    for (i, (_, number, _)) in m.tenants.iter().enumerate() {
        m.cloud
            .post_batch(&Batch::new().text(number, &format!("1777100{i}"), "hello"))
            .await
            .expect("post");
    }
    poll::until("a reply on every Cloud number", WITHIN, || async {
        m.tenants
            .iter()
            .all(|(_, number, _)| !send_times(&m, number).is_empty())
            .then_some(())
    })
    .await;
    // Three sweeps' worth of reads, each sweep asking for all three at once.
    let (answered, most) = poll::until("nine health reads", WITHIN, || async {
        let (answered, most) = m.cloud.health_reads();
        (answered >= 9).then_some((answered, most))
    })
    .await;
    assert_eq!(
        most, 1,
        "{answered} reads, at most {most} under way at once"
    );
}
