//! A tenant's own durable lane in the `SPILL` stream (`spill.<direction>.<tenant>`).
//!
//! The stream uses work-queue retention, so what is acked is gone and "the
//! subject has a message" means "this tenant has a backlog". Spilling reuses
//! the message's `Nats-Msg-Id`, so the stream's duplicate window makes a
//! repeated spill of the same message (after a lost ack) harmless. The spill
//! consumer is created on demand and removed by the server once it has been
//! idle for `spill_idle`.

use async_nats::{
    HeaderMap,
    jetstream::{self, consumer::pull},
};
use futures::StreamExt as _;

use crate::{
    ids::TenantId,
    lanes::{
        LaneMessage,
        message::{HEADER_ORIGINAL_SUBJECT, HEADER_PARTITION},
        settings::LaneSettings,
    },
    subjects::{self, Direction},
};

/// Sends a copy of `message` to its tenant's spill lane; the returned future
/// resolves once the stream has stored it. Sending in order and awaiting the
/// acks later keeps a tenant's spills in order while the partition reader
/// moves on (one spill at a time would hold the partition ~1 ms per message).
pub async fn start_spill(
    js: &jetstream::Context,
    message: &LaneMessage,
    partition: u16,
) -> Result<jetstream::context::PublishAckFuture, async_nats::Error> {
    let mut headers: HeaderMap = message.headers().clone();
    headers.insert(HEADER_ORIGINAL_SUBJECT, message.subject());
    headers.insert(HEADER_PARTITION, partition.to_string().as_str());
    headers.insert(async_nats::header::NATS_MESSAGE_ID, message.message_id());
    Ok(js
        .publish_with_headers(
            subjects::spill(message.direction(), message.tenant()),
            headers,
            message.payload().clone(),
        )
        .await?)
}

/// Whether the tenant's spill lane holds anything (a backlog left by an
/// earlier owner of its partition, for instance). Asked when a lane opens
/// without a [`BacklogSnapshot`] (none could be taken), in one request: the
/// stream is named without asking the server for its info first (a missing
/// stream fails the message read instead).
pub async fn has_backlog(
    js: &jetstream::Context,
    direction: Direction,
    tenant: &TenantId,
) -> Result<bool, async_nats::Error> {
    let stream = js.get_stream_no_info(subjects::SPILL_STREAM).await?;
    match stream
        .get_last_raw_message_by_subject(&subjects::spill(direction, tenant))
        .await
    {
        Ok(_) => Ok(true),
        Err(e)
            if e.kind()
                == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// The tenants whose spill lanes held something at one moment. A partition
/// reader takes one when its first message arrives and opens its tenants'
/// lanes from it, without asking JetStream one tenant at a time (issue 20: a
/// start over a thousand tenants made a thousand such requests per
/// direction, each holding its partition's dispatch for 20-30 ms on a busy
/// server, and they set the latency of every tenant's first event).
///
/// Sound for as long as the reader keeps the partition: only a partition's
/// owner spills its tenants, and a lane, once open, stays open until the
/// partition goes. What it cannot see is a spill of the previous owner
/// stored after it was taken; the backlog scan adopts that, as it adopts
/// one stored after a lane asked ([`super::adoption`]).
#[derive(Debug, Clone, Default)]
pub struct BacklogSnapshot {
    tenants: std::collections::HashSet<TenantId>,
}

impl BacklogSnapshot {
    /// Takes the snapshot ([`backlogs`]: the stream's per-subject counts,
    /// paged).
    pub async fn take(
        js: &jetstream::Context,
        direction: Direction,
    ) -> Result<Self, async_nats::Error> {
        Ok(backlogs(js, direction).await?.into_iter().collect())
    }

    /// Whether `tenant` had a backlog when the snapshot was taken.
    pub fn has_backlog(&self, tenant: &TenantId) -> bool {
        self.tenants.contains(tenant)
    }

    /// The tenants with a backlog, in no order.
    pub fn tenants(&self) -> impl Iterator<Item = &TenantId> {
        self.tenants.iter()
    }
}

impl FromIterator<(TenantId, u64)> for BacklogSnapshot {
    fn from_iter<I: IntoIterator<Item = (TenantId, u64)>>(entries: I) -> Self {
        Self {
            tenants: entries
                .into_iter()
                .filter(|(_, count)| *count > 0)
                .map(|(tenant, _)| tenant)
                .collect(),
        }
    }
}

/// Every tenant whose spill lane in `direction` holds something, with how
/// many messages (delivered but unacked ones included), from the stream's
/// per-subject counts (one paged request).
pub async fn backlogs(
    js: &jetstream::Context,
    direction: Direction,
) -> Result<Vec<(TenantId, u64)>, async_nats::Error> {
    // No info of its own: the per-subject request below answers whether
    // the stream exists (this runs every `backlog_scan` in every replica of
    // every direction, and a stream info is a request and a JSON answer).
    let stream = js.get_stream_no_info(subjects::SPILL_STREAM).await?;
    let mut counts = stream
        .info_with_subjects(subjects::spill_filter(direction))
        .await?;
    let mut backlogs = Vec::new();
    while let Some(entry) = counts.next().await {
        let (subject, count) = entry?;
        if count > 0
            && let Some(tenant) = subjects::tenant_of(&subject)
        {
            backlogs.push((tenant, count as u64));
        }
    }
    Ok(backlogs)
}

/// Messages waiting in every spill lane of `direction` (delivered but
/// unacked ones included).
pub async fn pending(
    js: &jetstream::Context,
    direction: Direction,
) -> Result<u64, async_nats::Error> {
    Ok(backlogs(js, direction).await?.iter().map(|(_, n)| n).sum())
}

/// The work partition of a tenant's spilled backlog, as its newest spilled
/// message records it; `None` when the lane is empty or the header is
/// missing (a spill written before the header existed).
pub async fn backlog_partition(
    js: &jetstream::Context,
    direction: Direction,
    tenant: &TenantId,
) -> Result<Option<u16>, async_nats::Error> {
    let stream = js.get_stream_no_info(subjects::SPILL_STREAM).await?;
    match stream
        .get_last_raw_message_by_subject(&subjects::spill(direction, tenant))
        .await
    {
        Ok(message) => Ok(message
            .headers
            .get(HEADER_PARTITION)
            .and_then(|partition| partition.as_str().parse().ok())),
        Err(e)
            if e.kind()
                == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The tenant's spill consumer, created if missing.
pub async fn consumer(
    js: &jetstream::Context,
    direction: Direction,
    tenant: &TenantId,
    settings: &LaneSettings,
) -> Result<jetstream::consumer::Consumer<pull::Config>, async_nats::Error> {
    let stream = js.get_stream_no_info(subjects::SPILL_STREAM).await?;
    let name = subjects::spill_consumer(direction, tenant);
    let consumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: subjects::spill(direction, tenant),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                max_ack_pending: settings.queue_bound as i64 * 4,
                inactive_threshold: settings.spill_idle,
                ..Default::default()
            },
        )
        .await?;
    Ok(consumer)
}

/// How long one read of a spill lane (a fetch, or its consumer's info) may
/// take. The lane waits for it with its state locked, so it must be short:
/// a fetch is `no_wait` and has no expiry of its own, so a request that
/// reached a consumer leader that then died (a NATS node lost) was never
/// answered and held the tenant's lane, its keep-alives and its
/// partition's dispatch (issue 16's chaos runs: one tenant's replies 14 s
/// late after every node loss). A healthy answer takes milliseconds.
pub const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Takes up to `max` spilled messages without waiting for more, and what
/// arrived within [`READ_WAIT`] if the answer stops short. (A message that
/// arrives after that was delivered to nobody who reads it: it comes back
/// after the consumer's `ack_wait`, behind the ones taken since.)
pub async fn fetch(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    direction: Direction,
    tenant: &TenantId,
    max: usize,
) -> Result<Vec<LaneMessage>, async_nats::Error> {
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    let mut batch =
        tokio::time::timeout_at(deadline, consumer.fetch().max_messages(max).messages())
            .await
            .map_err(|_| format!("the spill lane did not answer within {READ_WAIT:?}"))??;
    let mut out = Vec::new();
    while let Ok(Some(next)) = tokio::time::timeout_at(deadline, batch.next()).await {
        out.push(LaneMessage::new(tenant.clone(), direction, next?));
    }
    Ok(out)
}

/// Whether every spilled message has been delivered to us (`false` when
/// the consumer does not answer within [`READ_WAIT`]: ask again later).
pub async fn fully_delivered(
    consumer: &mut jetstream::consumer::Consumer<pull::Config>,
) -> Result<bool, async_nats::Error> {
    match tokio::time::timeout(READ_WAIT, consumer.info()).await {
        Ok(info) => Ok(info?.num_pending == 0),
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_names_the_tenants_whose_lanes_hold_something() {
        let t = |raw: &str| TenantId::parse(raw).unwrap();
        let snapshot: BacklogSnapshot = [(t("acme"), 3), (t("globex"), 0), (t("initech"), 1)]
            .into_iter()
            .collect();
        assert!(snapshot.has_backlog(&t("acme")));
        assert!(snapshot.has_backlog(&t("initech")));
        assert!(
            !snapshot.has_backlog(&t("globex")),
            "an empty lane is no backlog"
        );
        assert!(
            !snapshot.has_backlog(&t("hooli")),
            "nor is a lane never spilled to"
        );
        assert_eq!(snapshot.tenants().count(), 2);
    }
}
