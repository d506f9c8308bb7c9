//! A flush slot's connection, kept from one batch to the next while the slot
//! is busy.
//!
//! sqlx 0.8 pings every pooled connection when it is given back
//! (`Floating::return_to_pool`, unconditionally), so a slot that took a
//! connection per batch paid two round trips and two PostgreSQL wake-ups per
//! statement: the statement and the ping. A slot now keeps its connection
//! while batches keep coming and gives it back once it had nothing to do for
//! [`super::Shape::hold_idle`], after [`HOLD_AT_MOST`] (so the pool's
//! lifetime and idle rules still apply to it), or after a statement failed
//! for any reason but its data (the pool's release check then closes a
//! broken connection). A busy slot holds one connection of the pool, as it
//! did for the length of each statement before.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Postgres, pool::PoolConnection};
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
        let (connection, _) = match self.held.take() {
            Some(held) => self.held.insert(held),
            None => {
                let connection = self.pool.acquire().await?;
                self.held.insert((connection, Instant::now()))
            }
        };
        Ok(&mut **connection)
    }

    /// After a statement: keeps the connection if it is fit (no error but
    /// of the data) and not held for too long, else gives it back.
    pub(super) fn after_statement(&mut self, fit: bool) {
        let too_long = self
            .held
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= HOLD_AT_MOST);
        if !fit || too_long {
            self.release();
        }
    }

    /// Gives the connection back to the pool (which checks it).
    pub(super) fn release(&mut self) {
        self.held = None;
    }
}

/// Whether a connection that returned `error` may run the next statement:
/// only an error of the data (the database refused the statement) leaves it
/// as it was; anything else (I/O, protocol, a timeout) may have left it
/// broken or mid-message.
pub(super) fn fit_after(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(_))
}
