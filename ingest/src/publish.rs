//! Making a verified webhook durable: one JetStream publish, acked before we
//! answer 200.
//!
//! The subject comes from [`subjects::inbound`] and the tenant from the
//! [`VerifiedWebhook`] only; the body is published exactly as received, with
//! our metadata in headers. `Nats-Msg-Id` is the tenant-scoped event id, so the
//! stream's duplicate window absorbs republishes (a claimed-but-unacked key, a
//! concurrent delivery on another replica, a degraded database). When the NATS
//! connection is down we refuse at once instead of letting the client buffer
//! the publish until the ack times out: the provider should get a fast 503.

use std::time::{Duration, Instant};

use async_nats::{
    HeaderMap,
    connection::State,
    jetstream::{self, message::PublishMessage},
};
use switchyard_shared::{events, subjects};

use crate::{metrics as m, verify::VerifiedWebhook};

/// How a successful publish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A new message in the stream.
    Stored,
    /// The stream already held this `Nats-Msg-Id` (within its duplicate window).
    Duplicate,
}

/// Why JetStream did not take the event.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("NATS connection is not established")]
    Disconnected,
    #[error("no JetStream ack within {0:?}")]
    TimedOut(Duration),
    #[error("JetStream refused the publish: {0}")]
    Refused(String),
}

/// Publishes verified webhooks to the inbound stream.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    timeout: Duration,
}

impl Publisher {
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        let jetstream = switchyard_shared::streams::context(client.clone(), timeout);
        Self {
            client,
            jetstream,
            timeout,
        }
    }

    /// Publishes and waits for the ack; never longer than the configured bound.
    pub async fn publish(
        &self,
        webhook: &VerifiedWebhook,
        received_at_ms: i64,
        traceparent: &str,
    ) -> Result<Published, PublishError> {
        if self.client.connection_state() != State::Connected {
            return Err(PublishError::Disconnected);
        }
        let scoped_id = webhook.scoped_id();
        let mut headers = HeaderMap::new();
        headers.insert(events::HEADER_EVENT_ID, scoped_id.as_str());
        headers.insert(
            events::HEADER_RECEIVED_AT_MS,
            received_at_ms.to_string().as_str(),
        );
        headers.insert(events::HEADER_TRACEPARENT, traceparent);
        let message = PublishMessage::build()
            .payload(webhook.body().clone())
            .headers(headers)
            .message_id(&scoped_id);
        let started = Instant::now();
        let attempt = async {
            let ack = self
                .jetstream
                .send_publish(subjects::inbound(webhook.tenant()), message)
                .await
                .map_err(|e| PublishError::Refused(e.to_string()))?;
            ack.await.map_err(|e| PublishError::Refused(e.to_string()))
        };
        let ack = tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| PublishError::TimedOut(self.timeout))??;
        m::publish_latency(started.elapsed());
        Ok(if ack.duplicate {
            Published::Duplicate
        } else {
            Published::Stored
        })
    }
}
