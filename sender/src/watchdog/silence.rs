//! Which bridges have been silent: the last inbound event of each tenant, as
//! the INBOUND stream stored it (every webhook ingest accepts, of any kind,
//! `connected` included). The stream is the record every replica shares, so
//! a restart or a move of partitions loses no "last seen" time.
//!
//! Only the tenants of the partitions this replica owns are read, so one
//! replica acts for each tenant. A tenant with no event left in the stream
//! (older than `SWITCHYARD_STREAM_MAX_AGE`, 7 days by default) is not seen
//! here; `switchyard fleet stuck` and `fleet reconcile` cover those.

use futures::StreamExt as _;
use switchyard_shared::{
    ids::TenantId,
    lanes::work::PartitionShare,
    subjects::{self, Direction},
};

/// A tenant whose last inbound event is older than the silence threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Silent {
    pub tenant: TenantId,
    /// When its last event was stored, unix milliseconds.
    pub last_event_ms: i64,
}

/// The stream could not be read (the round is skipped, the next one retries).
#[derive(Debug, thiserror::Error)]
#[error("cannot read the inbound stream: {0}")]
pub(super) struct ReadError(String);

fn read_error(e: impl std::fmt::Display) -> ReadError {
    ReadError(e.to_string())
}

/// The owned tenants silent since before `silent_before_ms`, longest silent first.
pub(super) async fn silent_tenants(
    js: &async_nats::jetstream::Context,
    owned: &PartitionShare,
    silent_before_ms: i64,
) -> Result<Vec<Silent>, ReadError> {
    let stream = js
        .get_stream_no_info(Direction::Inbound.stream())
        .await
        .map_err(read_error)?;
    let mut subjects_seen = stream
        .info_with_subjects(subjects::all_partitions_filter(Direction::Inbound))
        .await
        .map_err(read_error)?;
    let mut owned_subjects = Vec::new();
    while let Some(entry) = subjects_seen.next().await {
        let (subject, _count) = entry.map_err(read_error)?;
        if subjects::partition_of(&subject).is_some_and(|p| owned.owns(p)) {
            owned_subjects.push(subject);
        }
    }
    let mut silent = Vec::new();
    for subject in owned_subjects {
        let Some(tenant) = subjects::tenant_of(&subject) else {
            continue;
        };
        let last = stream
            .direct_get_last_for_subject(subject)
            .await
            .map_err(read_error)?;
        let last_event_ms =
            i64::try_from(last.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        if last_event_ms < silent_before_ms {
            silent.push(Silent {
                tenant,
                last_event_ms,
            });
        }
    }
    silent.sort_by_key(|s| s.last_event_ms);
    Ok(silent)
}
