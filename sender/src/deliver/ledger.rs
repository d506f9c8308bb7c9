//! The sender's side of the delivery ledger (`switchyard_shared::deliveries`):
//! who this sender is when it claims a reply part, what is under way in this
//! process, and the sends the provider accepted whose ledger write has not
//! landed yet.
//!
//! The lease in the database keeps other senders off a reply part while one
//! attempt runs (renewed meanwhile, [`SendLedger::renewed_during`]); the set of attempts under way here keeps two copies of one
//! message in this process apart (the lease lets its own owner back in, for
//! an attempt that stopped before its call). A send the provider accepted is
//! written to the ledger before its message is acked, retried for
//! `SWITCHYARD_SEND_LEDGER_RETRY` ([`SendLedger::record_wired`]); past that the
//! message goes back to its lane unacked and the accepted send is remembered
//! here, so its next turn only writes the ledger and never sends again.

use crate::metrics as m;
use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use sqlx::PgPool;
use switchyard_shared::{
    deliveries::{self, Lease},
    ids::TenantId,
    message_ids::{ProviderMessageId, ReplyId},
    retry::{AttemptContext, NextAttempt, RetryPolicy},
};

use crate::retry_policy::SendPolicy;

/// A reply part, by tenant (reply ids are unique within a tenant).
type Key = (TenantId, ReplyId);

/// The first wait between two tries of a ledger write after a send; doubled
/// up to [`WRITE_RETRY_MAX_DELAY`].
const WRITE_RETRY_MIN_DELAY: Duration = Duration::from_millis(100);
const WRITE_RETRY_MAX_DELAY: Duration = Duration::from_secs(2);

/// This sender's leases and the attempts it has under way.
#[derive(Debug)]
pub struct SendLedger {
    lease: Lease,
    write_retry: RetryPolicy,
    under_way: Mutex<HashSet<Key>>,
    /// Accepted by the provider, not yet written: the provider's id (`None`:
    /// accepted without a readable id).
    unrecorded: Mutex<HashMap<Key, Option<ProviderMessageId>>>,
}

/// One attempt under way in this process; ends when dropped.
#[derive(Debug)]
pub(super) struct UnderWay {
    ledger: Arc<SendLedger>,
    key: Key,
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        lock(&self.ledger.under_way).remove(&self.key);
    }
}

impl SendLedger {
    /// The ledger of one sender process. Its lease owner is the replica id
    /// plus a random suffix: a restarted replica (same id) is another owner,
    /// and so checks the attempts its predecessor left in doubt.
    pub fn new(replica_id: &str, policy: &SendPolicy) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let replica: String = replica_id.chars().take(150).collect();
        Self {
            lease: Lease {
                owner: format!("{replica}/{}", &suffix[..12]),
                duration: policy.lease,
            },
            write_retry: RetryPolicy {
                max_age: policy.ledger_retry_for,
                ..RetryPolicy::exponential(WRITE_RETRY_MIN_DELAY, WRITE_RETRY_MAX_DELAY)
            },
            under_way: Mutex::new(HashSet::new()),
            unrecorded: Mutex::new(HashMap::new()),
        }
    }

    /// The lease this sender claims reply parts with.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Marks an attempt at `key` under way here; `None` if one already is.
    pub(super) fn begin(self: &Arc<Self>, tenant: &TenantId, reply: &ReplyId) -> Option<UnderWay> {
        let key = (tenant.clone(), reply.clone());
        lock(&self.under_way).insert(key.clone()).then(|| UnderWay {
            ledger: Arc::clone(self),
            key,
        })
    }

    /// Runs `work` (an attempt's call and the recording of its outcome),
    /// renewing this sender's lease on the reply every third of its duration,
    /// so the lease can stay short (a dead sender's replies are taken over
    /// soon) however long the call takes. A renewal that fails is logged and
    /// retried at the next tick: the message itself is kept alive meanwhile,
    /// so no other sender holds a copy to take the reply over with.
    pub(super) async fn renewed_during<F: Future>(
        &self,
        db: &PgPool,
        tenant: &TenantId,
        reply: &ReplyId,
        work: F,
    ) -> F::Output {
        let every = self.lease.duration / 3;
        let mut work = std::pin::pin!(work);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => {
                    if let Err(e) = deliveries::renew(db, tenant, reply, &self.lease).await {
                        tracing::warn!(tenant.id = %tenant, error = %e, "cannot renew the ledger lease");
                    }
                }
            }
        }
    }

    /// The provider's id of an accepted send of `key` not yet written, if any.
    pub(super) fn unrecorded(
        &self,
        tenant: &TenantId,
        reply: &ReplyId,
    ) -> Option<Option<ProviderMessageId>> {
        lock(&self.unrecorded)
            .get(&(tenant.clone(), reply.clone()))
            .cloned()
    }

    /// Writes an accepted send to the ledger, retried with backoff for up to
    /// `SWITCHYARD_SEND_LEDGER_RETRY`. On success any remembered copy is
    /// forgotten; on failure the send is remembered, for the message's next
    /// turn to write instead of sending.
    pub(super) async fn record_wired(
        &self,
        steps: &deliveries::SendSteps,
        tenant: &TenantId,
        reply: &ReplyId,
        provider_id: Option<&ProviderMessageId>,
    ) -> Result<(), sqlx::Error> {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let error = match deliveries::mark_wired(steps, tenant, reply, provider_id).await {
                Ok(()) => {
                    lock(&self.unrecorded).remove(&(tenant.clone(), reply.clone()));
                    if attempt > 1 {
                        tracing::info!(tenant.id = %tenant, ledger.tries = attempt, "sent; the ledger write succeeded after retries");
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            metrics::counter!(m::LEDGER_WRITE_FAILURES).increment(1);
            let failed = AttemptContext {
                attempt,
                age: started.elapsed(),
                jitter_seed: 0,
            };
            match self.write_retry.after_failure(failed, None) {
                NextAttempt::Retry {
                    delay,
                    attempt: next,
                } => {
                    tracing::warn!(tenant.id = %tenant, error = %error, retry.in_ms = delay.as_millis() as u64, "sent, but the ledger write failed; retrying before the ack");
                    tokio::time::sleep(delay).await;
                    attempt = next;
                }
                NextAttempt::GiveUp(_) => {
                    metrics::counter!(m::LEDGER_WRITE_DEFERRED).increment(1);
                    lock(&self.unrecorded)
                        .insert((tenant.clone(), reply.clone()), provider_id.cloned());
                    tracing::error!(tenant.id = %tenant, error = %error, ledger.tries = attempt, "sent, but the ledger write keeps failing; the message stays unacked and its next turn writes the ledger instead of sending");
                    return Err(error);
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Arc<SendLedger> {
        Arc::new(SendLedger::new("sender-a", &SendPolicy::default()))
    }

    #[test]
    fn an_attempt_under_way_keeps_a_second_one_out_until_it_ends() {
        let ledger = ledger();
        let tenant = TenantId::parse("alpha").unwrap();
        let reply = ReplyId::parse("e1:0").unwrap();
        let first = ledger.begin(&tenant, &reply).expect("first attempt");
        assert!(ledger.begin(&tenant, &reply).is_none());
        drop(first);
        assert!(ledger.begin(&tenant, &reply).is_some());
    }

    #[test]
    fn two_processes_of_one_replica_are_two_lease_owners() {
        let (a, b) = (ledger(), ledger());
        assert!(a.lease().owner.starts_with("sender-a/"));
        assert_ne!(a.lease().owner, b.lease().owner);
        assert_eq!(a.lease().duration, SendPolicy::default().lease);
    }
}
