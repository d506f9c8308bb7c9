//! One worker per tenant lane of `NOTIFY`: the tenant's notifications are
//! posted one at a time, in order, each retried in place (kept alive
//! meanwhile) until its endpoint answers 2xx or a limit is reached. So a
//! tenant whose endpoint fails or hangs holds up only its own lane (which
//! spills to its own durable lane past its bound, like any backlog); the
//! other tenants' workers, and the partition readers, keep going.
//!
//! Attempts are counted here, within one delivery of the message (the
//! server's delivery count also counts hand-overs and restarts); the age
//! comes from the notification's own timestamp, so a redelivered one still
//! meets the age limit.

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde::Deserialize;
use sqlx::PgPool;
use switchyard_shared::{
    ids::TenantId,
    lanes::{
        LaneMessage, LaneWork, TenantLane,
        dead_letter::{self, DeadLetter, DeadLetterCode},
        message::keep_alive_during,
    },
    notifications::target,
    retry::{AttemptContext, NextAttempt, RetryPolicy},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::post::{Posted, Poster};
use crate::metrics as m;

/// The wait before reading a tenant's target again after our database failed.
const DB_TROUBLE_WAIT: Duration = Duration::from_secs(1);

/// What every tenant worker shares.
pub(super) struct Notifier {
    pub db: PgPool,
    pub js: async_nats::jetstream::Context,
    pub poster: Poster,
    pub retry: RetryPolicy,
    pub shutdown: CancellationToken,
}

/// Starts a worker for every tenant lane that reports work, until shutdown.
pub(super) async fn run(notifier: Arc<Notifier>, mut work: LaneWork, tasks: TaskTracker) {
    let mut workers: HashMap<TenantId, (Arc<TenantLane>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    loop {
        let lane = tokio::select! {
            _ = notifier.shutdown.cancelled() => return,
            lane = work.recv() => match lane { Some(l) => l, None => return },
        };
        let running = workers
            .get(lane.tenant())
            .is_some_and(|(current, handle)| Arc::ptr_eq(current, &lane) && !handle.is_finished());
        if running {
            continue;
        }
        let handle = tasks.spawn(Arc::clone(&notifier).drain(Arc::clone(&lane)));
        workers.insert(lane.tenant().clone(), (lane, handle));
    }
}

/// The timestamp every notification body carries.
#[derive(Deserialize)]
struct Stamp {
    #[serde(with = "time::serde::rfc3339")]
    timestamp: time::OffsetDateTime,
}

impl Notifier {
    /// Takes the lane's notifications one at a time until it closes.
    async fn drain(self: Arc<Self>, lane: Arc<TenantLane>) {
        loop {
            let message = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                m = lane.next() => match m { Some(m) => m, None => return },
            };
            keep_alive_during(std::slice::from_ref(&message), self.finish(&message)).await;
        }
    }

    /// One notification to a final state: acked (delivered, or the tenant
    /// has no URL), dead-lettered, or on shutdown given back.
    async fn finish(&self, message: &LaneMessage) {
        let tenant = message.tenant();
        let id = message.message_id();
        let created = serde_json::from_slice::<Stamp>(message.payload())
            .map(|s| s.timestamp)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
        let seed = switchyard_shared::retry::jitter_seed(id);
        let mut attempt = 0u32;
        loop {
            let target = match target::fetch(&self.db, tenant).await {
                Ok(Some(target)) => target,
                Ok(None) => {
                    metrics::counter!(m::NOTIFICATIONS, "outcome" => "off").increment(1);
                    message.ack().await;
                    return;
                }
                Err(e) => {
                    // Ours, not the notification's: no attempt spent.
                    tracing::warn!(tenant.id = %tenant, error = %e, "cannot read the tenant's notification URL; retrying");
                    if !self.wait(message, DB_TROUBLE_WAIT).await {
                        return;
                    }
                    continue;
                }
            };
            attempt += 1;
            // A stop does not wait for a hanging endpoint: the notification
            // goes back for redelivery (the tenant may then get it twice,
            // under the same webhook-id).
            let posted = tokio::select! {
                _ = self.shutdown.cancelled() => {
                    message.release(Duration::ZERO).await;
                    return;
                }
                posted = self.poster.post(&target, id, message.payload()) => posted,
            };
            let why = match posted {
                Posted::Delivered => {
                    metrics::counter!(m::NOTIFICATIONS, "outcome" => "delivered").increment(1);
                    tracing::debug!(tenant.id = %tenant, notification.id = id, delivery.attempt = attempt, "notification delivered");
                    message.ack().await;
                    return;
                }
                Posted::Refused(why) => return self.dead_letter(message, why, attempt).await,
                Posted::Failed(why) => why,
            };
            metrics::counter!(m::NOTIFICATIONS, "outcome" => "failed").increment(1);
            let age = time::OffsetDateTime::now_utc() - created;
            let failed = AttemptContext {
                attempt,
                age: age.try_into().unwrap_or(Duration::ZERO),
                jitter_seed: seed,
            };
            match self.retry.after_failure(failed, None) {
                NextAttempt::Retry { delay, .. } => {
                    tracing::debug!(tenant.id = %tenant, notification.id = id, delivery.attempt = attempt, retry.delay_ms = delay.as_millis() as u64, error = %why, "notification not delivered; retrying");
                    if !self.wait(message, delay).await {
                        return;
                    }
                }
                NextAttempt::GiveUp(_) => return self.dead_letter(message, why, attempt).await,
            }
        }
    }

    /// Waits `delay` before the next try; on shutdown gives the message back
    /// and returns false.
    async fn wait(&self, message: &LaneMessage, delay: Duration) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => {
                message.release(Duration::ZERO).await;
                false
            }
            _ = tokio::time::sleep(delay) => true,
        }
    }

    async fn dead_letter(&self, message: &LaneMessage, why: String, attempts: u32) {
        let reason = DeadLetter::new(DeadLetterCode::NotificationUndelivered, why);
        match dead_letter::publish(&self.js, message, &reason, attempts).await {
            Ok(()) => {
                metrics::counter!(m::NOTIFICATIONS, "outcome" => "dead_lettered").increment(1);
                message.terminate().await;
            }
            Err(e) => {
                tracing::warn!(tenant.id = %message.tenant(), error = %e, "cannot dead-letter a notification; released for redelivery");
                message.release(Duration::from_secs(5)).await;
            }
        }
    }
}
