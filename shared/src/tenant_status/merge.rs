//! Every replica's record of one tenant, as one state: held if any replica
//! holds it (since the earliest, until the latest), counts of what each
//! replica holds in memory summed, the spill lanes (a stream fact every
//! holder reads alike) by maximum, the latest timestamps.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    ids::TenantId,
    tenant_status::record::{Hold, HoldReason, RECORD_VERSION, StatusRecord, StatusService},
};

/// One replica that reported the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reporter {
    pub service: StatusService,
    pub replica: String,
    pub written_ms: i64,
}

/// The tenant's state across the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantState {
    pub tenant: TenantId,
    pub holds: Vec<Hold>,
    /// Replies (sender) and events (router) in replicas' memory.
    pub queued: u64,
    /// Replies in the sender's spill lanes.
    pub spilled_replies: u64,
    /// Events in the router's spill lane.
    pub spilled_events: u64,
    /// Replies waiting to go out (sender: queued and spilled).
    pub replies_waiting: u64,
    /// Since when replies have been waiting (the earliest replica's).
    pub replies_waiting_since_ms: Option<i64>,
    pub last_event_in_ms: Option<i64>,
    pub last_send_out_ms: Option<i64>,
    pub dead_letters_last_hour: u64,
    pub reporters: Vec<Reporter>,
}

impl TenantState {
    /// A tenant no replica reports anything for (idle, or unknown to the
    /// replicas).
    pub fn nothing_reported(tenant: &TenantId) -> Self {
        Self {
            tenant: tenant.clone(),
            holds: Vec::new(),
            queued: 0,
            spilled_replies: 0,
            spilled_events: 0,
            replies_waiting: 0,
            replies_waiting_since_ms: None,
            last_event_in_ms: None,
            last_send_out_ms: None,
            dead_letters_last_hour: 0,
            reporters: Vec::new(),
        }
    }
}

impl TenantState {
    /// Whether any replica holds the tenant's sends.
    pub fn is_held(&self) -> bool {
        !self.holds.is_empty()
    }
}

/// Merges the records of one tenant; records of another layout version are
/// skipped (a mixed fleet during a deploy). `None` when nothing is left.
pub fn merge(tenant: &TenantId, records: &[StatusRecord]) -> Option<TenantState> {
    let records: Vec<&StatusRecord> = records
        .iter()
        .filter(|r| r.version == RECORD_VERSION && &r.tenant == tenant)
        .collect();
    if records.is_empty() {
        return None;
    }
    let mut holds: BTreeMap<HoldReason, Hold> = BTreeMap::new();
    let mut s = TenantState::nothing_reported(tenant);
    let mut sender_queued = 0;
    for r in records {
        for h in &r.holds {
            holds
                .entry(h.reason)
                .and_modify(|m| {
                    m.since_ms = m.since_ms.min(h.since_ms);
                    m.until_ms = match (m.until_ms, h.until_ms) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                })
                .or_insert_with(|| h.clone());
        }
        s.queued += r.queued;
        match r.service {
            StatusService::Sender => {
                sender_queued += r.queued;
                s.spilled_replies = s.spilled_replies.max(r.spilled);
                s.replies_waiting_since_ms =
                    min_opt(s.replies_waiting_since_ms, r.waiting_since_ms);
            }
            StatusService::Router => s.spilled_events = s.spilled_events.max(r.spilled),
        }
        s.last_event_in_ms = s.last_event_in_ms.max(r.last_event_in_ms);
        s.last_send_out_ms = s.last_send_out_ms.max(r.last_send_out_ms);
        s.dead_letters_last_hour += r.dead_letters_last_hour;
        s.reporters.push(Reporter {
            service: r.service,
            replica: r.replica.clone(),
            written_ms: r.written_ms,
        });
    }
    s.replies_waiting = sender_queued + s.spilled_replies;
    if s.replies_waiting == 0 {
        s.replies_waiting_since_ms = None;
    }
    s.holds = holds.into_values().collect();
    s.reporters
        .sort_by(|a, b| (a.service, &a.replica).cmp(&(b.service, &b.replica)));
    Some(s)
}

/// Merges records of many tenants, one state per tenant, sorted by tenant.
pub fn merge_all(records: &[StatusRecord]) -> Vec<TenantState> {
    let mut by_tenant: BTreeMap<&TenantId, Vec<StatusRecord>> = BTreeMap::new();
    for r in records {
        by_tenant.entry(&r.tenant).or_default().push(r.clone());
    }
    by_tenant
        .into_iter()
        .filter_map(|(tenant, records)| merge(tenant, &records))
        .collect()
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(service: StatusService, replica: &str) -> StatusRecord {
        StatusRecord::new(TenantId::parse("acme").unwrap(), service, replica, 100)
    }

    #[test]
    fn held_if_any_replica_holds_counts_summed_spill_by_maximum() {
        let mut a = rec(StatusService::Sender, "s1");
        a.holds.push(Hold {
            reason: HoldReason::BridgeDisconnected,
            since_ms: 50,
            until_ms: None,
        });
        a.queued = 3;
        a.spilled = 10;
        a.waiting_since_ms = Some(40);
        a.last_send_out_ms = Some(7);
        a.dead_letters_last_hour = 1;
        let mut b = rec(StatusService::Sender, "s2");
        b.holds.push(Hold {
            reason: HoldReason::BridgeDisconnected,
            since_ms: 30,
            until_ms: None,
        });
        b.queued = 2;
        b.spilled = 10;
        b.waiting_since_ms = Some(45);
        b.last_send_out_ms = Some(9);
        b.dead_letters_last_hour = 2;
        let mut r = rec(StatusService::Router, "r1");
        r.last_event_in_ms = Some(99);
        r.queued = 4;
        let s = merge(&a.tenant.clone(), &[a, b, r]).unwrap();
        assert_eq!(s.holds.len(), 1);
        assert_eq!(s.holds[0].since_ms, 30);
        assert_eq!(s.queued, 9);
        assert_eq!(s.replies_waiting, 15);
        assert_eq!(s.replies_waiting_since_ms, Some(40));
        assert_eq!(s.last_send_out_ms, Some(9));
        assert_eq!(s.last_event_in_ms, Some(99));
        assert_eq!(s.dead_letters_last_hour, 3);
        assert_eq!(s.reporters.len(), 3);
    }

    #[test]
    fn a_hold_without_end_outlasts_one_with_an_end_and_unknown_versions_are_skipped() {
        let mut a = rec(StatusService::Sender, "s1");
        a.holds.push(Hold {
            reason: HoldReason::RateLimited,
            since_ms: 1,
            until_ms: Some(5),
        });
        let mut b = a.clone();
        b.replica = "s2".into();
        b.holds[0].until_ms = None;
        let s = merge(&a.tenant.clone(), &[a.clone(), b]).unwrap();
        assert_eq!(s.holds[0].until_ms, None);
        let future = StatusRecord {
            version: RECORD_VERSION + 1,
            ..a.clone()
        };
        assert_eq!(merge(&a.tenant, &[future]), None);
    }
}
