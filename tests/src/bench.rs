//! The start-up every benchmark shares: a private nats-server and a database
//! of its own on `DATABASE_URL`'s server, migrated, and dropped again when
//! the benchmark returns, also when it fails.

use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::{nats_server::NatsServer, scratch_db::ScratchDatabase};

/// Starts a nats-server, creates the database `<db_prefix>_<pid>`, migrates
/// it, and runs `bench` with the server, a pool of `db_connections` on the
/// database, and its URL (for services that read `DATABASE_URL`). The
/// database is dropped afterwards; then the server stops.
pub async fn with_dependencies<F>(
    db_prefix: &str,
    db_connections: u32,
    bench: F,
) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&NatsServer, PgPool, &str) -> anyhow::Result<()>,
{
    let nats = NatsServer::start();
    let db = ScratchDatabase::create(db_prefix).await?;
    let result = async {
        let pool = PgPoolOptions::new()
            .max_connections(db_connections)
            .connect_with(db.options.clone())
            .await?;
        switchyard_shared::db::migrate(&pool).await?;
        bench(&nats, pool, &db.url).await
    }
    .await;
    db.drop_database().await?;
    result
}
