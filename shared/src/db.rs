//! PostgreSQL: the connection pool, the migrations, and tenant-scoped
//! transactions.
//!
//! Migrations are embedded here but run only by an explicit command
//! (`switchyard-* migrate`, later the operator CLI), never silently by every
//! replica at start-up. Tenant-scoped work goes through [`begin_for_tenant`],
//! which sets the per-transaction tenant that the row-level security policies key on.

use secrecy::ExposeSecret;
use sqlx::{
    PgPool, Postgres, Transaction,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{config::DatabaseSettings, ids::TenantId};

/// Every migration of the project, in order.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The setting that row-level security policies read.
pub const TENANT_SETTING: &str = "switchyard.tenant_id";

/// Builds a pool; connects lazily so a service can start (and report not ready)
/// while the database is still coming up. Its connections introduce
/// themselves as `application_name` (unless `DATABASE_URL` names one), so
/// `pg_stat_activity` tells which service holds which connection.
pub fn pool(settings: &DatabaseSettings, application_name: &str) -> Result<PgPool, sqlx::Error> {
    crate::tls::install_crypto_provider();
    let options = connect_options(settings, application_name)?;
    Ok(options_for(settings).connect_lazy_with(options))
}

/// `DATABASE_URL`'s options, named `application_name` unless the URL names
/// the connections itself.
fn connect_options(
    settings: &DatabaseSettings,
    application_name: &str,
) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = settings.url.expose_secret().parse()?;
    Ok(if options.get_application_name().is_some() {
        options
    } else {
        options.application_name(application_name)
    })
}

/// The pool settings every pool shares. sqlx pings a connection before
/// handing it out (and again when it is given back, which cannot be turned
/// off): see [`pool_with_role`] for the pools that skip the first ping.
fn options_for(settings: &DatabaseSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// The embedded migrations the database has not applied (successfully, with
/// the same checksum), by version; empty when the schema is current. A
/// database never migrated (no `_sqlx_migrations` table) lacks them all.
/// Reads only: workers may check with credentials that cannot change the schema.
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await?;
    let applied: Vec<(i64, Vec<u8>)> = if table.is_some() {
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| {
            !applied
                .iter()
                .any(|(version, checksum)| *version == m.version && **checksum == *m.checksum)
        })
        .map(|m| m.version)
        .collect())
}

/// Starts a transaction whose row-level security scope is `tenant`.
///
/// One round trip: `BEGIN` and the tenant setting go to the server as one
/// simple query (a transaction is 3–4 round trips in all; this was one more
/// per tenant-scoped transaction, several per event: issue 20). The tenant id
/// is written into the statement, which is safe because a [`TenantId`] holds
/// only `a-z`, `0-9`, `_` and `-` (checked again by [`tenant_literal`]).
///
/// The opening runs on a task of its own, so a caller that gives up on it
/// (a timeout, a `select!` that went the other way) cannot abandon it
/// midway. sqlx counts a transaction as open only once its `BEGIN` is
/// answered and sends no `ROLLBACK` for one abandoned before that: the
/// connection went back to the pool inside the transaction, in this tenant's
/// scope, and every statement run on it next, by anyone, ran inside it
/// (seen at 100 events/s over 1,000 tenants: ingest's connections open for
/// seconds after its tenant lookups timed out). On its own task the opening
/// always completes; an unwanted transaction is then dropped, which rolls it
/// back. Test: `foundation::an_abandoned_tenant_transaction_leaves_nothing_open_on_its_connection`.
pub async fn begin_for_tenant(
    pool: &PgPool,
    tenant: &TenantId,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let pool = pool.clone();
    let statement = begin_statement(tenant);
    let started = std::time::Instant::now();
    let opened = tokio::spawn(async move { pool.begin_with(statement).await })
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("opening a tenant transaction: {e}")))?;
    metrics::histogram!(crate::metrics::DB_TENANT_BEGIN_SECONDS)
        .record(started.elapsed().as_secs_f64());
    opened
}

/// `BEGIN; SELECT set_config('switchyard.tenant_id', '<tenant>', true)`.
fn begin_statement(tenant: &TenantId) -> String {
    format!(
        "BEGIN; SELECT set_config('{TENANT_SETTING}', '{}', true)",
        tenant_literal(tenant)
    )
}

/// The tenant id as the body of a SQL string literal. A [`TenantId`] cannot
/// hold a quote or a backslash; should that rule ever loosen, quotes are
/// doubled here rather than trusted.
fn tenant_literal(tenant: &TenantId) -> String {
    tenant.as_str().replace('\'', "''")
}

/// The non-owner role for tenant-scoped work (row-level security applies to it).
pub const APP_ROLE: &str = "switchyard_app";

/// A pool whose every connection acts as `role` (`SET ROLE`), so row-level
/// security applies even when the login user owns the tables. Production
/// deployments log in as a member of the role; tests log in as `postgres`.
///
/// The router's and the sender's tenant-scoped work runs on it, several
/// short transactions per event, so it does not ping a connection before
/// handing it out: one round trip fewer per transaction, and each round trip
/// is a wake-up of both processes (issue 20: PostgreSQL is about a third of
/// the pipeline's CPU). A connection an outage left broken then fails its
/// first statement instead of being replaced, which every step there
/// survives: a failed read or claim is retried before anything happens, the
/// sender's ledger write after a send retries on its own, and so does the
/// router's conversation record after a bot turn (without that, the turn ran
/// again: 1 run in 8 of
/// `router_backpressure::an_unreachable_database_holds_events_without_spending_attempts_and_all_are_answered_once_it_returns`).
pub fn pool_with_role(
    settings: &DatabaseSettings,
    role: &'static str,
    application_name: &str,
) -> Result<PgPool, sqlx::Error> {
    crate::tls::install_crypto_provider();
    let options = connect_options(settings, application_name)?;
    Ok(options_for(settings)
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                sqlx::query(&format!("SET ROLE {role}"))
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect_lazy_with(options))
}

#[cfg(test)]
mod begin_tests {
    use super::*;

    #[test]
    fn the_begin_statement_sets_the_tenant_for_this_transaction_only() {
        let tenant = TenantId::parse("acme-shoes_2").unwrap();
        assert_eq!(
            begin_statement(&tenant),
            "BEGIN; SELECT set_config('switchyard.tenant_id', 'acme-shoes_2', true)"
        );
    }
}
