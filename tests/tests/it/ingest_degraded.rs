//! Ingest when a dependency fails: PostgreSQL down or slow never costs an
//! event (ingest publishes anyway and says so); JetStream down is answered 503
//! at once, and nothing is kept that was refused.

use std::time::{Duration, Instant};

use crate::ingest_support::{Harness, message};
use futures::future::join_all;
use reqwest::StatusCode;
use sqlx::{PgPool, postgres::PgPoolOptions};
use switchyard_tests::{nats_server::free_port, poll, tcp_proxy::TcpProxy, traffic};

/// A pool over the test database that reaches PostgreSQL through `proxy`, so
/// cutting the proxy takes the database away from whoever uses the pool (and
/// from every connection opened with its options, as ingest's key writers are).
async fn pool_through(proxy: &TcpProxy, db: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(
            (*db.connect_options())
                .clone()
                .host("127.0.0.1")
                .port(proxy.port()),
        )
        .await
        .expect("pool through the proxy")
}

/// The address of the test's PostgreSQL server.
async fn postgres_addr(db: &PgPool) -> std::net::SocketAddr {
    let options = db.connect_options();
    tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .expect("resolve the PostgreSQL host")
        .next()
        .expect("PostgreSQL over TCP (DATABASE_URL with a host and port)")
}

fn stored_ids(messages: &[async_nats::jetstream::message::StreamMessage]) -> Vec<String> {
    let mut ids: Vec<String> = messages
        .iter()
        .filter_map(|m| m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()))
        .collect();
    ids.sort();
    ids
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn losing_the_database_mid_test_loses_no_accepted_event(db: PgPool) {
    let proxy = TcpProxy::start(postgres_addr(&db).await).await;
    let ingest_pool = pool_through(&proxy, &db).await;
    let h = Harness::start_with(
        ingest_pool.clone(),
        &[("SWITCHYARD_DB_CLAIM_TIMEOUT", "300ms")],
    )
    .await;
    let ids: Vec<String> = (0..40).map(|i| format!("PG-{i:02}")).collect();

    let before = join_all(ids[..20].iter().map(|id| h.post("acme", message(id)))).await;
    // PostgreSQL is gone for ingest from here on: its open connections are
    // closed under it (a statement may be in flight) and new ones refused.
    proxy.cut();
    let after = join_all(ids[20..].iter().map(|id| h.post("acme", message(id)))).await;
    // Redeliveries while the database is away: JetStream's window still deduplicates.
    let again = join_all(ids[..5].iter().map(|id| h.post("acme", message(id)))).await;

    for (status, text) in before.iter().chain(&after).chain(&again) {
        assert_eq!(*status, StatusCode::OK, "{text}");
    }
    let stored = h.inbound_messages().await;
    let expected: Vec<String> = ids.iter().map(|id| format!("acme:{id}")).collect();
    assert_eq!(stored_ids(&stored), expected, "every accepted event, once");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM inbound_event_keys")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(keys, 20, "only the events before the outage have keys");
    let degraded = switchyard_shared::ops_server::metrics_handle().render();
    assert!(
        degraded.contains("switchyard_ingest_db_degraded_total"),
        "the outage shows in metrics"
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_unreachable_database_still_accepts_events_within_the_bound(db: PgPool) {
    drop(db);
    let nowhere = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(&format!(
            "postgres://postgres@127.0.0.1:{}/nowhere",
            free_port()
        ))
        .unwrap();
    let h = Harness::start_with(nowhere, &[("SWITCHYARD_DB_CLAIM_TIMEOUT", "200ms")]).await;

    let started = Instant::now();
    let answers = join_all((0..10).map(|i| h.post("acme", message(&format!("DOWN-{i}"))))).await;
    let elapsed = started.elapsed();

    for (status, text) in &answers {
        assert_eq!(*status, StatusCode::OK, "{text}");
    }
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(h.inbound_count().await, 10);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_database_slower_than_the_bound_does_not_hold_events_back(db: PgPool) {
    let h = Harness::start_with(db.clone(), &[("SWITCHYARD_DB_CLAIM_TIMEOUT", "300ms")]).await;
    // Another session holds the keys table: every claim blocks behind it.
    let mut blocker = db.begin().await.unwrap();
    sqlx::query("LOCK TABLE inbound_event_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();

    let started = Instant::now();
    let (status, text) = h.post("acme", message("SLOW-1")).await;
    let elapsed = started.elapsed();

    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(h.inbound_count().await, 1);
    blocker.rollback().await.unwrap();
    // Once the lock is gone the claim written late still lands, and is marked.
    Harness::until_published(&db, "acme", "SLOW-1", Duration::from_secs(10)).await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn jetstream_unavailable_is_answered_503_quickly_and_nothing_is_kept(db: PgPool) {
    // With the outbox off (with it, see ingest_outbox.rs: 200, published later).
    let mut h = Harness::start_with(
        db.clone(),
        &[
            ("SWITCHYARD_PUBLISH_TIMEOUT", "1s"),
            ("SWITCHYARD_OUTBOX_MAX_EVENTS", "0"),
        ],
    )
    .await;
    let (ok, _) = h.post("acme", message("BEFORE-1")).await;
    assert_eq!(ok, StatusCode::OK);

    h.nats.kill();
    let started = Instant::now();
    let (status, text) = h.post("acme", message("DURING-1")).await;
    let elapsed = started.elapsed();

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");

    // Back up: ingest recovers by itself, and the refused event was not kept.
    h.nats.restart();
    poll::until(
        "ingest to accept again",
        Duration::from_secs(15),
        || async {
            let (status, _) = h.post("acme", message("AFTER-1")).await;
            (status == StatusCode::OK).then_some(())
        },
    )
    .await;
    let stored = stored_ids(&h.inbound_messages().await);
    assert_eq!(
        stored,
        vec!["acme:AFTER-1".to_owned(), "acme:BEFORE-1".to_owned()]
    );
    let rendered = switchyard_shared::ops_server::metrics_handle().render();
    assert!(rendered.contains(r#"switchyard_ingest_rejected_total{reason="unavailable"}"#));
}

/// Claims skipped so far because PostgreSQL was down, slow or saturated.
fn degraded_claims() -> f64 {
    traffic::metric_sum(
        &switchyard_shared::ops_server::metrics_handle().render(),
        switchyard_ingest::metrics::DEGRADED,
        "",
    )
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn key_writers_whose_connections_are_killed_reconnect_and_claim_again(db: PgPool) {
    let h = Harness::start(db.clone()).await;
    let (status, text) = h.post("acme", message("BEFORE-KILL")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    Harness::until_published(&db, "acme", "BEFORE-KILL", Duration::from_secs(10)).await;

    // PostgreSQL ends the writers' sessions, as a restart or an operator would.
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'switchyard-ingest-keys'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert!(
        !killed.is_empty() && killed.iter().all(|k| *k),
        "the key writers had sessions of their own to kill: {killed:?}"
    );

    // Every event is accepted meanwhile. The next claim meets a dead session
    // and is skipped (published without a claim, counted)...
    let mut posted = 1;
    let post_next = |posted: &mut usize| {
        *posted += 1;
        let id = format!("AFTER-KILL-{posted}");
        let h = &h;
        async move {
            let degraded_before = degraded_claims();
            let (status, text) = h.post("acme", message(&id)).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            (id, degraded_claims() > degraded_before)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !post_next(&mut posted).await.1 {
        assert!(
            Instant::now() < deadline,
            "no claim ever met a killed session"
        );
    }
    // ...then every writer opens a new session and claims go through again.
    let deadline = Instant::now() + Duration::from_secs(15);
    let reclaimed = loop {
        let (id, degraded) = post_next(&mut posted).await;
        let sessions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'switchyard-ingest-keys'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if !degraded && sessions == 3 {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "writers did not reconnect: {sessions} sessions, last claim degraded: {degraded}"
        );
    };
    assert!(
        Harness::key_state(&db, "acme", &reclaimed).await.is_some(),
        "the reconnected writer stored the key of {reclaimed}"
    );
    assert_eq!(
        h.inbound_messages().await.len(),
        posted,
        "every accepted event stored once"
    );
}

/// `/readyz` of the service whose ops endpoint is at `ops`: its status and
/// its checks.
async fn readyz(ops: std::net::SocketAddr) -> Option<(StatusCode, serde_json::Value)> {
    let response = reqwest::get(format!("http://{ops}/readyz")).await.ok()?;
    let status = response.status();
    Some((status, response.json().await.ok()?))
}

/// With PostgreSQL gone ingest still answers webhooks (above), so it must
/// stay ready: an orchestrator that took every ingest replica out of its
/// load balancer during a database outage would turn the webhooks away,
/// and WA Bridges never retries one. A router, which cannot work without
/// the database, goes unready.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn ingest_stays_ready_while_the_database_is_gone_and_a_router_does_not(db: PgPool) {
    let proxy = TcpProxy::start(postgres_addr(&db).await).await;
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&db)
        .await
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port());
    let nats = switchyard_tests::nats_server::NatsServer::start();
    let env = switchyard_tests::services::env(
        &nats.url(),
        &url,
        &[
            ("SWITCHYARD_WEBHOOK_SECRET", "readiness-test-secret"),
            ("SWITCHYARD_HTTP_ADDR", "127.0.0.1:0"),
        ],
    );
    let (ingest, _) = switchyard_tests::services::start_ingest(&env).await;
    let router = switchyard_tests::services::start_router(&env).await;
    for (what, ops) in [("ingest", ingest.ops_addr), ("router", router.ops_addr)] {
        poll::until(
            &format!("{what} ready"),
            Duration::from_secs(15),
            || async { (readyz(ops).await?.0 == StatusCode::OK).then_some(()) },
        )
        .await;
    }
    proxy.cut();
    let seen_gone = |ops| async move {
        poll::until(
            "the probe to see PostgreSQL gone",
            Duration::from_secs(15),
            || async {
                let (status, checks) = readyz(ops).await?;
                (checks["postgres"] == false).then_some((status, checks))
            },
        )
        .await
    };
    let (status, checks) = seen_gone(ingest.ops_addr).await;
    assert_eq!(status, StatusCode::OK, "ingest: {checks}");
    let (status, checks) = seen_gone(router.ops_addr).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "router: {checks}");
}
