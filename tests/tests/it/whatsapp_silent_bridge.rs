//! The silent-bridge watchdog, whole pipeline: the simulator's bridge goes
//! silent (no more webhooks, its session dropped without the `disconnected`
//! webhook, so only `/status` tells), and the sender's watchdog, probing
//! bridges silent past `SWITCHYARD_WATCHDOG_SILENCE`, holds it exactly as
//! the webhook would have (table, hold, resume on `connected`); a silent
//! bridge still connected is probed and left alone; a talking one is never
//! probed; and the probes stay within the watchdog's share of the budget.

use std::time::Duration;

use sqlx::PgPool;
use switchyard_shared::{bridge_state::BridgeState, tenants};
use switchyard_tests::{poll, traffic};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::whatsapp_support::{Rig, WITHIN, t};

const FOUND: &str = "switchyard_sender_watchdog_found_disconnected_total";

async fn bridge_state(rig: &Rig, tenant: &str) -> BridgeState {
    tenants::fetch(&rig.pool, &t(tenant))
        .await
        .unwrap()
        .unwrap()
        .bridge_state
}

fn status_calls(rig: &Rig, tenant: &str) -> u64 {
    rig.sim.bridge(tenant).unwrap().status_calls
}

/// Every tenant's customer writes once and gets the echo bot's answer, so
/// each has an inbound event and a working bridge before the silence.
async fn everyone_talks_once(rig: &Rig, names: &[&str]) {
    for name in names {
        rig.customer_says(name, "15550009001", "hello").await;
    }
    rig.sim.wait_for_sends(names.len(), WITHIN).await.unwrap();
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_bridge_gone_silent_is_held_exactly_as_after_a_disconnected_webhook(pool: PgPool) {
    let rig = Rig::start(&pool, &["dropped", "quiet", "chatty"]).await;
    let router = rig.router(&[]).await;
    let sender = rig
        .sender(&[
            ("SWITCHYARD_FLEET_MODE", "shared"),
            ("SWITCHYARD_WATCHDOG_SILENCE", "2s"),
            ("SWITCHYARD_WATCHDOG_INTERVAL", "200ms"),
            ("SWITCHYARD_RECONNECT_JITTER", "100ms"),
        ])
        .await;
    everyone_talks_once(&rig, &["dropped", "quiet", "chatty"]).await;

    // Act: one bridge drops silently, one only goes quiet, one keeps talking.
    let silent_at = Instant::now();
    rig.sim.go_silent("dropped").unwrap();
    rig.sim.set_silent("quiet", true).unwrap();
    let talking = CancellationToken::new();
    let chatter = tokio::spawn({
        let (sim, stop) = (rig.sim.clone(), talking.clone());
        async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let event = switchyard_bridge_sim::events::TextMessage::new(
                    "15550009002",
                    format!("still here {n}"),
                )
                .to_json();
                sim.post_webhook("chatty", event).await.unwrap();
                n += 1;
                // Traffic shape (an event every 300 ms), not synchronisation.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });

    // Assert: held as a `disconnected` webhook would, within the silence
    // plus a round (and some slack for a loaded machine).
    poll::until("dropped recorded as disconnected", WITHIN, || async {
        (bridge_state(&rig, "dropped").await == BridgeState::Disconnected).then_some(())
    })
    .await;
    let took = silent_at.elapsed();
    assert!(
        took < Duration::from_secs(2) + Duration::from_millis(200) + Duration::from_secs(4),
        "held {took:?} after the bridge went silent"
    );
    rig.counter_reaches(&sender, FOUND, "", 1.0).await;
    assert_eq!(status_calls(&rig, "dropped"), 1, "probed once, then held");
    assert!(
        !rig.sim
            .webhooks()
            .iter()
            .any(|w| w.customer_ref == "dropped" && w.event == "disconnected"),
        "the simulator sent a disconnected webhook"
    );
    // The quiet bridge is probed and left alone; the talking one never probed.
    poll::until("quiet probed", WITHIN, || async {
        (status_calls(&rig, "quiet") >= 1).then_some(())
    })
    .await;
    assert_eq!(bridge_state(&rig, "quiet").await, BridgeState::Connected);
    talking.cancel();
    chatter.await.unwrap();
    assert_eq!(
        status_calls(&rig, "chatty"),
        0,
        "a talking bridge was probed"
    );
    assert_eq!(bridge_state(&rig, "chatty").await, BridgeState::Connected);

    // Replies wait for the dropped bridge while the others' go out.
    let before = rig.sends_for("dropped").len();
    rig.replies("dropped", "held", "15550009001@s.whatsapp.net", 2)
        .await;
    rig.replies("quiet", "free", "15550009001@s.whatsapp.net", 2)
        .await;
    let quiet_before = rig.sends_for("quiet").len();
    poll::until("quiet's replies sent", WITHIN, || async {
        (rig.sends_for("quiet").len() >= quiet_before + 2).then_some(())
    })
    .await;
    assert_eq!(
        rig.sends_for("dropped").len(),
        before,
        "a held reply went out"
    );

    // The hold is the webhook's: the `connected` webhook lifts it.
    rig.sim.set_silent("dropped", false).unwrap();
    rig.sim.set_connected("dropped", true, true).await.unwrap();
    poll::until("dropped's replies sent after connected", WITHIN, || async {
        (rig.sends_for("dropped").len() >= before + 2).then_some(())
    })
    .await;
    assert_eq!(bridge_state(&rig, "dropped").await, BridgeState::Connected);
    assert_eq!(
        traffic::metric(sender.ops_addr, FOUND, "").await,
        1.0,
        "found disconnected more than once"
    );
    sender.stop().await;
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn probes_stay_within_the_watchdogs_share_of_the_fleet_budget(pool: PgPool) {
    let names: Vec<String> = (0..10).map(|i| format!("quiet{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let rig = Rig::start(&pool, &names).await;
    let router = rig.router(&[]).await;
    // 60 calls per 6 s window, 10 % for the watchdog: 6 a window, 1 a second.
    let started = Instant::now();
    let sender = rig
        .sender(&[
            ("SWITCHYARD_FLEET_MODE", "shared"),
            ("SWITCHYARD_FLEET_CALLS_PER_MINUTE", "60"),
            ("SWITCHYARD_FLEET_WINDOW", "6s"),
            ("SWITCHYARD_WATCHDOG_BUDGET_PERCENT", "10"),
            ("SWITCHYARD_WATCHDOG_SILENCE", "1s"),
            ("SWITCHYARD_WATCHDOG_INTERVAL", "100ms"),
        ])
        .await;
    everyone_talks_once(&rig, &names).await;
    for name in &names {
        rig.sim.set_silent(name, true).unwrap();
    }
    let probes = || names.iter().map(|n| status_calls(&rig, n)).sum::<u64>();

    // Ten silent bridges ask for ten probes a second; the share allows one.
    poll::until("eight probes", WITHIN, || async {
        (probes() >= 8).then_some(())
    })
    .await;
    let total = probes();
    let allowed = started.elapsed().as_secs_f64() * 1.0;
    assert!(
        total as f64 <= allowed + 1.0,
        "{total} probes in {:.1} s; the share allows {allowed:.1}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        traffic::metric(
            sender.ops_addr,
            "switchyard_sender_watchdog_probes_total",
            "result=\"connected\""
        )
        .await,
        total as f64,
        "a probe was not counted, or not found connected"
    );
    for name in &names {
        assert_eq!(bridge_state(&rig, name).await, BridgeState::Connected);
    }
    sender.stop().await;
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn with_two_senders_each_silent_bridge_is_probed_by_one(pool: PgPool) {
    let names: Vec<String> = (0..8).map(|i| format!("quiet{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let rig = Rig::start(&pool, &names).await;
    let router = rig.router(&[]).await;
    let env = |replica: &'static str| {
        [
            ("SWITCHYARD_REPLICA_ID", replica),
            ("SWITCHYARD_FLEET_MODE", "shared"),
            ("SWITCHYARD_WATCHDOG_SILENCE", "3s"),
            ("SWITCHYARD_WATCHDOG_INTERVAL", "100ms"),
        ]
    };
    let senders = [
        rig.sender(&env("sender-a")).await,
        rig.sender(&env("sender-b")).await,
    ];
    everyone_talks_once(&rig, &names).await;
    for name in &names {
        rig.sim.set_silent(name, true).unwrap();
    }

    // Every bridge's first silence ends within the same few hundred ms (one
    // silence period is 3 s): were two replicas probing one bridge, the
    // second probe would come within a round of the first.
    poll::until("every silent bridge probed", WITHIN, || async {
        names
            .iter()
            .all(|n| status_calls(&rig, n) >= 1)
            .then_some(())
    })
    .await;
    let calls: Vec<u64> = names.iter().map(|n| status_calls(&rig, n)).collect();
    assert!(
        calls.iter().all(|&c| c == 1),
        "probes per bridge: {calls:?}"
    );
    // (Both senders run in this process: their metrics are one registry.)
    assert_eq!(
        traffic::metric(
            senders[0].ops_addr,
            "switchyard_sender_watchdog_probes_total",
            ""
        )
        .await,
        names.len() as f64
    );
    let [a, b] = senders;
    a.stop().await;
    b.stop().await;
    router.stop().await;
}

/// A tenant with no event in the INBOUND stream at all (quiet past the
/// stream's max age, or never heard from) used to be invisible to the
/// watchdog: its bridge could drop silently and stay "connected" for good.
/// Now it is listed from the tenants table, counted as heard from when first
/// seen, and probed one silence period later like any other.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_connected_bridge_with_no_event_in_the_stream_is_probed_too(pool: PgPool) {
    let rig = Rig::start(&pool, &["neverwrote", "alsoquiet"]).await;
    let sender = rig
        .sender(&[
            ("SWITCHYARD_FLEET_MODE", "shared"),
            ("SWITCHYARD_WATCHDOG_SILENCE", "2s"),
            ("SWITCHYARD_WATCHDOG_INTERVAL", "200ms"),
        ])
        .await;
    // Neither tenant has sent a single event; one bridge drops silently.
    rig.sim.go_silent("neverwrote").unwrap();
    rig.sim.set_silent("alsoquiet", true).unwrap();
    poll::until("neverwrote recorded as disconnected", WITHIN, || async {
        (bridge_state(&rig, "neverwrote").await == BridgeState::Disconnected).then_some(())
    })
    .await;
    rig.counter_reaches(&sender, FOUND, "", 1.0).await;
    poll::until("alsoquiet probed", WITHIN, || async {
        (status_calls(&rig, "alsoquiet") >= 1).then_some(())
    })
    .await;
    assert_eq!(
        bridge_state(&rig, "alsoquiet").await,
        BridgeState::Connected
    );
    assert_eq!(
        status_calls(&rig, "neverwrote"),
        1,
        "probed once, then held"
    );
}
