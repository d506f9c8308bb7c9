//! A provider outage that ends (issue 16's goal): every bridge answers 503
//! for a while, then the provider is back. The sender notices the outage
//! (failures across tenants), holds every send and probes every few seconds
//! instead of letting each message back off on its own; once a probe gets
//! through, replies flow again within 10 s of the outage's end, without a
//! burst over the fleet budget, with nothing dead-lettered and nothing sent
//! twice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;
use switchyard_bridge_sim::Fault;
use switchyard_shared::subjects::Direction;
use switchyard_tests::{fixtures, nats_server::NatsServer, poll, services, traffic};

const TENANTS: [&str; 6] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
const PER_TENANT: usize = 5;
/// The fleet budget: 300 calls a minute (5 a second), bursts of 15.
const PER_MINUTE: u64 = 300;
const BURST: u64 = 15;
const OUTAGE: Duration = Duration::from_secs(20);

fn unix_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn after_a_provider_outage_replies_flow_again_within_10_s_paced_by_the_fleet_budget(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let sim = fixtures::start_sim().await;
    for name in TENANTS {
        fixtures::add_tenant_with_bridge(&pool, &sim, name, |_| {}).await;
    }
    let (_client, js) = fixtures::jetstream_with_streams(&nats.url(), 4).await;
    let per_minute = PER_MINUTE.to_string();
    let env = fixtures::sender_env(
        &nats.url(),
        &services::database_url(&pool),
        &sim,
        &[
            ("SWITCHYARD_FLEET_CALLS_PER_MINUTE", per_minute.as_str()),
            // The production backoff: on their own, messages would wait out
            // delays of 16-32 s and more by the time the outage ends.
            ("SWITCHYARD_SEND_RETRY_MIN_DELAY", "2s"),
            ("SWITCHYARD_SEND_RETRY_MAX_DELAY", "5m"),
        ],
    );
    let sender = services::start_sender(&env).await;

    // The provider goes down, with replies waiting for every tenant.
    let outage_began = tokio::time::Instant::now();
    for name in TENANTS {
        sim.set_fault(name, Fault::ServerError { status: 503 }, None)
            .unwrap();
    }
    for name in TENANTS {
        let bodies = (0..PER_TENANT).map(|i| format!("{name}:{i}"));
        traffic::publish_replies(&js, &fixtures::tenant(name), "o", "1555000", bodies).await;
    }
    poll::until(
        "the sender to notice the outage",
        Duration::from_secs(15),
        || async {
            let tripped = traffic::metric(
                sender.ops_addr,
                "switchyard_sender_provider_outages_total",
                "",
            )
            .await;
            (tripped >= 1.0).then_some(())
        },
    )
    .await;
    tokio::time::sleep_until(outage_began + OUTAGE).await; // the outage's length
    let failed_during = sim.attempts().len();
    for name in TENANTS {
        sim.clear_fault(name).unwrap();
    }
    let ended_ms = unix_ms();

    let total = TENANTS.len() * PER_TENANT;
    let sends = sim
        .wait_for_sends(total, Duration::from_secs(30))
        .await
        .unwrap();
    let first_ms = sends.iter().map(|s| s.at_ms).min().unwrap();
    let last_ms = sends.iter().map(|s| s.at_ms).max().unwrap();
    eprintln!(
        "{failed_during} failed calls in a {OUTAGE:?} outage; first reply {} ms, last {} ms after its end",
        first_ms.saturating_sub(ended_ms),
        last_ms.saturating_sub(ended_ms)
    );
    assert!(
        last_ms <= ended_ms + 10_000,
        "every reply flows within 10 s of the outage's end (the last came {} ms after)",
        last_ms - ended_ms
    );
    // Held and probed, not hammered: one probe every 3 s once tripped, plus
    // the sends that were under way when it tripped.
    assert!(
        failed_during <= 20,
        "{failed_during} calls during the outage"
    );
    // No burst over the fleet budget: any span holds at most the bucket's
    // burst plus its rate over the span.
    let times: Vec<u64> = sim.attempts().iter().map(|a| a.at_ms).collect();
    for span_ms in [500, 1000, 2000, 4000] {
        let busiest = times
            .iter()
            .map(|start| {
                times
                    .iter()
                    .filter(|t| **t >= *start && **t < start + span_ms)
                    .count() as u64
            })
            .max()
            .unwrap_or(0);
        let allowed = BURST + PER_MINUTE * span_ms / 60_000 + 1;
        assert!(
            busiest <= allowed,
            "{busiest} calls within {span_ms} ms (budget allows {allowed})"
        );
    }
    let mut bodies: Vec<String> = sends.into_iter().map(|s| s.body).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), total, "a reply was sent twice");
    assert!(
        traffic::dead_letters(&js, Direction::Outbound)
            .await
            .is_empty(),
        "the outage is no message's fault"
    );
    sender.stop().await;
}
