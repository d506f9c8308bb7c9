//! The tenant cache leans on announcements (issue 20: a short TTL cost a
//! transaction per tenant every few seconds on every replica): a change
//! announced on `control.tenant.<id>` or `control.bridge.<id>` is read at
//! once, and a NATS reconnect drops the whole cache, since what was
//! announced while disconnected is lost. The TTL here is an hour: nothing
//! below can be the TTL's doing.

use std::time::Duration;

use sqlx::PgPool;
use switchyard_shared::{
    ids::TenantId,
    subjects,
    tenant_cache::TenantCache,
    tenants::{self, NewTenant, TenantStatus},
};
use switchyard_tests::{nats_server::NatsServer, poll};
use tokio_util::sync::CancellationToken;

const WITHIN: Duration = Duration::from_secs(15);

async fn setup(pool: &PgPool) -> (TenantId, TenantCache) {
    let tenant = TenantId::parse("acme").unwrap();
    assert!(
        tenants::insert(pool, &NewTenant::with_defaults(tenant.clone()))
            .await
            .unwrap()
    );
    let cache = TenantCache::new(pool.clone(), Duration::from_secs(3600));
    let row = cache.resolve(&tenant).await.unwrap().expect("the row");
    assert_eq!(row.status, TenantStatus::Active);
    (tenant, cache)
}

async fn suspend_silently(pool: &PgPool) {
    sqlx::query("UPDATE tenants SET status = 'suspended' WHERE id = 'acme'")
        .execute(pool)
        .await
        .unwrap();
}

async fn until_suspended(cache: &TenantCache, tenant: &TenantId, what: &str) {
    poll::until(what, WITHIN, || async {
        let row = cache.resolve(tenant).await.ok()??;
        (row.status == TenantStatus::Suspended).then_some(())
    })
    .await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn announced_changes_of_either_kind_are_read_at_once(pool: PgPool) {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let (tenant, cache) = setup(&pool).await;
    let stop = CancellationToken::new();
    tokio::spawn(cache.clone().follow_changes(client.clone(), stop.clone()));
    suspend_silently(&pool).await;
    // Unannounced, the cached row stands (the TTL is an hour).
    let cached = cache.resolve(&tenant).await.unwrap().unwrap();
    assert_eq!(cached.status, TenantStatus::Active);
    // A bridge state announcement (the router's) drops it too. The
    // subscription may not be in place yet: announce until it is read.
    poll::until(
        "the bridge announcement to drop the row",
        WITHIN,
        || async {
            client
                .publish(subjects::bridge_state_changed(&tenant), "connected".into())
                .await
                .ok()?;
            client.flush().await.ok()?;
            let row = cache.resolve(&tenant).await.ok()??;
            (row.status == TenantStatus::Suspended).then_some(())
        },
    )
    .await;
    sqlx::query("UPDATE tenants SET status = 'active' WHERE id = 'acme'")
        .execute(&pool)
        .await
        .unwrap();
    client
        .publish(subjects::tenant_changed(&tenant), "".into())
        .await
        .unwrap();
    poll::until(
        "the operator's announcement to drop the row",
        WITHIN,
        || async {
            let row = cache.resolve(&tenant).await.ok()??;
            (row.status == TenantStatus::Active).then_some(())
        },
    )
    .await;
    stop.cancel();
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_reconnect_drops_the_whole_cache(pool: PgPool) {
    let mut nats = NatsServer::start();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.url())
        .await
        .unwrap();
    let (tenant, cache) = setup(&pool).await;
    // Give the watcher a connected state to compare against: the client
    // connects in the background, and a watcher started before its first
    // connection counts that connection as a reconnect (dropping the cache
    // at a moment of its choosing, which once read the silent change below).
    poll::until("the client connected", WITHIN, || async {
        (client.connection_state() == async_nats::connection::State::Connected).then_some(())
    })
    .await;
    let stop = CancellationToken::new();
    tokio::spawn(cache.clone().follow_changes(client.clone(), stop.clone()));
    nats.kill();
    poll::until("the client to notice the loss", WITHIN, || async {
        (client.connection_state() != async_nats::connection::State::Connected).then_some(())
    })
    .await;
    // Changed while nobody could announce it.
    suspend_silently(&pool).await;
    let cached = cache.resolve(&tenant).await.unwrap().unwrap();
    assert_eq!(cached.status, TenantStatus::Active, "still the cached row");
    nats.restart();
    until_suspended(&cache, &tenant, "the reconnect to drop the cache").await;
    stop.cancel();
}

/// A loss far shorter than the watcher's one-second look: the old watcher,
/// which compared the connection state between looks, almost never saw it.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_loss_and_reconnect_between_two_looks_still_drops_the_cache(pool: PgPool) {
    let mut nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let (tenant, cache) = setup(&pool).await;
    let stop = CancellationToken::new();
    tokio::spawn(cache.clone().follow_changes(client.clone(), stop.clone()));
    // The watcher is listening once an announced change of another tenant
    // is read (announce until it is: its subscription may not be in place
    // yet; another tenant, so that late copies cannot touch this one).
    let probe = TenantId::parse("probe").unwrap();
    assert!(
        tenants::insert(&pool, &NewTenant::with_defaults(probe.clone()))
            .await
            .unwrap()
    );
    cache
        .resolve(&probe)
        .await
        .unwrap()
        .expect("the probe's row");
    sqlx::query("UPDATE tenants SET status = 'suspended' WHERE id = 'probe'")
        .execute(&pool)
        .await
        .unwrap();
    poll::until("the watcher to read an announcement", WITHIN, || async {
        client
            .publish(subjects::tenant_changed(&probe), "".into())
            .await
            .ok()?;
        client.flush().await.ok()?;
        let row = cache.resolve(&probe).await.ok()??;
        (row.status == TenantStatus::Suspended).then_some(())
    })
    .await;
    // Changed without an announcement: only a reconnect may drop the row.
    suspend_silently(&pool).await;
    let cached = cache.resolve(&tenant).await.unwrap().unwrap();
    assert_eq!(cached.status, TenantStatus::Active, "still the cached row");
    let connects = || {
        client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = connects();
    nats.kill();
    poll::until("the client to notice the loss", WITHIN, || async {
        (client.connection_state() != async_nats::connection::State::Connected).then_some(())
    })
    .await;
    nats.restart();
    poll::until("the client to reconnect", WITHIN, || async {
        (connects() > before).then_some(())
    })
    .await;
    until_suspended(&cache, &tenant, "the short loss to drop the cache").await;
    stop.cancel();
}

/// A thousand tenants' first events at a start each need their row (issue
/// 20): reads asked while one is under way share the next statement, and
/// every caller gets its own tenant's row (or none).
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn rows_asked_for_while_a_read_is_under_way_share_one_statement(pool: PgPool) {
    const TENANTS: usize = 30;
    let ids: Vec<TenantId> = (0..TENANTS)
        .map(|i| TenantId::parse(&format!("t{i:02}")).unwrap())
        .collect();
    for id in &ids[1..] {
        assert!(
            tenants::insert(&pool, &NewTenant::with_defaults(id.clone()))
                .await
                .unwrap()
        );
    }
    let batches = || {
        switchyard_tests::traffic::metric_sum(
            &switchyard_shared::ops_server::metrics_handle().render(),
            "switchyard_db_step_batch_size_count",
            "step=\"tenant_row\"",
        )
    };
    let before = batches();
    let cache = TenantCache::new(pool.clone(), Duration::from_secs(3600));
    // Hold the table so that the first read waits in the database while the
    // others queue behind it.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let reads: Vec<_> = ids
        .iter()
        .map(|id| {
            let cache = cache.clone();
            let id = id.clone();
            tokio::spawn(async move { cache.resolve(&id).await })
        })
        .collect();
    poll::until("the first read to wait for the lock", WITHIN, || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE relation = 'tenants'::regclass AND NOT granted",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        (waiting > 0).then_some(())
    })
    .await;
    blocker.rollback().await.unwrap();
    for (i, read) in reads.into_iter().enumerate() {
        let row = read.await.unwrap().unwrap();
        match i {
            0 => assert!(row.is_none(), "t00 was never inserted"),
            _ => assert_eq!(row.expect("its row").id, ids[i], "each caller its own row"),
        }
    }
    let statements = batches() - before;
    assert!(
        (1.0..=3.0).contains(&statements),
        "{TENANTS} reads took {statements} statements"
    );
}

/// A row this build cannot read (a value a newer release wrote) fails its own
/// tenant's read only, not the other reads of its statement.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_row_this_build_cannot_read_fails_only_its_own_tenants_read(pool: PgPool) {
    let ids: Vec<TenantId> = ["alpha", "bravo", "charlie"]
        .iter()
        .map(|id| TenantId::parse(id).unwrap())
        .collect();
    for id in &ids {
        assert!(
            tenants::insert(&pool, &NewTenant::with_defaults(id.clone()))
                .await
                .unwrap()
        );
    }
    // What a newer release might store: a bot kind this build does not know.
    sqlx::query("ALTER TABLE tenants DROP CONSTRAINT tenants_bot_kind_check")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE tenants SET bot_kind = 'future' WHERE id = 'bravo'")
        .execute(&pool)
        .await
        .unwrap();
    let answers = tenants::fetch_scoped_many(&pool, &ids).await.unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0].as_ref().unwrap().as_ref().unwrap().id, ids[0]);
    match &answers[1] {
        Err(sqlx::Error::ColumnDecode { index, .. }) => assert_eq!(index, "bot_kind"),
        other => panic!("bravo's unreadable row should fail its read alone: {other:?}"),
    }
    assert_eq!(answers[2].as_ref().unwrap().as_ref().unwrap().id, ids[2]);
}
