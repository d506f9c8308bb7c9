//! One replica's record of one tenant: what that replica alone holds. Times
//! are wall-clock Unix milliseconds (replicas and the CLI compare them), and
//! `version` lets a newer CLI read an older replica's records (and refuse,
//! rather than misread, a record from the future).

use serde::{Deserialize, Serialize};

use crate::ids::TenantId;

/// The record layout this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// The service that wrote a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusService {
    Router,
    Sender,
}

impl StatusService {
    /// The key token and display name.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusService::Router => "router",
            StatusService::Sender => "sender",
        }
    }
}

/// Why a tenant's replies are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// The bridge reported `disconnected`.
    BridgeDisconnected,
    /// The provider answered 401/403: an operator must look.
    Unauthorized,
    /// The number is restricted by WhatsApp.
    Restricted,
    /// An operator paused the tenant.
    Operator,
    /// The tenant's bridge failed; waiting out the retry delay.
    Backoff,
    /// The provider answered 429: every send waits for its Retry-After (or the
    /// shared fleet budget is spent).
    RateLimited,
    /// The provider itself looks down: every send waits for a probe to pass.
    ProviderOutage,
}

impl HoldReason {
    /// Every reason, once, in display order.
    pub const ALL: [HoldReason; 7] = [
        HoldReason::BridgeDisconnected,
        HoldReason::Unauthorized,
        HoldReason::Restricted,
        HoldReason::Operator,
        HoldReason::Backoff,
        HoldReason::RateLimited,
        HoldReason::ProviderOutage,
    ];

    /// The stable name (JSON, tables).
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::BridgeDisconnected => "bridge_disconnected",
            HoldReason::Unauthorized => "unauthorized",
            HoldReason::Restricted => "restricted",
            HoldReason::Operator => "operator",
            HoldReason::Backoff => "backoff",
            HoldReason::RateLimited => "rate_limited",
            HoldReason::ProviderOutage => "provider_outage",
        }
    }

    /// How an operator reads it in a verdict line.
    pub fn describe(self) -> &'static str {
        match self {
            HoldReason::BridgeDisconnected => "bridge disconnected",
            HoldReason::Unauthorized => "provider refused the key (401/403)",
            HoldReason::Restricted => "number restricted",
            HoldReason::Operator => "paused by an operator",
            HoldReason::Backoff => "bridge failing, backing off",
            HoldReason::RateLimited => "provider rate limit (429)",
            HoldReason::ProviderOutage => "provider outage",
        }
    }
}

/// One hold, since when (first seen by the replica) and until when (`None`:
/// until lifted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub reason: HoldReason,
    pub since_ms: i64,
    pub until_ms: Option<i64>,
}

/// What one replica holds for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub version: u32,
    pub tenant: TenantId,
    pub service: StatusService,
    pub replica: String,
    /// When the replica wrote this record.
    pub written_ms: i64,
    pub holds: Vec<Hold>,
    /// Messages in this replica's memory for the tenant (queued in its lanes).
    pub queued: u64,
    /// Messages in the tenant's spill lanes (a stream fact: merged by maximum).
    pub spilled: u64,
    /// Since when the tenant has had work waiting here, continuously.
    pub waiting_since_ms: Option<i64>,
    pub last_event_in_ms: Option<i64>,
    pub last_send_out_ms: Option<i64>,
    /// Dead letters this replica wrote for the tenant in the last hour.
    pub dead_letters_last_hour: u64,
}

impl StatusRecord {
    /// A record with nothing in it yet.
    pub fn new(
        tenant: TenantId,
        service: StatusService,
        replica: &str,
        written_ms: i64,
    ) -> StatusRecord {
        StatusRecord {
            version: RECORD_VERSION,
            tenant,
            service,
            replica: replica.to_owned(),
            written_ms,
            holds: Vec::new(),
            queued: 0,
            spilled: 0,
            waiting_since_ms: None,
            last_event_in_ms: None,
            last_send_out_ms: None,
            dead_letters_last_hour: 0,
        }
    }

    /// Whether the record has anything worth refreshing (an idle tenant's
    /// last record is written once and then left to expire).
    pub fn is_active(&self) -> bool {
        !self.holds.is_empty() || self.queued > 0 || self.spilled > 0
    }

    /// The same record without its write time: two records that differ only
    /// in this say the same thing.
    pub fn same_news(&self, other: &StatusRecord) -> bool {
        StatusRecord {
            written_ms: 0,
            ..self.clone()
        } == StatusRecord {
            written_ms: 0,
            ..other.clone()
        }
    }

    /// The same state, but for when traffic was last seen: a tenant's last
    /// event or send moving on is not worth a write of its own (every busy
    /// tenant's record would be rewritten every cycle, a JetStream write per
    /// tenant and service every 2 s: as many as the events themselves at 1
    /// event/s per tenant, issue 20). The first one seen still is.
    pub fn same_state(&self, other: &StatusRecord) -> bool {
        let seen = |a: Option<i64>, b: Option<i64>| if a.is_some() == b.is_some() { b } else { a };
        StatusRecord {
            last_event_in_ms: seen(self.last_event_in_ms, other.last_event_in_ms),
            last_send_out_ms: seen(self.last_send_out_ms, other.last_send_out_ms),
            ..self.clone()
        }
        .same_news(other)
    }
}

/// Wall-clock Unix milliseconds now.
pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_json_with_its_version() {
        let mut r = StatusRecord::new(
            TenantId::parse("acme").unwrap(),
            StatusService::Sender,
            "sender-1",
            5,
        );
        r.holds.push(Hold {
            reason: HoldReason::RateLimited,
            since_ms: 1,
            until_ms: Some(9),
        });
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"version\":1"), "{json}");
        assert!(json.contains("\"rate_limited\""), "{json}");
        assert_eq!(serde_json::from_str::<StatusRecord>(&json).unwrap(), r);
    }

    #[test]
    fn only_the_write_time_is_not_news() {
        let t = TenantId::parse("acme").unwrap();
        let a = StatusRecord::new(t.clone(), StatusService::Router, "r", 1);
        let b = StatusRecord::new(t, StatusService::Router, "r", 2);
        assert!(a.same_news(&b));
        let c = StatusRecord { queued: 1, ..b };
        assert!(!a.same_news(&c));
        assert!(c.is_active());
    }

    #[test]
    fn traffic_moving_on_is_the_same_state_but_traffic_first_seen_is_not() {
        let t = TenantId::parse("acme").unwrap();
        let quiet = StatusRecord::new(t, StatusService::Sender, "s", 1);
        let sent = StatusRecord {
            last_send_out_ms: Some(10),
            ..quiet.clone()
        };
        let sent_again = StatusRecord {
            last_send_out_ms: Some(20),
            last_event_in_ms: None,
            ..sent.clone()
        };
        assert!(!quiet.same_state(&sent), "the first send is news");
        assert!(sent.same_state(&sent_again));
        assert!(!sent.same_news(&sent_again), "still a different record");
        let and_queued = StatusRecord {
            queued: 2,
            ..sent_again.clone()
        };
        assert!(!sent.same_state(&and_queued));
    }
}
