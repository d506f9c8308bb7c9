//! A database of its own for a benchmark, created from `DATABASE_URL`'s
//! server and dropped afterwards (`#[sqlx::test]` does this for tests).

use anyhow::Context as _;
use sqlx::{ConnectOptions as _, PgConnection, postgres::PgConnectOptions};

/// A freshly created, empty database.
pub struct ScratchDatabase {
    name: String,
    admin: PgConnection,
    /// Options to connect to the new database.
    pub options: PgConnectOptions,
    /// Its URL, for services that read `DATABASE_URL`.
    pub url: String,
}

impl std::fmt::Debug for ScratchDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchDatabase")
            .field("name", &self.name)
            .finish()
    }
}

impl ScratchDatabase {
    /// Creates `<prefix>_<pid>` on the server of `DATABASE_URL` (default local).
    pub async fn create(prefix: &str) -> anyhow::Result<Self> {
        let admin_url = crate::lifecycle::database_url();
        let admin_options: PgConnectOptions = admin_url.parse().context("DATABASE_URL")?;
        let name = format!("{prefix}_{}", std::process::id());
        let mut admin = admin_options
            .connect()
            .await
            .context("connect to PostgreSQL")?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        Ok(Self {
            url: format!("{base}/{name}"),
            options: admin_options.database(&name),
            name,
            admin,
        })
    }

    /// Drops the database (connections still open are closed by force).
    pub async fn drop_database(mut self) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut self.admin)
        .await?;
        Ok(())
    }
}
