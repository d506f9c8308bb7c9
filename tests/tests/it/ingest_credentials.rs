//! Ingest's per-tenant credential check (`ingest/src/credentials.rs`) on its
//! own, over a real database: what a replica whose cached row is older than
//! a rotation accepts, and what decides while PostgreSQL is unreachable.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgPoolOptions};
use switchyard_ingest::credentials::{Credentials, DATABASE_BACKOFF};
use switchyard_shared::{
    ids::TenantId,
    tenant_cache::TenantCache,
    tenants::{self, NewTenant},
    webhook_auth::Generation,
    webhook_credential,
};
use switchyard_tests::tcp_proxy::TcpProxy;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

/// A check over `db` whose cached rows are trusted for `ttl` (no
/// announcements here: only what the check itself does refreshes them).
fn credentials(db: PgPool, ttl: Duration) -> Credentials {
    Credentials::new(TenantCache::new(db, ttl), Duration::from_millis(300))
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_replica_with_an_older_row_accepts_the_new_generation_and_then_reads_the_row_again(
    pool: PgPool,
) {
    assert!(
        tenants::insert(&pool, &NewTenant::with_defaults(acme()))
            .await
            .unwrap()
    );
    let check = credentials(pool.clone(), Duration::from_secs(3600));
    assert!(
        check.admits(&acme(), Generation::ORIGINAL).await,
        "cached: generation 0"
    );

    // Rotated behind the replica's back (its announcement lost), revoking 0.
    webhook_credential::rotate(&pool, &acme(), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();

    assert!(
        check.admits(&acme(), Generation::ORIGINAL).await,
        "the stale row still says 0 is current (what the announcement is for)"
    );
    assert!(
        check.admits(&acme(), Generation::new(1)).await,
        "a generation newer than the cached row is ours: accepted at once"
    );
    assert!(
        !check.admits(&acme(), Generation::ORIGINAL).await,
        "and the row was read again: 0 is revoked"
    );
    assert!(
        check
            .admits(&TenantId::parse("norow").unwrap(), Generation::new(4))
            .await,
        "a tenant without a row is not refused here (the router drops it)"
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn while_the_database_is_unreachable_the_last_row_read_decides(pool: PgPool) {
    assert!(
        tenants::insert(&pool, &NewTenant::with_defaults(acme()))
            .await
            .unwrap()
    );
    webhook_credential::rotate(&pool, &acme(), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let options = pool.connect_options();
    let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = TcpProxy::start(upstream).await;
    let through = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with((*options).clone().host("127.0.0.1").port(proxy.port()))
        .await
        .unwrap();
    // A zero TTL: every check asks the database, and keeps the row it read.
    let check = credentials(through, Duration::ZERO);
    let other = TenantId::parse("other").unwrap();
    assert!(check.admits(&acme(), Generation::new(1)).await);

    proxy.cut();

    assert!(
        !check.admits(&acme(), Generation::ORIGINAL).await,
        "the row read before the outage still refuses a revoked generation"
    );
    assert!(
        check.admits(&acme(), Generation::new(1)).await,
        "and accepts the current one"
    );
    assert!(
        check.admits(&other, Generation::ORIGINAL).await,
        "a tenant never read: a token we issued is accepted rather than its events lost"
    );
    let started = std::time::Instant::now();
    for _ in 0..20 {
        check.admits(&other, Generation::ORIGINAL).await;
    }
    assert!(
        started.elapsed() < DATABASE_BACKOFF,
        "after a failed read the database is not asked on every webhook: {:?}",
        started.elapsed()
    );
}
