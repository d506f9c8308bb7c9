//! A restriction error (the number is restricted or banned) pauses that
//! tenant only, keeps every message, is never retried blindly, alerts, and
//! sending resumes on the operator's word (`switchyard tenants resume-sending`).

use crate::cli_support;

use crate::whatsapp_support::{self, Rig, WITHIN};
use sqlx::PgPool;
use switchyard_bridge_sim::Fault;
use switchyard_shared::subjects::Direction;
use switchyard_tests::{poll, traffic};

const CHAT: &str = "15550003001@s.whatsapp.net";

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_restriction_pauses_that_tenant_only_loses_nothing_and_resumes_on_the_operators_word(
    pool: PgPool,
) {
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
    let sender = rig.sender(&[]).await;
    rig.replies("alpha", "r", CHAT, 10).await;
    poll::until("the restriction answer", WITHIN, || async {
        rig.sim
            .attempts()
            .iter()
            .any(|a| a.status == 403)
            .then_some(())
    })
    .await;
    // The operator is told.
    rig.counter_reaches(
        &sender,
        "switchyard_sender_tenant_held_total",
        "reason=\"restricted\"",
        1.0,
    )
    .await;
    // Another tenant is not held.
    rig.replies("bravo", "r", CHAT, 10).await;
    rig.sim.wait_for_sends(10, WITHIN).await.unwrap();
    assert_eq!(rig.sends_for("bravo").len(), 10);

    // Held, not retried: after the first refusal (and what was already in
    // flight), nothing more is tried on the restricted number.
    let tried = rig
        .sim
        .attempts()
        .iter()
        .filter(|a| a.customer_ref == "alpha")
        .count();
    assert!(tried <= 4, "{tried} attempts on a restricted number");
    assert!(rig.sends_for("alpha").is_empty());
    assert!(
        traffic::dead_letters(&rig.js, Direction::Outbound)
            .await
            .is_empty(),
        "nothing was burned"
    );

    // The restriction is lifted at the provider; the operator resumes.
    rig.sim.clear_fault("alpha").unwrap();
    let nats_url = rig.nats.url();
    let vars = cli_support::vars(&rig.db_url, Some(&nats_url), None);
    let (exit, answer) =
        cli_support::run_json(&["tenants", "resume-sending", "alpha"], &vars).await;
    assert_eq!(exit, switchyard_cli::exit::Exit::Ok, "{answer}");
    rig.sim.wait_for_sends(20, WITHIN).await.unwrap();
    let alpha = whatsapp_support::once_each(&rig.sends_for("alpha"));
    let expected: Vec<String> = (0..10).map(|i| format!("alpha:r:{i:05}")).collect();
    assert_eq!(alpha, expected, "every held message, once, in order");
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn resume_sending_for_an_unknown_tenant_is_refused(pool: PgPool) {
    let rig = Rig::start(&pool, &["alpha"]).await;
    let nats_url = rig.nats.url();
    let vars = cli_support::vars(&rig.db_url, Some(&nats_url), None);
    let (exit, _) = cli_support::run_json(&["tenants", "resume-sending", "ghost"], &vars).await;
    assert_eq!(exit, switchyard_cli::exit::Exit::Usage);
}
