//! The per-tenant metrics tell an operator what holds a tenant: a restricted
//! number shows as held (its hold's duration growing, its reason, its
//! replies waiting, its spill backlog) while its neighbour shows nothing,
//! and everything goes back to 0 once the operator resumes it.

use crate::cli_support;

use crate::whatsapp_support::{Rig, WITHIN};
use sqlx::PgPool;
use switchyard_bridge_sim::Fault;
use switchyard_tests::{poll, services::RunningService, traffic};

const CHAT: &str = "15550004001@s.whatsapp.net";

/// Waits until `name{labels}` (summed) satisfies `ok`; returns it.
async fn metric_until(
    sender: &RunningService,
    name: &str,
    labels: &str,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    poll::until(&format!("{name}{{{labels}}}"), WITHIN, || async {
        let value = traffic::metric(sender.ops_addr, name, labels).await;
        ok(value).then_some(value)
    })
    .await
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_restricted_tenant_shows_held_with_its_waiting_replies_until_resumed(pool: PgPool) {
    let rig = Rig::start(&pool, &["alpha", "bravo"]).await;
    rig.sim
        .set_fault(
            "alpha",
            Fault::Restricted {
                status: 403,
                message: "this number is restricted by WhatsApp".into(),
            },
            None,
        )
        .unwrap();
    let sender = rig
        .sender(&[
            ("SWITCHYARD_TENANT_REFRESH", "200ms"),
            ("SWITCHYARD_LAG_INTERVAL", "1s"),
            ("SWITCHYARD_LANE_QUEUE", "4"),
        ])
        .await;
    rig.replies("alpha", "r", CHAT, 20).await;
    rig.replies("bravo", "r", CHAT, 3).await;
    rig.sim.wait_for_sends(3, WITHIN).await.unwrap();

    let held = r#"tenant="alpha",reason="restricted""#;
    let first = metric_until(&sender, "switchyard_tenant_held_seconds", held, |s| s > 0.0).await;
    metric_until(&sender, "switchyard_tenant_held_seconds", held, |s| {
        s > first
    })
    .await;
    let count = r#"reason="restricted""#;
    assert_eq!(
        traffic::metric(sender.ops_addr, "switchyard_sender_tenants_held", count).await,
        1.0
    );
    let waiting = r#"tenant="alpha""#;
    metric_until(&sender, "switchyard_tenant_replies_waiting", waiting, |n| {
        n >= 1.0
    })
    .await;
    // Past its lane's 4 places, the rest of its replies wait in its spill lane.
    let spill = r#"direction="outbound""#;
    metric_until(&sender, "switchyard_lane_spill_pending", spill, |n| {
        n >= 1.0
    })
    .await;
    // The neighbour was served and is neither held nor waiting.
    let bravo = r#"tenant="bravo""#;
    assert_eq!(
        traffic::metric(sender.ops_addr, "switchyard_tenant_held_seconds", bravo).await,
        0.0
    );
    assert_eq!(
        traffic::metric(sender.ops_addr, "switchyard_tenant_replies_waiting", bravo).await,
        0.0
    );
    let sent = r#"tenant="bravo",outcome="sent""#;
    assert_eq!(
        traffic::metric(sender.ops_addr, "switchyard_tenant_sends_total", sent).await,
        3.0
    );

    // The operator lifts it: the hold and the backlog go back to 0.
    rig.sim.clear_fault("alpha").unwrap();
    let nats_url = rig.nats.url();
    let vars = cli_support::vars(&rig.db_url, Some(&nats_url), None);
    let (exit, answer) =
        cli_support::run_json(&["tenants", "resume-sending", "alpha"], &vars).await;
    assert_eq!(exit, switchyard_cli::exit::Exit::Ok, "{answer}");
    rig.sim.wait_for_sends(23, WITHIN).await.unwrap();
    metric_until(&sender, "switchyard_tenant_held_seconds", held, |s| {
        s == 0.0
    })
    .await;
    metric_until(&sender, "switchyard_tenant_replies_waiting", waiting, |n| {
        n == 0.0
    })
    .await;
    metric_until(&sender, "switchyard_lane_spill_pending", spill, |n| {
        n == 0.0
    })
    .await;
    assert_eq!(
        traffic::metric(sender.ops_addr, "switchyard_sender_tenants_held", count).await,
        0.0
    );
}
