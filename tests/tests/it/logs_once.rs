//! Logs an operator can trust (issue 19, point 6): trouble that repeats is
//! logged once per episode or at most once per interval, while its counter
//! counts every occurrence. The services run on this (current-thread) test
//! runtime, so their lines land in the test's [`LogBuffer`].

use std::time::Duration;

use sqlx::PgPool;
use switchyard_bridge_sim::Fault;
use switchyard_tests::{fixtures, nats_server::NatsServer, poll, services, traffic};

use crate::log_capture::LogBuffer;

const HOLD: &str = "provider calls for this tenant fail";
const RESUME: &str = "provider calls for this tenant succeed again";

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_bridge_that_keeps_timing_out_is_one_warning_and_one_resume_while_every_failure_counts(
    pool: PgPool,
) {
    let logs = LogBuffer::default();
    let _capture = logs.capture();
    let nats = NatsServer::start();
    let sim = fixtures::start_sim().await;
    fixtures::add_tenant_with_bridge(&pool, &sim, "acme", |_| {}).await;
    let (_client, js) = fixtures::jetstream_with_streams(&nats.url(), 4).await;
    let env = fixtures::sender_env(
        &nats.url(),
        &services::database_url(&pool),
        &sim,
        &[
            ("SWITCHYARD_WA_TIMEOUT", "200ms"),
            ("SWITCHYARD_SEND_RETRY_MIN_DELAY", "50ms"),
            ("SWITCHYARD_SEND_RETRY_MAX_DELAY", "100ms"),
            ("SWITCHYARD_SEND_MAX_ATTEMPTS", "100"),
        ],
    );
    let sender = services::start_sender(&env).await;
    sim.set_fault("acme", Fault::Hang, None).unwrap();

    traffic::publish_replies(
        &js,
        &fixtures::tenant("acme"),
        "o",
        "1555000",
        ["hello".to_owned()],
    )
    .await;
    let timeouts = |ops| async move {
        traffic::metric(
            ops,
            "switchyard_sender_attempts_total",
            r#"result="timeout""#,
        )
        .await
    };
    poll::until("five timed-out calls", Duration::from_secs(30), || async {
        (timeouts(sender.ops_addr).await >= 5.0).then_some(())
    })
    .await;
    sim.clear_fault("acme").unwrap();
    poll::until(
        "the reply sent and the resume logged",
        Duration::from_secs(30),
        || async {
            (sim.sends_for("acme").len() == 1 && logs.text().contains(RESUME)).then_some(())
        },
    )
    .await;

    let log = logs.text();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).collect::<Vec<_>>();
    let (holds, resumes) = (lines(HOLD), lines(RESUME));
    assert_eq!(holds.len(), 1, "{log}");
    assert_eq!(resumes.len(), 1, "{log}");
    assert!(
        holds[0].contains("WARN") && holds[0].contains("tenant.id=acme"),
        "{}",
        holds[0]
    );
    assert!(
        resumes[0].contains("INFO") && resumes[0].contains("tenant.id=acme"),
        "{}",
        resumes[0]
    );
    let counted = timeouts(sender.ops_addr).await;
    assert!(
        resumes[0].contains(&format!("trouble.failures={counted}")),
        "the resume names every failure the counter counted ({counted}): {}",
        resumes[0]
    );
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("tenant.id=acme"))
        .count();
    assert_eq!(
        warnings, 1,
        "nothing else warns about the tenant per retry:\n{log}"
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_flood_of_unknown_customer_refs_is_counted_exactly_and_logged_a_bounded_number_of_times(
    pool: PgPool,
) {
    let logs = LogBuffer::default();
    let _capture = logs.capture();
    let nats = NatsServer::start();
    let (_client, js) = fixtures::jetstream_with_streams(&nats.url(), 4).await;
    let router = services::start_router(&services::env(
        &nats.url(),
        &services::database_url(&pool),
        &[],
    ))
    .await;
    const FLOOD: usize = 200;
    let ghost = fixtures::tenant("ghost");
    let started = std::time::Instant::now();

    for i in 0..FLOOD {
        let id = format!("GHOST-{i}");
        traffic::publish_inbound(
            &js,
            &ghost,
            &id,
            traffic::message_body(Some("ghost"), &id, "15550001234@s.whatsapp.net", "hi"),
        )
        .await;
    }
    poll::until(
        "every unknown-ref event counted",
        Duration::from_secs(30),
        || async {
            let dropped = traffic::metric(
                router.ops_addr,
                "switchyard_router_dropped_total",
                r#"reason="unknown_tenant""#,
            )
            .await;
            (dropped == FLOOD as f64).then_some(())
        },
    )
    .await;

    let windows = 1 + started.elapsed().as_secs() as usize / 10;
    let log = logs.text();
    let lines = log
        .lines()
        .filter(|l| l.contains("event dropped") && l.contains("unknown_tenant"))
        .count();
    assert!(
        (1..=windows).contains(&lines),
        "{lines} lines for {FLOOD} events\n{log}"
    );
}
