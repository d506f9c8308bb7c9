//! Echoes and human takeover, through the whole pipeline (simulator, ingest,
//! router, sender, real NATS and PostgreSQL): the bot never answers its own
//! echo, even one that arrives before the send call returns; a person
//! answering from the phone silences the bot in that chat only, for that
//! tenant only, visibly and resettably from the operator CLI.

use crate::cli_support;

use std::time::Duration;

use crate::whatsapp_support::{self, Rig, WITHIN};
use sqlx::PgPool;
use switchyard_bridge_sim::EchoMode;
use switchyard_tests::poll;

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn no_bot_answers_its_own_echo_even_when_the_echo_arrives_before_the_send_returns(
    pool: PgPool,
) {
    let rig = Rig::start(&pool, &["alpha"]).await;
    // The worst case: every echo is delivered (and ingested) before the send
    // call answers, and the answer is slow on top.
    rig.sim.set_echo("alpha", EchoMode::Before).unwrap();
    rig.sim
        .set_latency("alpha", Duration::from_millis(100))
        .unwrap();
    let router = rig.router(&[]).await;
    let sender = rig.sender(&[]).await;

    for i in 0..5 {
        rig.customer_says("alpha", &format!("1555000100{i}"), &format!("hello {i}"))
            .await;
    }
    rig.sim.wait_for_sends(5, WITHIN).await.unwrap();
    // Every echo was seen and classified as ours (none as a person).
    rig.counter_reaches(&router, "switchyard_router_from_me_total", "", 5.0)
        .await;
    let human = switchyard_tests::traffic::metric(
        router.ops_addr,
        "switchyard_router_from_me_total",
        "origin=\"human\"",
    )
    .await;
    assert_eq!(human, 0.0, "an echo of our own send was taken for a person");

    // The chats are not silenced: a second message in each is answered.
    for i in 0..5 {
        rig.customer_says("alpha", &format!("1555000100{i}"), &format!("again {i}"))
            .await;
    }
    rig.sim.wait_for_sends(10, WITHIN).await.unwrap();
    rig.counter_reaches(&router, "switchyard_router_from_me_total", "", 10.0)
        .await;
    let sends = rig.sends_for("alpha");
    let bodies = whatsapp_support::once_each(&sends);
    assert_eq!(sends.len(), 10, "{bodies:?}");
    assert!(
        bodies.iter().all(|b| !b.starts_with("echo: echo:")),
        "the bot answered its own echo: {bodies:?}"
    );
    sender.stop().await;
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_human_reply_from_the_phone_silences_the_bot_in_that_chat_only_for_that_tenant_only(
    pool: PgPool,
) {
    let rig = Rig::start(&pool, &["alpha", "bravo"]).await;
    let router = rig.router(&[]).await;
    let sender = rig.sender(&[]).await;
    let (taken, other) = ("15550002001", "15550002002");

    rig.human_answers("alpha", taken, "Hi, Anna from the shop here")
        .await;
    rig.counter_reaches(
        &router,
        "switchyard_router_from_me_total",
        "origin=\"human\"",
        1.0,
    )
    .await;

    rig.customer_says("alpha", taken, "thanks Anna").await;
    rig.customer_says("alpha", other, "hello bot").await;
    rig.customer_says("bravo", taken, "hello bravo").await;
    rig.counter_reaches(
        &router,
        "switchyard_router_dropped_total",
        "reason=\"silenced\"",
        1.0,
    )
    .await;
    rig.sim.wait_for_sends(2, WITHIN).await.unwrap();
    let alpha: Vec<String> = rig
        .sends_for("alpha")
        .iter()
        .map(|s| s.chat.clone())
        .collect();
    let bravo: Vec<String> = rig
        .sends_for("bravo")
        .iter()
        .map(|s| s.chat.clone())
        .collect();
    assert_eq!(
        alpha,
        vec![other.to_owned()],
        "alpha answers only the other chat"
    );
    assert_eq!(
        bravo,
        vec![taken.to_owned()],
        "bravo's chat with the same person is not silenced"
    );

    // The operator sees the takeover and ends it: the bot answers again.
    let nats_url = rig.nats.url();
    let vars = cli_support::vars(&rig.db_url, Some(&nats_url), None);
    let (exit, listed) = cli_support::run_json(&["takeover", "list", "alpha"], &vars).await;
    assert_eq!(exit, switchyard_cli::exit::Exit::Ok);
    let chats: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["chat_id"].as_str())
        .collect();
    assert_eq!(chats, vec![format!("{taken}@s.whatsapp.net")]);
    let (exit, _) = cli_support::run_json(
        &[
            "takeover",
            "clear",
            "alpha",
            &format!("{taken}@s.whatsapp.net"),
        ],
        &vars,
    )
    .await;
    assert_eq!(exit, switchyard_cli::exit::Exit::Ok);
    rig.customer_says("alpha", taken, "are you there, bot?")
        .await;
    poll::until("the bot to answer the released chat", WITHIN, || async {
        rig.sends_for("alpha")
            .iter()
            .any(|s| s.chat == taken)
            .then_some(())
    })
    .await;
    sender.stop().await;
    router.stop().await;
}
