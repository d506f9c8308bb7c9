//! A flush slot's connection, kept from one batch to the next while the slot
//! is busy.
//!
//! sqlx 0.8 pings every pooled connection when it is given back
//! (`Floating::return_to_pool`, unconditionally), so a slot that took a
//! connection per batch paid two round trips and two PostgreSQL wake-ups per
//! statement: the statement and the ping. A slot now keeps its connection
//! while batches keep coming and gives it back once it had nothing to do for
//! [`super::Shape::hold_idle`], when the pool closes, after [`HOLD_AT_MOST`] (so the pool's
//! lifetime and idle rules still apply to it), after a statement failed
//! for any reason but its data (the pool's release check then closes a
//! broken connection), and after every statement while the pool has no
//! connection to spare (others may be waiting for one). A busy slot holds one connection of the pool, as it
//! did for the length of each statement before.
//!
//! Nothing carries over from one batch to the next on a kept connection: a
//! step is one statement in autocommit, and the batch functions set each
//! item's tenant scope transaction-locally (`set_config(.., true)`), so the
//! scope ends with the statement, as it did on a connection given back.

use std::time::Duration;

use sqlx::{
    PgConnection, PgPool, Postgres,
    pool::PoolConnection,
    postgres::{PgDatabaseError, PgSeverity},
};
use tokio::time::Instant;

/// Longest a slot keeps one connection however busy it is.
pub(super) const HOLD_AT_MOST: Duration = Duration::from_secs(60);

/// The connection a slot holds, if any.
pub(super) struct HeldConnection {
    pool: PgPool,
    held: Option<(PoolConnection<Postgres>, Instant)>,
}

impl HeldConnection {
    pub(super) fn new(pool: PgPool) -> Self {
        Self { pool, held: None }
    }

    pub(super) fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// The held connection, or one taken from the pool (within the pool's
    /// acquire timeout) when none is held.
    pub(super) async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.held.is_none() {
            self.held = Some((self.pool.acquire().await?, Instant::now()));
        }
        match self.held.as_mut() {
            Some((connection, _)) => Ok(&mut **connection),
            None => Err(sqlx::Error::PoolClosed),
        }
    }

    /// After a statement: keeps the connection if it is fit (no error but
    /// of the data), not held for too long, and the pool has another to
    /// spare; else gives it back. With the pool exhausted someone may be
    /// waiting for a connection: keeping this one would starve them (the
    /// steps' other slots, the service's transactions) for as long as this
    /// slot stays busy, so it goes back after every statement, as before.
    pub(super) fn after_statement(&mut self, fit: bool) {
        let too_long = self
            .held
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= HOLD_AT_MOST);
        let exhausted = self.pool.num_idle() == 0
            && self.pool.size() >= self.pool.options().get_max_connections();
        if !fit || too_long || exhausted {
            self.release();
        }
    }

    /// Resolves when the pool is closed (a closed pool waits for every
    /// connection to come back before its `close` returns).
    pub(super) fn pool_closing(&self) -> impl std::future::Future<Output = ()> + use<> {
        self.pool.close_event()
    }

    /// Gives the connection back to the pool (which checks it).
    pub(super) fn release(&mut self) {
        self.held = None;
    }
}

/// Whether a connection that returned `error` may run the next statement:
/// only an error of the data (the database refused the statement) leaves it
/// as it was. Anything else (I/O, protocol, a timeout) may have left it
/// broken or mid-message, and so may a database error that ends the session
/// (severity FATAL or PANIC: a terminated backend, a server shutting down)
/// or names the connection (SQLSTATE classes 08, connection exception, and
/// 57P, operator intervention).
pub(super) fn fit_after(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(e) = error else {
        return false;
    };
    let code = e.code();
    let names_the_connection = code
        .as_deref()
        .is_some_and(|c| c.starts_with("08") || c.starts_with("57P"));
    let ends_the_session = e
        .try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic));
    !names_the_connection && !ends_the_session
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_error_of_the_data_leaves_a_connection_fit() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert!(!fit_after(&io));
        assert!(!fit_after(&sqlx::Error::PoolTimedOut));
        assert!(!fit_after(&sqlx::Error::Protocol("torn".into())));
        let database = |code: &str| {
            sqlx::Error::Database(Box::new(super::super::SharedDatabaseError {
                message: "refused".into(),
                code: Some(code.into()),
            }))
        };
        assert!(fit_after(&database("22012")), "division by zero: the data");
        assert!(fit_after(&database("23503")), "a foreign key: the data");
        assert!(
            !fit_after(&database("57P01")),
            "terminated by the administrator"
        );
        assert!(!fit_after(&database("08006")), "connection failure");
    }
}
