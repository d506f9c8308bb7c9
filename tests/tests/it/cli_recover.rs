//! `switchyard recover`: re-runs a tenant's events from the inbound event log
//! after its bot is fixed, without a dead letter, without touching other
//! tenants, and a second recovery sends nothing twice; it keeps to its rate.

use std::time::Duration;

use crate::cli_support::{add_tenant, failing_bot, run_json, t, vars};
use sqlx::PgPool;
use switchyard_cli::exit::Exit;
use switchyard_shared::{
    streams,
    subjects::{self, Direction},
    tenants::BotKind,
};
use switchyard_tests::{nats_server::NatsServer, poll, services, traffic};

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn recover_reruns_a_tenants_events_once_after_its_bot_is_fixed_and_leaves_others_alone(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let bot = failing_bot().await;
    add_tenant(
        &pool,
        "alpha",
        BotKind::Http,
        serde_json::json!({"url": bot, "timeout_ms": 500}),
    )
    .await;
    add_tenant(&pool, "bravo", BotKind::Echo, serde_json::json!({})).await;
    let db_url = services::database_url(&pool);
    let router = services::start_router(&services::env(
        &nats.url(),
        &db_url,
        &[
            ("SWITCHYARD_MAX_DELIVERIES", "2"),
            ("SWITCHYARD_RETRY_DELAY", "10ms"),
            ("SWITCHYARD_TENANT_CACHE_TTL", "1ms"),
        ],
    ))
    .await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    for tenant in ["alpha", "bravo"] {
        for i in 0..2 {
            let id = format!("{tenant}-{i}");
            let body = traffic::message_body(Some(tenant), &id, "1@s.whatsapp.net", "hi");
            traffic::publish_inbound(&js, &t(tenant), &id, body).await;
        }
    }
    poll::until(
        "alpha dead-lettered, bravo answered",
        Duration::from_secs(30),
        || async {
            let dead = traffic::dead_letters(&js, Direction::Inbound).await.len();
            let replies = traffic::replies_in_both_lanes(&js).await;
            (dead == 2 && replies.get("bravo").map(Vec::len) == Some(2)).then_some(())
        },
    )
    .await;
    // Fixed, and the dead letters are gone (purged): recovery needs only the event log.
    sqlx::query("UPDATE tenants SET bot_kind = 'echo', bot_config = '{}' WHERE id = 'alpha'")
        .execute(&pool)
        .await
        .unwrap();
    let env = vars(&db_url, Some(&nats.url()), None);
    let (exit, _) = run_json(&["dlq", "purge", "--tenant", "alpha", "--yes"], &env).await;
    assert_eq!(exit, Exit::Ok);
    let since_arg = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();

    let (exit, dry) = run_json(
        &[
            "recover",
            "--tenant",
            "alpha",
            "--since",
            &since_arg,
            "--dry-run",
        ],
        &env,
    )
    .await;
    assert_eq!(
        (exit, dry["events"].clone(), dry["republished"].clone()),
        (Exit::Ok, 2.into(), 0.into())
    );
    let (exit, first) = run_json(
        &["recover", "--tenant", "alpha", "--since", &since_arg],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{first}");
    assert_eq!(first["republished"], 2);
    let replies = poll::until("alpha's replies", Duration::from_secs(20), || async {
        traffic::replies_in_both_lanes(&js)
            .await
            .get("alpha")
            .filter(|r| r.len() >= 2)
            .cloned()
    })
    .await;

    let (exit, second) = run_json(
        &["recover", "--tenant", "alpha", "--since", &since_arg],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok);
    assert_eq!(
        second["events"], 2,
        "the first run's copies are not events of their own"
    );
    assert_eq!(second["skipped_reruns"], 2);
    assert_eq!(second["republished"], 0, "{second}");

    let mut events: Vec<String> = replies.iter().map(|r| r.event_id.to_string()).collect();
    events.sort();
    assert_eq!(events, ["alpha:alpha-0", "alpha:alpha-1"]);
    let all = traffic::replies_in_both_lanes(&js).await;
    assert_eq!(
        all.get("alpha").map(Vec::len),
        Some(2),
        "one reply per event"
    );
    assert_eq!(
        all.get("bravo").map(Vec::len),
        Some(2),
        "bravo answered once, not re-run"
    );
    let bravo_log = traffic::read_stream(&js, subjects::INBOUND_STREAM, "inbound.*.bravo").await;
    assert_eq!(bravo_log.len(), 2, "nothing republished for bravo");
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn recover_keeps_to_its_rate_so_a_large_recovery_does_not_land_at_once(pool: PgPool) {
    let nats = NatsServer::start();
    let db_url = services::database_url(&pool);
    let (_client, js) = switchyard_tests::fixtures::jetstream_with_streams(&nats.url(), 4).await;
    let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    for i in 0..20 {
        let id = format!("alpha-{i}");
        let body = traffic::message_body(Some("alpha"), &id, "1@s.whatsapp.net", "hi");
        traffic::publish_inbound(&js, &t("alpha"), &id, body).await;
    }
    let since_arg = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let env = vars(&db_url, Some(&nats.url()), None);
    let (exit, report) = run_json(
        &[
            "recover", "--tenant", "alpha", "--since", &since_arg, "--rate", "10", "--batch", "5",
        ],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{report}");
    assert_eq!(report["republished"], 20);

    // The copies' stored times: four batches of five, 0.5 s apart at 10/s.
    let copies = stored_times_of_recovered_copies(&js).await;
    assert_eq!(copies.len(), 20);
    let spread = *copies.iter().max().unwrap() - *copies.iter().min().unwrap();
    assert!(
        spread >= time::Duration::milliseconds(1450),
        "20 events at 10/s in batches of 5 must span at least 1.5 s, spanned {spread}"
    );
}

/// When each recovered copy in `INBOUND` was stored.
async fn stored_times_of_recovered_copies(
    js: &async_nats::jetstream::Context,
) -> Vec<time::OffsetDateTime> {
    use futures::StreamExt as _;
    let stream = js.get_stream(subjects::INBOUND_STREAM).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "inbound.>".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.cached_info().num_pending as usize;
    let mut messages = consumer.messages().await.unwrap();
    let mut times = Vec::new();
    for _ in 0..pending {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a stored message")
            .unwrap()
            .unwrap();
        let recovered = message
            .headers
            .as_ref()
            .is_some_and(|h| h.get(switchyard_cli::recover::HEADER_RECOVER_OF).is_some());
        if recovered {
            times.push(message.info().unwrap().published);
        }
    }
    times
}
