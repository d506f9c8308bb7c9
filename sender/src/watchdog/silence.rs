//! Which bridges have been silent: the INBOUND stream's message count per
//! tenant subject, read every round (one paged `STREAM.INFO`, the call the
//! sender may already make), and when each count last grew. Every webhook
//! ingest accepts, of any kind (`connected` included), adds one.
//!
//! Counts, not messages: the sender must not read inbound payloads (customer
//! messages; `deploy/nats/permissions.conf`), and a count is all the
//! watchdog needs. The times live in memory: after a restart, or when a
//! partition moves here, a tenant counts as heard from at first sight, so
//! its first probe comes one silence period later (never a false alarm). A
//! count that shrinks (old events aging out) is not activity. An event that
//! arrives while another ages out in the same round is missed; that costs at
//! most one needless probe, which finds the bridge connected.
//!
//! Only the tenants of the partitions this replica owns are kept, so one
//! replica acts for each tenant. A tenant with no event left in the stream
//! (quiet for longer than `SWITCHYARD_STREAM_MAX_AGE`, 7 days by default)
//! has no subject to count: the tenants whose bridge is believed connected
//! are listed from the database too ([`quiet_connected`]) and count as a
//! subject with nothing in it, heard from when first seen. Which replica
//! acts for such a tenant is decided by a hash of its id over the
//! partitions (its real partition is NATS's to compute, from a subject it
//! does not have yet); every replica computes the same.

use std::collections::HashMap;

use futures::StreamExt as _;
use switchyard_shared::{
    ids::TenantId,
    lanes::work::PartitionShare,
    subjects::{self, Direction},
};

/// The stream could not be read (the round is skipped, the next one retries).
#[derive(Debug, thiserror::Error)]
#[error("cannot read the inbound stream's subject counts: {0}")]
pub(super) struct ReadError(String);

fn read_error(e: impl std::fmt::Display) -> ReadError {
    ReadError(e.to_string())
}

/// Message counts of the owned tenants' inbound subjects.
pub(super) async fn owned_counts(
    js: &async_nats::jetstream::Context,
    owned: &PartitionShare,
) -> Result<Vec<(TenantId, u64)>, ReadError> {
    let stream = js
        .get_stream_no_info(Direction::Inbound.stream())
        .await
        .map_err(read_error)?;
    let mut counts = stream
        .info_with_subjects(subjects::all_partitions_filter(Direction::Inbound))
        .await
        .map_err(read_error)?;
    let mut out = Vec::new();
    while let Some(entry) = counts.next().await {
        let (subject, count) = entry.map_err(read_error)?;
        if subjects::partition_of(&subject).is_some_and(|p| owned.owns(p))
            && let Some(tenant) = subjects::tenant_of(&subject)
        {
            out.push((tenant, count as u64));
        }
    }
    Ok(out)
}

/// The tenants whose bridge is believed connected, that `counted` does not
/// list and that this replica acts for (see the module docs), each with a
/// count of 0.
pub(super) async fn quiet_connected(
    db: &sqlx::PgPool,
    owned: &PartitionShare,
    counted: &[(TenantId, u64)],
) -> Result<Vec<(TenantId, u64)>, ReadError> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT tenant_id FROM switchyard_connected_bridges()")
            .fetch_all(db)
            .await
            .map_err(read_error)?;
    let listed: std::collections::HashSet<&TenantId> = counted.iter().map(|(t, _)| t).collect();
    Ok(ids
        .iter()
        .filter_map(|id| TenantId::parse(id).ok())
        .filter(|t| !listed.contains(t) && owned.owns(owned.stable_partition(t.as_str())))
        .map(|t| (t, 0))
        .collect())
}

/// When each owned tenant was last heard from, as far as this replica saw.
#[derive(Debug, Default)]
pub(super) struct LastHeard {
    /// Tenant → (its last count, when it last grew or was first seen, unix ms).
    tenants: HashMap<TenantId, (u64, i64)>,
}

impl LastHeard {
    /// Takes a round's counts at `now_ms`; tenants no longer listed (aged
    /// out, or their partition moved away) are forgotten.
    pub(super) fn observe(&mut self, counts: Vec<(TenantId, u64)>, now_ms: i64) {
        let mut next = HashMap::with_capacity(counts.len());
        for (tenant, count) in counts {
            let heard = match self.tenants.get(&tenant) {
                Some(&(before, at)) if count <= before => at,
                _ => now_ms,
            };
            next.insert(tenant, (count, heard));
        }
        self.tenants = next;
    }

    /// The tenants not heard from since before `silent_before_ms`, longest silent first.
    pub(super) fn silent_since(&self, silent_before_ms: i64) -> Vec<TenantId> {
        let mut silent: Vec<(i64, &TenantId)> = self
            .tenants
            .iter()
            .filter(|(_, (_, at))| *at < silent_before_ms)
            .map(|(tenant, (_, at))| (*at, tenant))
            .collect();
        silent.sort();
        silent.into_iter().map(|(_, t)| t.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(raw: &str) -> TenantId {
        TenantId::parse(raw).unwrap()
    }

    #[test]
    fn a_tenant_is_silent_once_its_count_stops_growing_for_the_threshold() {
        let mut heard = LastHeard::default();
        heard.observe(vec![(t("quiet"), 3), (t("chatty"), 3)], 1_000);
        heard.observe(vec![(t("quiet"), 3), (t("chatty"), 4)], 5_000);
        assert_eq!(heard.silent_since(2_000), vec![t("quiet")]);
        assert!(
            heard.silent_since(1_000).is_empty(),
            "first sight counts as heard"
        );
    }

    #[test]
    fn events_aging_out_are_not_activity() {
        let mut heard = LastHeard::default();
        heard.observe(vec![(t("old"), 9)], 1_000);
        heard.observe(vec![(t("old"), 2)], 5_000);
        assert_eq!(heard.silent_since(2_000), vec![t("old")]);
        // ... but an event after that is.
        heard.observe(vec![(t("old"), 3)], 6_000);
        assert!(heard.silent_since(5_500).is_empty());
    }

    #[test]
    fn the_longest_silent_come_first_and_unlisted_tenants_are_forgotten() {
        let mut heard = LastHeard::default();
        heard.observe(vec![(t("a"), 1)], 1_000);
        heard.observe(vec![(t("a"), 1), (t("b"), 1), (t("gone"), 1)], 2_000);
        heard.observe(vec![(t("a"), 1), (t("b"), 1)], 3_000);
        assert_eq!(heard.silent_since(10_000), vec![t("a"), t("b")]);
    }
}
