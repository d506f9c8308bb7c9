//! Making an event durable in JetStream: one publish, acked before we answer
//! 200, retried within the publish budget while the failure looks transient.
//!
//! The subject comes from [`subjects::inbound`] and the tenant from the
//! route's verified request (a WA Bridges webhook, a Cloud API batch item)
//! or from the outbox row that was written from one; the body is published
//! as the route accepted it, with our metadata in headers.
//! `Nats-Msg-Id` is the tenant-scoped event id, so the stream's duplicate
//! window absorbs republishes (a retry after a lost ack, a claimed-but-unacked
//! key, a concurrent delivery on another replica, the outbox flusher).
//!
//! [`Publisher::publish`] retries within `SWITCHYARD_PUBLISH_TIMEOUT`: a
//! stream without a leader (an R3 cluster electing one answers "no
//! responders" for a few seconds), an ack that does not come, a connection
//! that is re-establishing. While the connection is not established nothing
//! is handed to the client: async-nats queues commands during a reconnect and
//! sends them once connected, so a publish handed over while disconnected
//! could be stored long after we gave up on it.

use std::time::{Duration, Instant};

use async_nats::{
    HeaderMap,
    connection::State,
    jetstream::{
        self,
        context::{PublishError as JsPublishError, PublishErrorKind},
        message::PublishMessage,
    },
};
use backon::{BackoffBuilder as _, ExponentialBuilder};
use bytes::Bytes;
use switchyard_shared::{
    events,
    ids::{EventId, TenantId},
    scoped_event_id::ScopedEventId,
    subjects,
    trace_context::TraceContext,
};

use crate::metrics as m;

/// First pause between two attempts; doubled (with jitter) up to [`MAX_RETRY_DELAY`].
const MIN_RETRY_DELAY: Duration = Duration::from_millis(25);
const MAX_RETRY_DELAY: Duration = Duration::from_millis(400);
/// An attempt never gets less than this of the budget (unless less is left).
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// How a successful publish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A new message in the stream.
    Stored,
    /// The stream already held this `Nats-Msg-Id` (within its duplicate window).
    Duplicate,
}

/// Why one attempt did not get an ack.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("NATS connection is not established")]
    Disconnected,
    #[error("no JetStream ack within {0:?}")]
    TimedOut(Duration),
    #[error("no responders: the stream has no leader (or does not exist)")]
    NoResponders,
    #[error("the message is larger than the server's max_payload")]
    TooLarge,
    /// The stream answered with an error: it saw the message and did not store it.
    #[error("JetStream refused the publish: {0}")]
    Refused(String),
    /// Anything else (the request dropped by the client, an unreadable
    /// answer): whether it was stored is unknown.
    #[error("publish failed: {0}")]
    Failed(String),
}

impl PublishError {
    fn from_client(e: &JsPublishError) -> Self {
        match e.kind() {
            PublishErrorKind::StreamNotFound => PublishError::NoResponders,
            PublishErrorKind::MaxPayloadExceeded => PublishError::TooLarge,
            PublishErrorKind::TimedOut => PublishError::TimedOut(Duration::ZERO),
            _ if std::error::Error::source(e)
                .is_some_and(|s| s.downcast_ref::<jetstream::Error>().is_some()) =>
            {
                PublishError::Refused(e.to_string())
            }
            _ => PublishError::Failed(e.to_string()),
        }
    }

    /// Whether another attempt may succeed (everything but a message the
    /// server can never take).
    pub fn is_transient(&self) -> bool {
        !matches!(self, PublishError::TooLarge)
    }

    /// Whether a message handed to the client may still be stored after
    /// this failure: nobody said no.
    fn leaves_it_open(&self) -> bool {
        matches!(self, PublishError::TimedOut(_) | PublishError::Failed(_))
    }

    /// Short label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            PublishError::Disconnected => "disconnected",
            PublishError::TimedOut(_) => "timeout",
            PublishError::NoResponders => "no_responders",
            PublishError::TooLarge => "too_large",
            PublishError::Refused(_) => "refused",
            PublishError::Failed(_) => "failed",
        }
    }
}

/// Why [`Publisher::publish`] gave up.
#[derive(Debug, thiserror::Error)]
#[error("JetStream did not take the event after {attempts} attempt(s): {last}")]
pub struct PublishFailure {
    /// The last attempt's failure.
    pub last: PublishError,
    pub attempts: u32,
    /// Some attempt reached the client and was neither acked nor refused (an
    /// ack timeout, a connection lost meanwhile): the server may store it
    /// later. A refusal ("no responders", a JetStream error) or an attempt
    /// never handed over (disconnected) cannot be stored.
    pub may_be_stored: bool,
}

/// One inbound event as it is published: from a verified webhook, or from
/// the outbox row that was written from one.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    tenant: TenantId,
    event_id: String,
    body: Bytes,
    received_at_ms: i64,
    trace: TraceContext,
}

impl InboundMessage {
    /// An event of a route's verified request (a WA Bridges webhook, or one
    /// item of a Cloud API batch).
    pub fn new(
        tenant: &TenantId,
        event_id: &EventId,
        body: Bytes,
        received_at_ms: i64,
        trace: TraceContext,
    ) -> Self {
        Self {
            tenant: tenant.clone(),
            event_id: event_id.as_str().to_owned(),
            body,
            received_at_ms,
            trace,
        }
    }

    /// Rebuilds a message from the outbox. Only [`crate::outbox`] writes
    /// those rows, each from a verified request.
    pub(crate) fn from_outbox(
        tenant: TenantId,
        event_id: String,
        body: Bytes,
        received_at_ms: i64,
        trace: TraceContext,
    ) -> Self {
        Self {
            tenant,
            event_id,
            body,
            received_at_ms,
            trace,
        }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn received_at_ms(&self) -> i64 {
        self.received_at_ms
    }

    /// The webhook's trace, which the router's step continues.
    pub fn trace(&self) -> &TraceContext {
        &self.trace
    }

    /// `<tenant>:<event id>`: the `Nats-Msg-Id` and `Switchyard-Event-Id`.
    pub fn scoped_id(&self) -> ScopedEventId {
        ScopedEventId::new(&self.tenant, &self.event_id)
    }

    /// The message with its headers; the same for every attempt and for the
    /// flusher, so a republish is recognised as the same message.
    fn to_publish(&self) -> PublishMessage {
        let scoped_id = self.scoped_id();
        let mut headers = HeaderMap::new();
        headers.insert(events::HEADER_EVENT_ID, scoped_id.as_str());
        headers.insert(
            events::HEADER_RECEIVED_AT_MS,
            self.received_at_ms.to_string().as_str(),
        );
        self.trace.add_to(&mut headers);
        PublishMessage::build()
            .payload(self.body.clone())
            .headers(headers)
            .message_id(scoped_id.as_str())
    }
}

/// Publishes inbound events to the inbound stream.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    budget: Duration,
}

impl Publisher {
    pub fn new(client: async_nats::Client, budget: Duration) -> Self {
        let jetstream = switchyard_shared::streams::context(client.clone(), budget);
        Self {
            client,
            jetstream,
            budget,
        }
    }

    /// The whole budget of [`Publisher::publish`].
    pub fn budget(&self) -> Duration {
        self.budget
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Publishes and waits for the ack, retrying transient failures with a
    /// short backoff until the budget is spent. `give_up` is asked before
    /// every retry: when it says so, the caller has a better place for the
    /// event (the tenant now has events in the outbox, which this one must
    /// not overtake).
    pub async fn publish(
        &self,
        message: &InboundMessage,
        give_up: impl Fn() -> bool,
    ) -> Result<Published, PublishFailure> {
        let started = Instant::now();
        let deadline = started + self.budget;
        let mut delays = retry_delays();
        let mut attempts = 0;
        let mut may_be_stored = false;
        loop {
            attempts += 1;
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            let (result, handed_over) = self
                .attempt(message, attempt_timeout(self.budget, remaining))
                .await;
            let error = match result {
                Ok(published) => {
                    m::publish_latency(started.elapsed());
                    if attempts > 1 {
                        m::publish_retried_ok();
                    }
                    return Ok(published);
                }
                Err(e) => e,
            };
            may_be_stored |= handed_over && error.leaves_it_open();
            let pause = delays.next().unwrap_or(MAX_RETRY_DELAY);
            let out_of_time = Instant::now() + pause >= deadline;
            if !error.is_transient() || out_of_time || give_up() {
                return Err(PublishFailure {
                    last: error,
                    attempts,
                    may_be_stored,
                });
            }
            m::publish_retry(error.as_str());
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt, bounded by `timeout`. Also says whether the message was
    /// handed to the client (and so may reach the server even without an ack).
    pub async fn attempt(
        &self,
        message: &InboundMessage,
        timeout: Duration,
    ) -> (Result<Published, PublishError>, bool) {
        if !self.is_connected() {
            return (Err(PublishError::Disconnected), false);
        }
        let mut handed_over = false;
        let attempt = async {
            let ack = self
                .jetstream
                .send_publish(subjects::inbound(message.tenant()), message.to_publish())
                .await
                .map_err(|e| PublishError::from_client(&e))?;
            handed_over = true;
            ack.await.map_err(|e| PublishError::from_client(&e))
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Err(_elapsed) => Err(PublishError::TimedOut(timeout)),
            Ok(Err(PublishError::TimedOut(_))) => Err(PublishError::TimedOut(timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(ack)) => Ok(if ack.duplicate {
                Published::Duplicate
            } else {
                Published::Stored
            }),
        };
        (result, handed_over)
    }
}

/// The pauses between attempts: 25 ms, doubling with jitter, at most 400 ms.
fn retry_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(MIN_RETRY_DELAY)
        .with_max_delay(MAX_RETRY_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// How long one attempt may wait for its ack: a third of the budget (so a
/// request lost with a dying connection is sent again on the next one), at
/// least [`MIN_ATTEMPT`], never more than what is left.
fn attempt_timeout(budget: Duration, remaining: Duration) -> Duration {
    (budget / 3)
        .max(MIN_ATTEMPT)
        .min(remaining)
        .max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_gets_a_third_of_the_budget_and_never_more_than_is_left() {
        let budget = Duration::from_secs(3);
        assert_eq!(attempt_timeout(budget, budget), Duration::from_secs(1));
        assert_eq!(
            attempt_timeout(budget, Duration::from_millis(400)),
            Duration::from_millis(400)
        );
        assert_eq!(
            attempt_timeout(Duration::from_millis(150), Duration::from_millis(150)),
            MIN_ATTEMPT
        );
        assert_eq!(
            attempt_timeout(budget, Duration::ZERO),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn retry_pauses_start_short_and_stay_bounded() {
        let delays: Vec<Duration> = retry_delays().take(12).collect();
        assert_eq!(delays.len(), 12, "never runs out: the budget decides");
        assert!(delays[0] >= MIN_RETRY_DELAY && delays[0] <= MIN_RETRY_DELAY * 2);
        assert!(
            delays.iter().all(|d| *d <= MAX_RETRY_DELAY * 2),
            "{delays:?}"
        );
        let total: Duration = delays.iter().take(5).sum();
        assert!(total < Duration::from_secs(2), "{total:?}");
    }

    #[test]
    fn only_an_oversized_message_is_not_worth_another_attempt() {
        for transient in [
            PublishError::Disconnected,
            PublishError::TimedOut(Duration::from_secs(1)),
            PublishError::NoResponders,
            PublishError::Refused("jetstream temporarily unavailable".into()),
            PublishError::Failed("broken pipe".into()),
        ] {
            assert!(transient.is_transient(), "{transient}");
        }
        assert!(!PublishError::TooLarge.is_transient());
    }
}
