//! A bridge that flaps (its session drops and returns on a schedule, every
//! 30 minutes in real life, compressed to about a second here) loses and
//! duplicates nothing: sends are held while it is down and resume, after a
//! jitter, when it is back. Whole pipeline: the simulator's `disconnected`
//! and `connected` webhooks go through ingest and the router to the sender.

use std::time::Duration;

use crate::whatsapp_support::{self, Rig};
use sqlx::PgPool;
use switchyard_shared::subjects::Direction;
use switchyard_tests::traffic;

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_bridge_that_flaps_every_second_loses_and_duplicates_nothing(pool: PgPool) {
    let rig = Rig::start(&pool, &["flappy", "steady"]).await;
    rig.sim
        .set_latency("flappy", Duration::from_millis(20))
        .unwrap();
    let router = rig.router(&[]).await;
    let sender = rig
        .sender(&[("SWITCHYARD_RECONNECT_JITTER", "200ms")])
        .await;
    let flapping = rig.sim.flap(
        "flappy",
        Duration::from_millis(1000),
        Duration::from_millis(400),
    );
    // 120 replies over ~6 s, across 4 chats, while the bridge keeps dropping.
    for round in 0..12 {
        for chat in 0..4 {
            rig.replies(
                "flappy",
                &format!("r{round}c{chat}"),
                &format!("1555000700{chat}@s.whatsapp.net"),
                2,
            )
            .await;
        }
        rig.replies(
            "steady",
            &format!("r{round}"),
            "15550007100@s.whatsapp.net",
            2,
        )
        .await;
        // Spread the rounds over several flaps (traffic shape, not synchronisation).
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Sends met the bridge down at least once (answered 409, held, retried).
    assert!(
        flapping.drops() >= 3,
        "the bridge dropped {} times",
        flapping.drops()
    );
    rig.sim
        .wait_for_sends(96 + 24, Duration::from_secs(30))
        .await
        .unwrap();
    drop(flapping);
    let flappy = rig.sends_for("flappy");
    let bodies = whatsapp_support::once_each(&flappy);
    assert_eq!(bodies.len(), 96);
    assert_eq!(rig.sends_for("steady").len(), 24);
    assert!(
        traffic::dead_letters(&rig.js, Direction::Outbound)
            .await
            .is_empty(),
        "a flap dead-lettered a reply"
    );
    let refused = rig
        .sim
        .attempts()
        .iter()
        .filter(|a| a.customer_ref == "flappy" && a.status == 409)
        .count();
    eprintln!("sends that met the bridge down: {refused}");
    sender.stop().await;
    router.stop().await;
}
