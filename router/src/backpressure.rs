//! Backpressure: trouble in our own infrastructure is never a message's fault.
//!
//! A step that fails because PostgreSQL is unreachable, slow or saturated
//! (the pool timed out), because a tenant lookup failed, or because NATS did
//! not store a reply or a dead letter, ends in [`Outcome::Backpressure`]: the
//! runner retries it in place without limit, on a growing and capped backoff
//! ([`crate::retries::Retries::backpressure`]), keeps its messages alive
//! meanwhile, and never counts it towards the message's attempts, so it can
//! never lead to a dead letter. While it lasts the tenant workers take new
//! work from their lanes only slowly ([`Pressure`]): the lanes fill, then
//! spill, and the backlog waits in JetStream, which is what it is for.
//!
//! Only the message's own faults lead to a dead letter: an unreadable event,
//! a payload naming another tenant, the bot refusing it (a 4xx, bad output,
//! bad configuration), or the bot's own transient failures once the
//! attempts run out. [`db_fault`] says which side a database error is on.
//!
//! [`Outcome::Backpressure`]: crate::runner::Outcome::Backpressure

use std::time::Duration;

use tokio::sync::watch;

use crate::metrics as m;

/// Whose fault a failed step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Our infrastructure's (or our deployment's): wait and retry without limit.
    Ours,
    /// The message's own data: counted against its attempts.
    Message,
}

/// Whose fault a database error is. PostgreSQL blames the data only with
/// SQLSTATE class 22 (data exception: a value it cannot store, such as a NUL
/// byte in text) and 23 (integrity constraint violation); a value that cannot
/// even be encoded is the message's too. Everything else is ours: the pool
/// timing out or closing, a refused or dropped connection, TLS, the protocol,
/// and every other SQLSTATE class (08 connection, 40 serialization or
/// deadlock, 53 out of resources, 57 shutdown or statement timeout, 25 a
/// read-only standby, 42 a schema or permission a deployment got wrong, ...),
/// as well as rows we cannot decode (a schema mismatch). Those are fixed on
/// our side, and the message waits until they are; dead-lettering it would
/// only make an operator replay every event of the outage.
pub fn db_fault(error: &sqlx::Error) -> Fault {
    match error {
        sqlx::Error::Database(e) => sqlstate_fault(e.code().as_deref()),
        sqlx::Error::Encode(_) => Fault::Message,
        _ => Fault::Ours,
    }
}

/// Whose fault a PostgreSQL error with this SQLSTATE is (see [`db_fault`]).
pub fn sqlstate_fault(code: Option<&str>) -> Fault {
    match code {
        Some(code) if code.starts_with("22") || code.starts_with("23") => Fault::Message,
        _ => Fault::Ours,
    }
}

/// Whether this process's steps currently meet trouble in our
/// infrastructure, as the last finished attempt of any turn says: a
/// backpressure outcome sets it, any other outcome clears it. Shared by
/// every tenant worker of the runner, since the infrastructure is shared:
/// while it is set a worker takes at most one new message from its lane per
/// `probe_every` (its turns already held keep retrying on their own backoff,
/// and the first to get through clears it), so intake slows down at once for
/// every tenant and resumes at once when one step succeeds.
#[derive(Debug)]
pub struct Pressure {
    troubled: watch::Sender<bool>,
    /// Longest wait for relief before a worker takes one more message.
    probe_every: Duration,
}

impl Pressure {
    pub fn new(probe_every: Duration) -> Self {
        Self {
            troubled: watch::Sender::new(false),
            probe_every,
        }
    }

    /// A step met trouble in our infrastructure.
    pub fn trouble(&self, reason: &str) {
        let began = self
            .troubled
            .send_if_modified(|troubled| !std::mem::replace(troubled, true));
        if began {
            metrics::gauge!(m::BACKPRESSURE).set(1.0);
            tracing::warn!(backpressure.reason = %reason, "our infrastructure is in trouble: holding messages and slowing intake until it recovers");
        }
    }

    /// A step got through (or ended for a reason of the message's own).
    pub fn relief(&self) {
        let ended = self
            .troubled
            .send_if_modified(|troubled| std::mem::replace(troubled, false));
        if ended {
            metrics::gauge!(m::BACKPRESSURE).set(0.0);
            tracing::info!("our infrastructure answers again: intake resumes");
        }
    }

    pub fn is_troubled(&self) -> bool {
        *self.troubled.borrow()
    }

    /// Waits until the trouble is over, or at most `probe_every`.
    pub async fn relieved_or_probe(&self) {
        let mut changes = self.troubled.subscribe();
        let relieved = changes.wait_for(|troubled| !*troubled);
        let _ = tokio::time::timeout(self.probe_every, relieved).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_blames_the_message_only_for_its_data() {
        for code in ["22021", "22001", "22P02", "23505", "23503", "23514"] {
            assert_eq!(sqlstate_fault(Some(code)), Fault::Message, "{code}");
        }
        for code in [
            "08006", "08001", "40001", "40P01", "53300", "53200", "57P01", "57P03", "57014",
            "55P03", "25006", "42P01", "42501", "58030", "XX000",
        ] {
            assert_eq!(sqlstate_fault(Some(code)), Fault::Ours, "{code}");
        }
        assert_eq!(sqlstate_fault(None), Fault::Ours);
    }

    #[test]
    fn pool_connection_and_protocol_errors_are_ours() {
        let ours = [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::Protocol("unexpected message".into()),
            sqlx::Error::Tls("handshake".into()),
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("is_new".into()),
            sqlx::Error::Decode("bad row".into()),
        ];
        for error in &ours {
            assert_eq!(db_fault(error), Fault::Ours, "{error}");
        }
        assert_eq!(
            db_fault(&sqlx::Error::Encode("unencodable".into())),
            Fault::Message
        );
    }

    #[tokio::test]
    async fn trouble_holds_intake_until_relief_or_the_probe_interval() {
        let pressure = Pressure::new(Duration::from_secs(60));
        assert!(!pressure.is_troubled());
        pressure.trouble("database: pool timed out");
        assert!(pressure.is_troubled());
        // Relief releases a waiting worker at once, long before the probe.
        let waiting = pressure.relieved_or_probe();
        let relieve = async { pressure.relief() };
        let started = tokio::time::Instant::now();
        tokio::join!(waiting, relieve);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(!pressure.is_troubled());
    }

    #[tokio::test]
    async fn while_the_trouble_lasts_a_worker_probes_every_interval() {
        let pressure = Pressure::new(Duration::from_millis(100));
        pressure.trouble("tenant lookup: connection refused");
        let started = tokio::time::Instant::now();
        pressure.relieved_or_probe().await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        assert!(pressure.is_troubled());
    }
}
