//! The seeds' rules, one at a time, through the whole pipeline (ingest over
//! HTTP → JetStream → router → sender → bridge simulator): a message tagged
//! for one tenant never reaches another tenant's bridge, an unknown
//! `customer_ref` is dropped and counted instead of routed to a default, an
//! invalid one is refused at the door, and duplicates and echoes are never
//! answered.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use switchyard_bridge_sim::events::TextMessage;
use switchyard_tests::{
    pipeline::{Pipeline, TenantSpec},
    traffic,
};

const WITHIN: Duration = Duration::from_secs(30);

async fn two_echo_tenants(pool: &PgPool) -> Pipeline {
    Pipeline::start(
        pool,
        &[TenantSpec::echo("alpha"), TenantSpec::echo("bravo")],
    )
    .await
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_message_tagged_for_tenant_a_never_triggers_a_send_on_tenant_bs_bridge(pool: PgPool) {
    let p = two_echo_tenants(&pool).await;

    // Tagged alpha, posted by bravo's bridge: refused, nothing published.
    let mut tagged = TextMessage::new("15550000001", "for alpha, via bravo").to_json();
    tagged["customer_ref"] = json!("alpha");
    assert_eq!(p.post("bravo", tagged.clone()).await, Some(400));
    // The same, straight at ingest with bravo's URL: refused too.
    let raw = p
        .post_raw("bravo", &p.token_for("bravo"), tagged.to_string())
        .await;
    assert_eq!(raw, 400);
    // Alpha's URL with bravo's token: not authenticated.
    let stolen = p
        .post_raw("alpha", &p.token_for("bravo"), tagged.to_string())
        .await;
    assert_eq!(stolen, 401);
    // The legitimate delivery on alpha's own bridge is answered there.
    assert_eq!(p.post("alpha", tagged).await, Some(200));

    let sends = p.sim.wait_for_sends(1, WITHIN).await.unwrap();
    p.settled(WITHIN).await;
    let sends_after = p.sends();
    assert_eq!(sends_after, sends, "nothing more arrived after settling");
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].customer_ref, "alpha");
    assert_eq!(sends[0].body, "echo: for alpha, via bravo");
    assert!(p.sim.sends_for("bravo").is_empty());
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_unknown_customer_ref_is_dropped_and_counted_and_never_routed_to_a_default(
    pool: PgPool,
) {
    let p = two_echo_tenants(&pool).await;
    let dropped = || {
        traffic::metric(
            p.router.ops_addr,
            "switchyard_router_dropped_total",
            "reason=\"unknown_tenant\"",
        )
    };
    let before = dropped().await;

    // A valid id with a valid token, but no tenant row: 200, as the provider expects.
    let mut ghost = TextMessage::new("15550000002", "who am I").to_json();
    ghost["customer_ref"] = json!("ghost");
    let status = p
        .post_raw("ghost", &p.token_for("ghost"), ghost.to_string())
        .await;
    assert_eq!(status, 200);

    switchyard_tests::poll::until("the drop to be counted", WITHIN, || async {
        (dropped().await > before).then_some(())
    })
    .await;
    // A later message of a real tenant still goes to that tenant only.
    let hello = TextMessage::new("15550000003", "still here").to_json();
    assert_eq!(p.post("bravo", hello).await, Some(200));
    p.sim.wait_for_sends(1, WITHIN).await.unwrap();
    p.settled(WITHIN).await;
    let sends = p.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].customer_ref, "bravo");
    assert_eq!(sends[0].chat, "15550000003");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_invalid_customer_ref_is_refused_at_the_door_and_sends_nothing(pool: PgPool) {
    let p = two_echo_tenants(&pool).await;
    let body = TextMessage::new("15550000004", "hi").to_json().to_string();
    for invalid in [
        "Alpha",
        "alpha.bravo",
        "*",
        ">",
        "$SYS",
        "a%20b",
        "alpha%2Ebravo",
    ] {
        let status = p
            .post_raw(invalid, &p.token_for("alpha"), body.clone())
            .await;
        assert_eq!(status, 401, "{invalid}");
    }
    // A marker message proves the pipeline ran while the refused ones came in.
    let marker = TextMessage::new("15550000005", "marker").to_json();
    assert_eq!(p.post("alpha", marker).await, Some(200));
    p.sim.wait_for_sends(1, WITHIN).await.unwrap();
    p.settled(WITHIN).await;
    let sends = p.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].chat, "15550000005");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_replayed_event_is_answered_once_and_a_from_me_echo_never(pool: PgPool) {
    let p = two_echo_tenants(&pool).await;
    let once = TextMessage::new("15550000006", "just once").to_json();
    for _ in 0..3 {
        assert_eq!(p.post("alpha", once.clone()).await, Some(200));
    }
    let mut echo = TextMessage::new("15550000007", "our own send").to_json();
    echo["from_me"] = json!(true);
    assert_eq!(p.post("alpha", echo).await, Some(200));

    p.sim.wait_for_sends(1, WITHIN).await.unwrap();
    p.settled(WITHIN).await;
    let sends = p.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(
        (sends[0].chat.as_str(), sends[0].body.as_str()),
        ("15550000006", "echo: just once")
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_menu_id_forged_from_another_tenant_gets_only_the_refusal_on_the_forgers_bridge(
    pool: PgPool,
) {
    let menu = |tenant: &str| {
        json!({"menu": {"title": "Menu", "options": [
            {"id": format!("sel:{tenant}-secret"), "title": "Secret", "reply": format!("{tenant} secret answer")}
        ]}})
    };
    let p = Pipeline::start(
        &pool,
        &[
            TenantSpec::rules("alpha", menu("alpha")),
            TenantSpec::rules("bravo", menu("bravo")),
        ],
    )
    .await;
    let forged = TextMessage::new("15550000008", "sel:bravo-secret").to_json();
    assert_eq!(p.post("alpha", forged).await, Some(200));
    p.sim.wait_for_sends(1, WITHIN).await.unwrap();
    p.settled(WITHIN).await;
    let sends = p.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].customer_ref, "alpha");
    assert_eq!(sends[0].body, "Sorry, that option is not available.");
}
