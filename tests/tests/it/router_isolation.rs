//! The router keeps tenants apart: replies land only on the event's own
//! tenant, unknown and suspended tenants are dropped and counted, foreign menu
//! ids are refused, redelivery adds no reply, and row-level security holds
//! even for a query that forgets its tenant filter.

use std::time::Duration;

use sqlx::PgPool;
use switchyard_shared::{
    db,
    ids::TenantId,
    streams,
    subjects::{self, Direction},
    tenants::{self, BotKind, TenantStatus},
};
use switchyard_tests::{fixtures, nats_server::NatsServer, poll, services, traffic};

fn t(raw: &str) -> TenantId {
    fixtures::tenant(raw)
}

async fn add_tenant(pool: &PgPool, id: &str, bot: BotKind, config: serde_json::Value) {
    fixtures::add_tenant(pool, id, |new| {
        new.bot_kind = bot;
        new.bot_config = config;
    })
    .await;
}

async fn replies_for(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    n: usize,
) -> Vec<switchyard_shared::replies::OutboundReply> {
    poll::until(
        &format!("{n} replies for {tenant}"),
        Duration::from_secs(20),
        || async {
            let all = traffic::replies_by_tenant(js).await;
            let got = all.get(tenant).cloned().unwrap_or_default();
            (got.len() >= n).then_some(got)
        },
    )
    .await
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_message_for_tenant_a_never_produces_anything_for_tenant_b(pool: PgPool) {
    let nats = NatsServer::start();
    add_tenant(&pool, "alpha", BotKind::Echo, serde_json::json!({})).await;
    add_tenant(&pool, "bravo", BotKind::Echo, serde_json::json!({})).await;
    let env = services::env(&nats.url(), &services::database_url(&pool), &[]);
    let router = services::start_router(&env).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );

    for i in 0..20 {
        let body = traffic::message_body(
            Some("alpha"),
            &format!("m{i}"),
            "111@s.whatsapp.net",
            &format!("hi {i}"),
        );
        traffic::publish_inbound(&js, &t("alpha"), &format!("m{i}"), body).await;
    }
    // A payload that claims another tenant on alpha's subject: dead-lettered, never sent as bravo.
    let forged = traffic::message_body(Some("bravo"), "forged", "222@s.whatsapp.net", "hi");
    traffic::publish_inbound(&js, &t("alpha"), "forged", forged).await;

    let replies = replies_for(&js, "alpha", 20).await;
    assert!(
        replies
            .iter()
            .all(|r| r.tenant == t("alpha") && r.chat_id == "111@s.whatsapp.net")
    );
    let dlq = traffic::wait_dead_letters(&js, Direction::Inbound, Duration::from_secs(10)).await;
    assert_eq!(
        dlq,
        vec![("alpha".to_owned(), "tenant_mismatch".to_owned(), 1)]
    );
    let all = traffic::replies_by_tenant(&js).await;
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        vec!["alpha"],
        "nothing may reach outbound.bravo"
    );
    assert_eq!(all["alpha"].len(), 20);
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_event_id_naming_another_tenant_is_dead_lettered_and_answers_nothing(pool: PgPool) {
    // Reply ids derive from the event id: one scoped to bravo on alpha's
    // subject would make alpha's replies collide with bravo's.
    let nats = NatsServer::start();
    add_tenant(&pool, "alpha", BotKind::Echo, serde_json::json!({})).await;
    add_tenant(&pool, "bravo", BotKind::Echo, serde_json::json!({})).await;
    let env = services::env(&nats.url(), &services::database_url(&pool), &[]);
    let router = services::start_router(&env).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    let body = traffic::message_body(Some("alpha"), "m1", "1@s.whatsapp.net", "hi");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "alpha:m1");
    headers.insert(switchyard_shared::events::HEADER_EVENT_ID, "bravo:m1");

    js.publish_with_headers("inbound.alpha", headers, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let fence = traffic::message_body(Some("alpha"), "fence", "1@s.whatsapp.net", "fence");
    traffic::publish_inbound(&js, &t("alpha"), "fence", fence).await;

    let replies = replies_for(&js, "alpha", 1).await;
    let dlq = traffic::wait_dead_letters(&js, Direction::Inbound, Duration::from_secs(10)).await;
    assert_eq!(
        dlq,
        vec![("alpha".to_owned(), "malformed_event".to_owned(), 1)]
    );
    let letters = traffic::read_stream(&js, subjects::DLQ_STREAM, ">").await;
    let last_error = letters[0]
        .1
        .get(switchyard_shared::lanes::dead_letter::HEADER_LAST_ERROR)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    assert!(
        last_error.contains(r#"names tenant "bravo""#),
        "{last_error}"
    );
    let bodies: Vec<&str> = replies.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, ["echo: fence"]);
    assert!(!traffic::replies_by_tenant(&js).await.contains_key("bravo"));
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn unknown_and_suspended_tenants_are_dropped_and_counted(pool: PgPool) {
    let nats = NatsServer::start();
    add_tenant(&pool, "alpha", BotKind::Echo, serde_json::json!({})).await;
    add_tenant(&pool, "sleepy", BotKind::Echo, serde_json::json!({})).await;
    tenants::set_status(&pool, &t("sleepy"), TenantStatus::Suspended)
        .await
        .unwrap();
    let env = services::env(&nats.url(), &services::database_url(&pool), &[]);
    let router = services::start_router(&env).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );

    for tenant in ["ghost", "sleepy"] {
        let body = traffic::message_body(Some(tenant), "m1", "1@s.whatsapp.net", "hello");
        traffic::publish_inbound(&js, &t(tenant), "m1", body).await;
    }
    poll::until(
        "both drops to be counted",
        Duration::from_secs(20),
        || async {
            let unknown = traffic::metric(
                router.ops_addr,
                "switchyard_router_dropped_total",
                "reason=\"unknown_tenant\"",
            )
            .await;
            let inactive = traffic::metric(
                router.ops_addr,
                "switchyard_router_dropped_total",
                "reason=\"inactive_tenant\"",
            )
            .await;
            (unknown >= 1.0 && inactive >= 1.0).then_some(())
        },
    )
    .await;
    // A later message of an active tenant goes through: nothing was routed to a default.
    let body = traffic::message_body(Some("alpha"), "m2", "1@s.whatsapp.net", "hello");
    traffic::publish_inbound(&js, &t("alpha"), "m2", body).await;
    replies_for(&js, "alpha", 1).await;
    let all = traffic::replies_by_tenant(&js).await;
    assert_eq!(all.keys().collect::<Vec<_>>(), vec!["alpha"]);
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_menu_id_of_another_tenant_is_refused(pool: PgPool) {
    let nats = NatsServer::start();
    let menu = |prefix: &str| {
        serde_json::json!({
            "menu": {"title": "Menu", "options": [
                {"id": format!("sel:{prefix}-hours"), "title": "Hours", "reply": format!("{prefix} opens at 9")}
            ]}
        })
    };
    add_tenant(&pool, "alpha", BotKind::Rules, menu("alpha")).await;
    add_tenant(&pool, "bravo", BotKind::Rules, menu("bravo")).await;
    let env = services::env(&nats.url(), &services::database_url(&pool), &[]);
    let router = services::start_router(&env).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );

    let chat = "5@s.whatsapp.net";
    let steps = [
        ("m1", "sel:bravo-hours"),
        ("m2", "sel:alpha-hours"),
        ("m3", "hello"),
        ("m4", "1"),
    ];
    for (i, (id, text)) in steps.iter().enumerate() {
        traffic::publish_inbound(
            &js,
            &t("alpha"),
            id,
            traffic::message_body(Some("alpha"), id, chat, text),
        )
        .await;
        replies_for(&js, "alpha", i + 1).await;
    }
    let replies = replies_for(&js, "alpha", 4).await;
    let bodies: Vec<&str> = replies.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(
        bodies,
        vec![
            "Sorry, that option is not available.",
            "alpha opens at 9",
            "Menu\n1. Hours",
            "alpha opens at 9"
        ]
    );
    assert!(!traffic::replies_by_tenant(&js).await.contains_key("bravo"));
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_redelivered_inbound_event_yields_no_second_reply(pool: PgPool) {
    let nats = NatsServer::start();
    add_tenant(&pool, "alpha", BotKind::Echo, serde_json::json!({})).await;
    let env = services::env(&nats.url(), &services::database_url(&pool), &[]);
    let router = services::start_router(&env).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = streams::context(client, Duration::from_secs(5));

    // The same event stored twice on the inbound stream (as after a publish
    // retried past the duplicate window): both copies are processed.
    let body = traffic::message_body(Some("alpha"), "dup", "1@s.whatsapp.net", "once");
    for copy in 0..2 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("copy-{copy}").as_str(),
        );
        headers.insert(switchyard_shared::events::HEADER_EVENT_ID, "alpha:dup");
        js.publish_with_headers("inbound.alpha", headers, body.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let marker = traffic::message_body(Some("alpha"), "after", "1@s.whatsapp.net", "marker");
    traffic::publish_inbound(&js, &t("alpha"), "after", marker).await;
    let replies = replies_for(&js, "alpha", 2).await;
    poll::until("both copies acked", Duration::from_secs(10), || async {
        let mut stream = js.get_stream("INBOUND").await.ok()?;
        let info = stream.info().await.ok()?;
        (info.state.messages == 3).then_some(())
    })
    .await;
    let bodies: Vec<&str> = replies.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, vec!["echo: once", "echo: marker"]);
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_query_that_forgets_its_tenant_filter_still_sees_only_its_tenant(pool: PgPool) {
    add_tenant(&pool, "alpha", BotKind::Echo, serde_json::json!({})).await;
    add_tenant(&pool, "bravo", BotKind::Echo, serde_json::json!({})).await;
    sqlx::query("INSERT INTO conversations (tenant_id, chat_id) VALUES ('alpha', 'a1'), ('bravo', 'b1'), ('bravo', 'b2')")
        .execute(&pool)
        .await
        .unwrap();
    let settings = switchyard_shared::config::DatabaseSettings::from_env(
        &switchyard_shared::config::Env::from_map([(
            "DATABASE_URL",
            services::database_url(&pool),
        )]),
    )
    .unwrap();
    let app = db::pool_with_role(&settings, db::APP_ROLE, "switchyard-test-app").unwrap();

    let mut tx = db::begin_for_tenant(&app, &t("alpha")).await.unwrap();
    let chats: Vec<String> =
        sqlx::query_scalar("SELECT chat_id FROM conversations ORDER BY chat_id")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    let tenant_rows: Vec<String> = sqlx::query_scalar("SELECT id FROM tenants")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let foreign_insert =
        sqlx::query("INSERT INTO conversations (tenant_id, chat_id) VALUES ('bravo', 'x')")
            .execute(&mut *tx)
            .await;
    assert_eq!(chats, vec!["a1"]);
    assert_eq!(tenant_rows, vec!["alpha"]);
    assert!(
        foreign_insert.is_err(),
        "writing another tenant's row must be refused"
    );
    drop(tx);

    // Outside any tenant scope the app role sees nothing at all.
    let unscoped: i64 = sqlx::query_scalar("SELECT count(*) FROM conversations")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(unscoped, 0);
}
