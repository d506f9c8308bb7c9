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
        Ok(Self {
            url: with_database(&admin_url, &name)?,
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

/// `url` with its database (the path) replaced by `database`, keeping the
/// rest: user, host and the query (`sslmode=disable` and the like), which
/// cutting the URL at its last `/` lost.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(url).context("DATABASE_URL is not a URL")?;
    url.set_path(&format!("/{database}"));
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_database_swapped_in_keeps_the_urls_user_host_and_query() {
        assert_eq!(
            with_database(
                "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
                "run_1"
            )
            .unwrap(),
            "postgres://postgres@127.0.0.1:5432/run_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u:p@db.example:6432", "run_2").unwrap(),
            "postgres://u:p@db.example:6432/run_2"
        );
        assert!(with_database("not a url", "run_3").is_err());
    }
}
