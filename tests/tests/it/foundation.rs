//! The foundation against real servers: TLS with the single rustls provider,
//! streams created idempotently with their limits and partition transform,
//! a 3-node cluster with R3 streams, and the tenants schema.

use std::time::Duration;

use sqlx::PgPool;
use switchyard_shared::{
    config::{Env, NatsSettings},
    ids::TenantId,
    nats, streams, subjects,
    tenants::{self, NewTenant},
};
use switchyard_tests::{
    nats_server::{NatsCluster, NatsServer},
    poll,
};

fn settings(url: &str, extra: &[(&str, &str)]) -> NatsSettings {
    let mut vars = vec![("NATS_URL".to_owned(), url.to_owned())];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    NatsSettings::from_env(&Env::from_map(vars)).unwrap()
}

#[tokio::test]
async fn connects_to_a_tls_nats_server_with_the_one_crypto_provider() {
    let (server, tls) = NatsServer::start_tls();
    let ca = tls.ca.display().to_string();
    let settings = settings(&server.url(), &[("SWITCHYARD_NATS_CA_FILE", &ca)]);
    let client = nats::connect(&settings, "tls-test")
        .await
        .expect("TLS connect");
    let js = streams::context(client.clone(), Duration::from_secs(5));
    streams::ensure_streams(&js, &settings)
        .await
        .expect("streams over TLS");
    client.publish("tls.check", "ok".into()).await.unwrap();
    client.flush().await.unwrap();
}

#[tokio::test]
async fn a_tls_server_is_refused_without_its_certificate_trusted() {
    let (server, _tls) = NatsServer::start_tls();
    let settings = settings(&server.url(), &[]);
    let err = nats::connect(&settings, "tls-test").await.unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn streams_are_created_idempotently_with_explicit_limits_and_partitions() {
    let server = NatsServer::start();
    let settings = settings(
        &server.url(),
        &[
            ("SWITCHYARD_PARTITIONS", "8"),
            ("SWITCHYARD_STREAM_MAX_AGE", "3days"),
        ],
    );
    let client = nats::connect(&settings, "streams-test").await.unwrap();
    let js = streams::context(client, Duration::from_secs(5));
    streams::ensure_streams(&js, &settings).await.unwrap();
    streams::ensure_streams(&js, &settings)
        .await
        .expect("a second run changes nothing and succeeds");

    let mut inbound = js.get_stream(subjects::INBOUND_STREAM).await.unwrap();
    let config = inbound.info().await.unwrap().config.clone();
    assert_eq!(config.max_age, Duration::from_secs(3 * 86_400));
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert_eq!(config.max_consumers, 4096);
    assert_eq!(
        config.subject_transform.map(|t| t.destination),
        Some("inbound.{{partition(8,1)}}.{{wildcard(1)}}".to_owned())
    );

    let acme = TenantId::parse("acme").unwrap();
    js.publish(subjects::inbound(&acme), "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let stored = inbound
        .get_last_raw_message_by_subject("inbound.*.acme")
        .await
        .unwrap();
    let partition: u16 = stored.subject.split('.').nth(1).unwrap().parse().unwrap();
    assert!(partition < 8, "stored as {}", stored.subject);

    // A subject with an extra token matches no stream: the publish is refused.
    let extra_token = js.publish("inbound.acme.extra", "x".into()).await;
    let refused = match extra_token {
        Err(_) => true,
        Ok(ack) => ack.await.is_err(),
    };
    assert!(refused);
}

#[tokio::test]
async fn a_three_node_cluster_carries_replicated_streams() {
    let cluster = NatsCluster::start();
    let settings = settings(&cluster.urls(), &[("SWITCHYARD_STREAM_REPLICAS", "3")]);
    let client = nats::connect(&settings, "cluster-test").await.unwrap();
    let js = streams::context(client, Duration::from_secs(10));
    // The cluster elects its JetStream meta leader shortly after start.
    poll::until(
        "R3 streams to be created",
        Duration::from_secs(30),
        || async { streams::ensure_streams(&js, &settings).await.ok() },
    )
    .await;
    let mut outbound = js.get_stream(subjects::OUTBOUND_STREAM).await.unwrap();
    assert_eq!(outbound.info().await.unwrap().config.num_replicas, 3);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_tenants_table_stores_and_refuses_what_it_should(pool: PgPool) {
    let acme = TenantId::parse("acme").unwrap();
    assert!(
        tenants::insert(&pool, &NewTenant::with_defaults(acme.clone()))
            .await
            .unwrap()
    );
    assert!(
        !tenants::insert(&pool, &NewTenant::with_defaults(acme.clone()))
            .await
            .unwrap(),
        "ids are unique"
    );
    let row = tenants::fetch(&pool, &acme).await.unwrap().unwrap();
    assert!(row.is_active());
    assert_eq!(row.bridge_state.as_str(), "unprovisioned");
    // The database refuses an id the type would have refused, should one slip past.
    let bad = sqlx::query("INSERT INTO tenants (id) VALUES ('a.b')")
        .execute(&pool)
        .await;
    assert!(bad.is_err());
    let bad_weight = sqlx::query("UPDATE tenants SET weight = 0 WHERE id = 'acme'")
        .execute(&pool)
        .await;
    assert!(bad_weight.is_err());
}

/// A tenant-scoped transaction (one round trip to open) sets the tenant for
/// itself only: the connection goes back to the pool without it, and an
/// error in the opening leaves no transaction behind.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_tenant_transaction_scopes_itself_and_leaves_no_trace_on_its_connection(pool: PgPool) {
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let setting = "SELECT coalesce(current_setting('switchyard.tenant_id', true), '')";
    for tenant in ["alpha", "bravo"] {
        let mut tx =
            switchyard_shared::db::begin_for_tenant(&one, &TenantId::parse(tenant).unwrap())
                .await
                .unwrap();
        let seen: String = sqlx::query_scalar(setting)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(seen, tenant);
        tx.commit().await.unwrap();
        let after: String = sqlx::query_scalar(setting).fetch_one(&one).await.unwrap();
        assert_eq!(after, "", "the tenant outlived its transaction");
    }
    let mut tx = switchyard_shared::db::begin_for_tenant(&one, &TenantId::parse("alpha").unwrap())
        .await
        .unwrap();
    sqlx::query("SELECT 1/0")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    drop(tx);
    let again: String = sqlx::query_scalar(setting).fetch_one(&one).await.unwrap();
    assert_eq!(again, "");
}

/// A tenant-scoped transaction whose opening is abandoned midway (a caller's
/// timeout, a `select!` that went the other way) leaves no open transaction
/// on its connection: otherwise the next statements on it, whoever runs
/// them, run inside that transaction, in that tenant's scope, and are lost
/// if it is rolled back (sqlx counts a transaction as open only once its
/// `BEGIN` was answered, so it sends no `ROLLBACK` for one abandoned before).
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_abandoned_tenant_transaction_leaves_nothing_open_on_its_connection(pool: PgPool) {
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let tenant = TenantId::parse("alpha").unwrap();
    // A simple query outside a transaction is its own transaction: it
    // starts when the statement does.
    let leaked = "SELECT coalesce(current_setting('switchyard.tenant_id', true), '') \
                  || CASE WHEN xact_start <> query_start THEN ' (in a transaction)' ELSE '' END \
                  FROM pg_stat_activity WHERE pid = pg_backend_pid()";
    let mut abandoned = 0;
    for micros in (0..400).map(|i| i * 5) {
        let opened = tokio::time::timeout(
            Duration::from_micros(micros),
            switchyard_shared::db::begin_for_tenant(&one, &tenant),
        )
        .await;
        if opened.is_err() {
            abandoned += 1;
        }
        drop(opened);
        let row = sqlx::raw_sql(leaked).fetch_one(&one).await.unwrap();
        let seen: String = sqlx::Row::get(&row, 0);
        assert_eq!(
            seen, "",
            "after an opening abandoned at {micros} µs the connection carried {seen:?}"
        );
    }
    assert!(
        abandoned > 0,
        "no opening was abandoned: the test proved nothing"
    );
}

/// Every pool a service makes names its connections (`pg_stat_activity`
/// tells which service holds which), and the tenant-scoped pool is closed
/// when the service stops, not dropped with the process (PostgreSQL logged
/// an unexpected EOF for each of its connections).
#[sqlx::test]
async fn a_services_pools_name_their_connections_and_are_closed_when_it_stops(pool: PgPool) {
    let nats = NatsServer::start();
    let env = switchyard_tests::services::env(
        &nats.url(),
        &switchyard_tests::services::database_url(&pool),
        &[],
    );
    let common = switchyard_shared::config::CommonSettings::from_env(&env, 0).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let service =
        switchyard_shared::service::Service::start("switchyard-router", common, shutdown.clone())
            .await
            .unwrap();
    let (app_db, _tenants) = service.tenant_scope(Duration::from_secs(5)).unwrap();
    let name = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>("SELECT current_setting('application_name')")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(name(service.db.clone()).await, "switchyard-router");
    assert_eq!(name(app_db.clone()).await, "switchyard-router-app");

    shutdown.cancel();
    assert!(service.stopped().await, "the service drained");
    assert!(app_db.is_closed(), "the tenant-scoped pool was left open");
}
