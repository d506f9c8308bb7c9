//! The sender against the bridge simulator, real NATS and PostgreSQL: sends
//! land on the tenant's own bridge only; weights shape shares; a quiet tenant
//! is not stuck behind a backlog; 429, 5xx, 4xx, 401 and a disconnected
//! bridge each end the way the retry policy says, losing and duplicating nothing.

use std::{collections::BTreeMap, time::Duration};

use sqlx::PgPool;
use switchyard_bridge_sim::{Fault, SimHandle};
use switchyard_shared::{config::Env, ids::TenantId, subjects, subjects::Direction, tenants};
use switchyard_tests::{fixtures, nats_server::NatsServer, poll, services, traffic};

fn t(raw: &str) -> TenantId {
    fixtures::tenant(raw)
}

struct Rig {
    nats: NatsServer,
    sim: SimHandle,
    js: async_nats::jetstream::Context,
    client: async_nats::Client,
    db_url: String,
}

impl Rig {
    async fn new(pool: &PgPool, tenants: &[(&str, u32)]) -> Self {
        let nats = NatsServer::start();
        let sim = fixtures::start_sim().await;
        for (id, weight) in tenants {
            fixtures::add_tenant_with_bridge(pool, &sim, id, |t| t.limits.weight = *weight).await;
        }
        let (client, js) = fixtures::jetstream_with_streams(&nats.url(), 4).await;
        Self {
            nats,
            sim,
            js,
            client,
            db_url: services::database_url(pool),
        }
    }

    fn env(&self, extra: &[(&str, &str)]) -> Env {
        fixtures::sender_env(&self.nats.url(), &self.db_url, &self.sim, extra)
    }

    async fn replies(&self, tenant: &str, n: usize, prefix: &str) {
        let bodies = (0..n).map(|i| format!("{tenant}:{prefix}:{i:05}"));
        traffic::publish_replies(
            &self.js,
            &t(tenant),
            prefix,
            "15550001111@s.whatsapp.net",
            bodies,
        )
        .await;
    }

    async fn wait_sends(
        &self,
        n: usize,
        within: Duration,
    ) -> Vec<switchyard_bridge_sim::RecordedSend> {
        self.sim
            .wait_for_sends(n, within)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
    }
}

/// Sends recorded per bridge (customer_ref), asserting none was sent twice.
fn sends_by_bridge(sends: &[switchyard_bridge_sim::RecordedSend]) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in sends {
        by.entry(s.customer_ref.clone())
            .or_default()
            .push(s.body.clone());
    }
    for (bridge, bodies) in &by {
        let mut unique = bodies.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            bodies.len(),
            "bridge {bridge} received a body twice"
        );
    }
    by
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn every_reply_is_sent_once_on_its_own_tenants_bridge(pool: PgPool) {
    let rig = Rig::new(&pool, &[("alpha", 1), ("bravo", 1), ("charlie", 1)]).await;
    let sender = services::start_sender(&rig.env(&[])).await;
    for tenant in ["alpha", "bravo", "charlie"] {
        rig.replies(tenant, 20, "r").await;
    }
    let sends = rig.wait_sends(60, Duration::from_secs(20)).await;
    for s in &sends {
        assert!(
            s.body.starts_with(&format!("{}:", s.customer_ref)),
            "{} sent on {}",
            s.body,
            s.customer_ref
        );
        assert_eq!(
            s.chat, "15550001111",
            "the chat is normalised to bare digits"
        );
    }
    let by = sends_by_bridge(&sends);
    assert!(by.values().all(|b| b.len() == 20));
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn weights_5_3_2_split_the_sends_50_30_20_when_all_are_backlogged(pool: PgPool) {
    let rig = Rig::new(&pool, &[("five", 5), ("three", 3), ("two", 2)]).await;
    for tenant in ["five", "three", "two"] {
        rig.replies(tenant, 700, "w").await;
    }
    // One send at a time: the scheduler's order is the only thing deciding.
    let sender = services::start_sender(&rig.env(&[("SWITCHYARD_SEND_IN_FLIGHT", "1")])).await;
    let sends = rig.wait_sends(1100, Duration::from_secs(60)).await;
    // Skip the start, while the sender is still learning the three tenants.
    let window = &sends[100..1100];
    let share = |tenant: &str| {
        window.iter().filter(|s| s.customer_ref == tenant).count() as f64 / window.len() as f64
    };
    let (five, three, two) = (share("five"), share("three"), share("two"));
    eprintln!("shares: five {five:.3}, three {three:.3}, two {two:.3}");
    assert!((five - 0.5).abs() <= 0.03, "five got {five}");
    assert!((three - 0.3).abs() <= 0.03, "three got {three}");
    assert!((two - 0.2).abs() <= 0.03, "two got {two}");
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_quiet_tenant_is_served_promptly_while_another_has_a_10000_message_backlog(pool: PgPool) {
    let rig = Rig::new(&pool, &[("noisy", 1), ("quiet", 1)]).await;
    let started = std::time::Instant::now();
    rig.replies("noisy", 10_000, "flood").await;
    eprintln!("published 10,000 replies in {:?}", started.elapsed());
    // A fleet budget of 50 sends a second keeps the noisy backlog for minutes.
    let sender =
        services::start_sender(&rig.env(&[("SWITCHYARD_FLEET_CALLS_PER_MINUTE", "3000")])).await;
    rig.wait_sends(20, Duration::from_secs(20)).await;
    eprintln!("20 noisy sends after {:?}", started.elapsed());
    rig.replies("quiet", 1, "hello").await;
    let quiet = poll::until(
        "the quiet tenant's send",
        Duration::from_secs(20),
        || async { rig.sim.sends_for("quiet").first().cloned() },
    )
    .await;
    let sends = rig.sim.sends();
    let noisy_before = sends
        .iter()
        .filter(|s| s.customer_ref == "noisy" && s.at_ms < quiet.at_ms)
        .count();
    let noisy_after_publish_to_send = sends
        .iter()
        .filter(|s| s.customer_ref == "noisy" && s.at_ms <= quiet.at_ms)
        .count();
    eprintln!("noisy sends before the quiet one: {noisy_before}");
    assert!(
        noisy_before < 10_000,
        "the quiet tenant must not wait for the backlog"
    );
    // Equal weights: once the quiet reply is known, it goes out within a turn or two.
    assert!(
        noisy_after_publish_to_send <= 20 + 10 + 5,
        "quiet waited behind {noisy_after_publish_to_send} noisy sends"
    );
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_429_pauses_and_resumes_without_losing_or_duplicating(pool: PgPool) {
    let rig = Rig::new(&pool, &[("alpha", 1), ("bravo", 1)]).await;
    rig.sim
        .set_fault(
            "alpha",
            Fault::RateLimit {
                retry_after_secs: 1,
            },
            Some(1),
        )
        .unwrap();
    let sender = services::start_sender(&rig.env(&[])).await;
    rig.replies("alpha", 5, "r").await;
    rig.replies("bravo", 5, "r").await;
    let sends = rig.wait_sends(10, Duration::from_secs(20)).await;
    let by = sends_by_bridge(&sends);
    assert_eq!(by["alpha"].len(), 5);
    assert_eq!(by["bravo"].len(), 5);
    let refused = rig
        .sim
        .attempts()
        .iter()
        .filter(|a| a.status == 429)
        .count();
    assert_eq!(refused, 1, "exactly one attempt met the 429");
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_5xx_then_success_delivers_once(pool: PgPool) {
    let rig = Rig::new(&pool, &[("alpha", 1)]).await;
    rig.sim
        .set_fault("alpha", Fault::ServerError { status: 503 }, Some(2))
        .unwrap();
    let sender = services::start_sender(&rig.env(&[])).await;
    rig.replies("alpha", 1, "r").await;
    let sends = rig.wait_sends(1, Duration::from_secs(20)).await;
    assert_eq!(sends.len(), 1);
    assert_eq!(
        rig.sim.attempts().len(),
        3,
        "two failures, then the success"
    );
    assert!(
        traffic::dead_letters(&rig.js, Direction::Outbound)
            .await
            .is_empty()
    );
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_4xx_dead_letters_once_and_sends_nothing(pool: PgPool) {
    let rig = Rig::new(&pool, &[("alpha", 1), ("bravo", 1)]).await;
    rig.sim
        .set_fault(
            "alpha",
            Fault::Reject {
                status: 422,
                message: "bad chat".into(),
            },
            None,
        )
        .unwrap();
    let sender = services::start_sender(&rig.env(&[])).await;
    rig.replies("alpha", 1, "r").await;
    rig.replies("bravo", 1, "r").await;
    let dlq =
        traffic::wait_dead_letters(&rig.js, Direction::Outbound, Duration::from_secs(20)).await;
    assert_eq!(dlq, vec![("alpha".to_owned(), "rejected".to_owned(), 1)]);
    rig.wait_sends(1, Duration::from_secs(10)).await;
    assert!(rig.sim.sends_for("alpha").is_empty());
    assert_eq!(
        rig.sim
            .attempts()
            .iter()
            .filter(|a| a.customer_ref == "alpha")
            .count(),
        1,
        "never retried"
    );
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_401_stops_the_tenant_without_losing_its_messages_until_an_operator_resumes(
    pool: PgPool,
) {
    let rig = Rig::new(&pool, &[("alpha", 1), ("bravo", 1)]).await;
    rig.sim
        .set_fault(
            "alpha",
            Fault::Reject {
                status: 401,
                message: "invalid api key".into(),
            },
            None,
        )
        .unwrap();
    let sender = services::start_sender(&rig.env(&[])).await;
    rig.replies("alpha", 3, "r").await;
    poll::until("the 401", Duration::from_secs(10), || async {
        rig.sim
            .attempts()
            .iter()
            .any(|a| a.status == 401)
            .then_some(())
    })
    .await;
    rig.replies("bravo", 3, "r").await;
    rig.wait_sends(3, Duration::from_secs(10)).await;
    let alpha_attempts = rig
        .sim
        .attempts()
        .iter()
        .filter(|a| a.customer_ref == "alpha")
        .count();
    assert!(
        rig.sim.sends_for("alpha").is_empty(),
        "a refused key stops the tenant"
    );
    // Only what was already in flight when the first 401 came back was tried.
    assert!(
        alpha_attempts <= 3,
        "{alpha_attempts} attempts: the tenant kept sending after a 401"
    );
    assert!(
        traffic::dead_letters(&rig.js, Direction::Outbound)
            .await
            .is_empty(),
        "nothing burned"
    );

    // The operator fixes the key and resumes the tenant.
    rig.sim.clear_fault("alpha").unwrap();
    rig.client
        .publish(subjects::sending_resumed(&t("alpha")), "".into())
        .await
        .unwrap();
    let sends = rig.wait_sends(6, Duration::from_secs(10)).await;
    assert_eq!(sends_by_bridge(&sends)["alpha"].len(), 3);
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_disconnected_bridge_holds_its_messages_until_it_reconnects(pool: PgPool) {
    let rig = Rig::new(&pool, &[("alpha", 1), ("bravo", 1)]).await;
    tenants::set_bridge_state(
        &pool,
        &t("alpha"),
        &switchyard_shared::bridge_state::BridgeState::Disconnected,
    )
    .await
    .unwrap();
    rig.sim.set_connected("alpha", false, false).await.unwrap();
    let sender = services::start_sender(&rig.env(&[])).await;
    rig.replies("alpha", 3, "r").await;
    rig.replies("bravo", 3, "r").await;
    rig.wait_sends(3, Duration::from_secs(10)).await;
    assert!(rig.sim.sends_for("alpha").is_empty());
    assert!(
        traffic::dead_letters(&rig.js, Direction::Outbound)
            .await
            .is_empty(),
        "held, not dead-lettered"
    );

    // The bridge comes back: the router records it and announces it.
    rig.sim.set_connected("alpha", true, false).await.unwrap();
    tenants::set_bridge_state(
        &pool,
        &t("alpha"),
        &switchyard_shared::bridge_state::BridgeState::Connected,
    )
    .await
    .unwrap();
    rig.client
        .publish(
            subjects::bridge_state_changed(&t("alpha")),
            "connected".into(),
        )
        .await
        .unwrap();
    let sends = rig.wait_sends(6, Duration::from_secs(10)).await;
    assert_eq!(sends_by_bridge(&sends)["alpha"].len(), 3);
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_fifo_baseline_makes_a_quiet_tenant_wait_behind_a_flood(pool: PgPool) {
    let rig = Rig::new(&pool, &[("noisy", 1), ("quiet", 1)]).await;
    rig.replies("noisy", 300, "flood").await;
    rig.replies("quiet", 1, "hello").await;
    let sender = services::start_sender(&rig.env(&[
        ("SWITCHYARD_SCHEDULER", "fifo"),
        ("SWITCHYARD_SEND_IN_FLIGHT", "1"),
    ]))
    .await;
    let sends = rig.wait_sends(301, Duration::from_secs(30)).await;
    let quiet_position = sends.iter().position(|s| s.customer_ref == "quiet");
    // The baseline has no fairness: the quiet reply, published last, goes out last.
    assert_eq!(quiet_position, Some(300));
    sends_by_bridge(&sends);
    sender.stop().await;
}
