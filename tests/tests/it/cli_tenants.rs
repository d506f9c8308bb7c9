//! `switchyard tenants`: changes land in the table, bad input changes
//! nothing (exit 2), secrets in a bot's configuration are never printed, and
//! a suspension reaches a running router through the announcement long
//! before its cache would expire.

use std::time::Duration;

use crate::cli_support::{add_tenant, run, run_json, t, vars};
use sqlx::PgPool;
use switchyard_cli::exit::Exit;
use switchyard_shared::{
    streams,
    tenants::{self, BotKind, TenantStatus},
};
use switchyard_tests::{nats_server::NatsServer, poll, services, traffic};

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_tenant_is_added_changed_and_shown_through_the_table(pool: PgPool) {
    let env = vars(&services::database_url(&pool), None, None);
    let (exit, added) = run_json(
        &["tenants", "add", "acme", "--name", "Acme", "--weight", "3"],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{added}");
    assert_eq!(added["limits"]["weight"], 3);
    let (exit, _) = run_json(
        &[
            "tenants",
            "set-limits",
            "acme",
            "--sends-per-minute",
            "30",
            "--burst",
            "5",
        ],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok);
    let config = r#"{"url":"https://bot.example/hook","signing_secret":"whsec_c2VjcmV0"}"#;
    let (exit, _) = run_json(
        &[
            "tenants", "set-bot", "acme", "--kind", "http", "--config", config,
        ],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok);
    let (exit, _) = run_json(&["tenants", "suspend", "acme"], &env).await;
    assert_eq!(exit, Exit::Ok);

    let row = tenants::fetch(&pool, &t("acme")).await.unwrap().unwrap();
    assert_eq!(row.status, TenantStatus::Suspended);
    assert_eq!(
        (
            row.limits.weight,
            row.limits.sends_per_minute,
            row.limits.send_burst,
            row.limits.max_in_flight
        ),
        (3, 30, 5, 4)
    );
    assert_eq!(row.bot_kind, BotKind::Http);

    let (_, shown) = run(&["tenants", "show", "acme"], &env).await;
    assert!(
        shown.contains("suspended") && shown.contains("https://bot.example/hook"),
        "{shown}"
    );
    assert!(
        !shown.contains("whsec_c2VjcmV0"),
        "a bot secret is never printed: {shown}"
    );
    let (_, listed) = run_json(&["tenants", "list"], &env).await;
    assert_eq!(listed[0]["bot_config"]["signing_secret"], "[redacted]");
    let (exit, _) = run_json(&["tenants", "resume", "acme"], &env).await;
    assert_eq!(exit, Exit::Ok);
    assert!(
        tenants::fetch(&pool, &t("acme"))
            .await
            .unwrap()
            .unwrap()
            .is_active()
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn bad_input_is_refused_with_exit_2_and_changes_nothing(pool: PgPool) {
    add_tenant(&pool, "acme", BotKind::Echo, serde_json::json!({})).await;
    let before = tenants::fetch(&pool, &t("acme")).await.unwrap();
    let env = vars(&services::database_url(&pool), None, None);
    for args in [
        &["tenants", "suspend", "nobody"][..],
        &["tenants", "show", "nobody"],
        &["tenants", "set-limits", "acme", "--weight", "0"],
        &[
            "tenants",
            "set-limits",
            "acme",
            "--weight",
            "5",
            "--max-in-flight",
            "1001",
        ],
        &["tenants", "set-limits", "acme"],
        &["tenants", "set-bot", "acme", "--kind", "http"],
        &[
            "tenants", "set-bot", "acme", "--kind", "rules", "--config", "[1]",
        ],
        &["tenants", "add", "acme"],
        &["tenants", "add", "other", "--sends-per-minute", "100001"],
    ] {
        let (exit, _) = run(args, &env).await;
        assert_eq!(exit, Exit::Usage, "{args:?}");
    }
    assert_eq!(
        tenants::fetch(&pool, &t("acme")).await.unwrap(),
        before,
        "nothing changed"
    );
    assert!(tenants::fetch(&pool, &t("other")).await.unwrap().is_none());
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_suspension_reaches_a_running_router_before_its_cache_would_expire(pool: PgPool) {
    let nats = NatsServer::start();
    add_tenant(&pool, "acme", BotKind::Echo, serde_json::json!({})).await;
    let db_url = services::database_url(&pool);
    // A ten-minute cache: only the announcement can make the change visible in time.
    let router = services::start_router(&services::env(
        &nats.url(),
        &db_url,
        &[("SWITCHYARD_TENANT_CACHE_TTL", "10m")],
    ))
    .await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    let send = |id: String| {
        let js = js.clone();
        async move {
            let body = traffic::message_body(Some("acme"), &id, "1@s.whatsapp.net", "hi");
            traffic::publish_inbound(&js, &t("acme"), &id, body).await;
        }
    };
    send("before".to_owned()).await;
    poll::until(
        "the reply before suspension",
        Duration::from_secs(20),
        || async {
            traffic::replies_by_tenant(&js)
                .await
                .get("acme")
                .map(|_| ())
        },
    )
    .await;

    let env = vars(&db_url, Some(&nats.url()), None);
    let (exit, _) = run_json(&["tenants", "suspend", "acme"], &env).await;
    assert_eq!(exit, Exit::Ok);
    // The announcement is asynchronous: keep sending until the router drops one.
    let mut n = 0;
    poll::until(
        "an event dropped as inactive",
        Duration::from_secs(5),
        || {
            n += 1;
            let send = send(format!("after-{n}"));
            async move {
                send.await;
                let dropped = traffic::metric(
                    router.ops_addr,
                    "switchyard_router_dropped_total",
                    "inactive_tenant",
                )
                .await;
                (dropped >= 1.0).then_some(())
            }
        },
    )
    .await;
    router.stop().await;
}
