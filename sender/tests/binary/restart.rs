//! A sender killed mid-run (SIGKILL, no drain) and started again loses no
//! reply and sends none twice outside the documented window: a send the
//! provider accepted just before the kill, whose ledger update never ran.

// Test helpers may unwrap: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sqlx::PgPool;
use switchyard_bridge_sim::SimHandle;
use switchyard_tests::{fixtures, nats_server::NatsServer, services, traffic};

const IN_FLIGHT: usize = 8;

fn start_sender(nats: &NatsServer, db_url: &str, sim: &SimHandle) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchyard-sender"))
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", db_url)
        .env("SWITCHYARD_OPS_ADDR", "127.0.0.1:0")
        .env("SWITCHYARD_PARTITIONS", "4")
        .env("WA_API_URL", sim.base_url())
        .env("WA_API_KEY", fixtures::SIM_API_KEY)
        .env("SWITCHYARD_FLEET_MODE", "local")
        .env("SWITCHYARD_FLEET_CALLS_PER_MINUTE", "600000")
        .env("SWITCHYARD_SEND_IN_FLIGHT", IN_FLIGHT.to_string())
        .env("SWITCHYARD_ACK_WAIT", "2s")
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_sender_killed_mid_run_and_restarted_loses_nothing_and_resends_at_most_its_window(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let sim = fixtures::start_sim().await;
    let names = ["alpha", "bravo", "charlie", "delta"];
    for name in names {
        fixtures::add_tenant_with_bridge(&pool, &sim, name, |_| {}).await;
        // A little latency so the kill lands while sends are in flight.
        sim.set_latency(name, Duration::from_millis(5)).unwrap();
    }
    let (_client, js) = fixtures::jetstream_with_streams(&nats.url(), 4).await;
    for name in names {
        let bodies = (0..100).map(|i| format!("{name}:{i:03}"));
        traffic::publish_replies(&js, &fixtures::tenant(name), "r", "1555000", bodies).await;
    }
    let db_url = services::database_url(&pool);

    let mut first = start_sender(&nats, &db_url, &sim);
    sim.wait_for_sends(100, Duration::from_secs(30))
        .await
        .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = sim.sends().len();

    let mut second = start_sender(&nats, &db_url, &sim);
    let outcome = switchyard_tests::poll::until(
        "every reply sent after the restart",
        Duration::from_secs(60),
        || async {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for send in sim.sends() {
                *counts.entry(send.body).or_default() += 1;
            }
            (counts.len() == 400).then_some(counts)
        },
    )
    .await;
    second.kill().unwrap();
    second.wait().unwrap();

    let resent: Vec<_> = outcome.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "{at_kill} sends before the kill; {} sent twice after the restart",
        resent.len()
    );
    assert!(
        outcome.values().all(|n| *n <= 2),
        "nothing is sent three times"
    );
    assert!(
        resent.len() <= IN_FLIGHT,
        "at most the sends in flight at the kill may repeat, got {}",
        resent.len()
    );
}
