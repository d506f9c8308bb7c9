//! The verdict line: the answer to "why is this tenant not getting answers?"
//! in one line, from the merged state, the tenant's row and its takeovers.
//! Pure, so every case is a unit test.

use serde::Serialize;
use switchyard_shared::{tenant_status::TenantState, tenants::Tenant};

use super::clock::{ago, hh_mm};

/// Which kind of answer it is (scripts branch on this, people read the line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// No such tenant in the tenants table.
    Unknown,
    /// The tenant is suspended: its events are dropped at ingest.
    Suspended,
    /// A replica holds its sends (bridge, restriction, 401, 429, outage…),
    /// or the tenants table says its bridge is disconnected.
    Held,
    /// Replies are waiting, nothing holds them: they are on their way.
    Backlog,
    /// The bot is silent in some chats because a person answered.
    Takeover,
    /// Replies go out.
    Ok,
    /// Nothing reported by any replica lately.
    Idle,
}

/// What the tenants table says.
#[derive(Debug, Clone, Copy)]
pub struct RowFacts {
    pub active: bool,
    pub bridge_disconnected: bool,
}

impl From<&Tenant> for RowFacts {
    fn from(row: &Tenant) -> Self {
        Self {
            active: row.is_active(),
            bridge_disconnected: row.bridge_state.holds_sends(),
        }
    }
}

/// What the verdict is made of.
#[derive(Debug)]
pub struct Facts<'a> {
    /// `None`: no such tenant.
    pub row: Option<RowFacts>,
    pub state: Option<&'a TenantState>,
    pub chats_in_takeover: usize,
    pub now_ms: i64,
}

/// The verdict and its line.
pub fn verdict(f: &Facts<'_>) -> (VerdictKind, String) {
    let Some(row) = f.row else {
        return (VerdictKind::Unknown, "unknown tenant".to_owned());
    };
    let waiting = f.state.map_or(0, |s| s.replies_waiting);
    let takeover = (f.chats_in_takeover > 0).then(|| {
        format!(
            "bot silent in {} chat(s) (human takeover)",
            f.chats_in_takeover
        )
    });
    let with_takeover = |line: String| match &takeover {
        Some(t) => format!("{line}; {t}"),
        None => line,
    };
    if !row.active {
        return (
            VerdictKind::Suspended,
            "suspended: its events are dropped at ingest".to_owned(),
        );
    }
    if let Some(s) = f.state.filter(|s| s.is_held()) {
        let holds: Vec<String> = s
            .holds
            .iter()
            .map(|h| {
                let mut part = format!("{} since {}", h.reason.describe(), hh_mm(h.since_ms));
                if let Some(until) = h.until_ms {
                    part.push_str(&format!(" (until {})", hh_mm_ss(until)));
                }
                part
            })
            .collect();
        return (
            VerdictKind::Held,
            with_takeover(format!(
                "held: {}, {waiting} replies waiting",
                holds.join(" and ")
            )),
        );
    }
    if row.bridge_disconnected {
        return (
            VerdictKind::Held,
            with_takeover(format!(
                "held: bridge disconnected (tenants table), {waiting} replies waiting"
            )),
        );
    }
    if waiting > 0 {
        let since = f
            .state
            .and_then(|s| s.replies_waiting_since_ms)
            .map_or_else(String::new, |ms| format!(" for {}", ago(ms, f.now_ms)));
        return (
            VerdictKind::Backlog,
            with_takeover(format!(
                "backlog: {waiting} replies waiting{since}, not held"
            )),
        );
    }
    if let Some(t) = takeover {
        return (VerdictKind::Takeover, format!("takeover: {t}"));
    }
    match f.state {
        Some(s) if s.last_send_out_ms.is_some() => (
            VerdictKind::Ok,
            format!(
                "ok: last reply sent {} ago",
                ago(s.last_send_out_ms.unwrap_or_default(), f.now_ms)
            ),
        ),
        Some(s) if s.last_event_in_ms.is_some() => (
            VerdictKind::Ok,
            format!(
                "ok: last event in {} ago, nothing waiting",
                ago(s.last_event_in_ms.unwrap_or_default(), f.now_ms)
            ),
        ),
        _ => (
            VerdictKind::Idle,
            "idle: no replica reports activity for it lately".to_owned(),
        ),
    }
}

fn hh_mm_ss(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(60);
    format!("{}:{secs:02}", hh_mm(ms))
}

#[cfg(test)]
mod tests {
    use switchyard_shared::{
        ids::TenantId,
        tenant_status::{Hold, HoldReason, StatusRecord, StatusService, merge::merge},
    };

    use super::*;

    fn row(active: bool, bridge_disconnected: bool) -> RowFacts {
        RowFacts {
            active,
            bridge_disconnected,
        }
    }

    fn state(edit: impl FnOnce(&mut StatusRecord)) -> TenantState {
        let mut r = StatusRecord::new(
            TenantId::parse("acme").unwrap(),
            StatusService::Sender,
            "s1",
            0,
        );
        edit(&mut r);
        merge(&r.tenant.clone(), &[r]).unwrap()
    }

    fn line(row: Option<RowFacts>, state: Option<&TenantState>, takeovers: usize) -> String {
        verdict(&Facts {
            row,
            state,
            chats_in_takeover: takeovers,
            now_ms: 12 * 3_600_000 + 10 * 60_000,
        })
        .1
    }

    #[test]
    fn each_situation_reads_as_one_line() {
        let connected = row(true, false);
        assert_eq!(line(None, None, 0), "unknown tenant");
        let held = state(|r| {
            r.holds.push(Hold {
                reason: HoldReason::BridgeDisconnected,
                since_ms: 12 * 3_600_000 + 4 * 60_000,
                until_ms: None,
            });
            r.queued = 37;
        });
        assert_eq!(
            line(Some(connected), Some(&held), 0),
            "held: bridge disconnected since 12:04, 37 replies waiting"
        );
        let backlog = state(|r| {
            r.queued = 5;
            r.waiting_since_ms = Some(12 * 3_600_000 + 9 * 60_000);
        });
        assert_eq!(
            line(Some(connected), Some(&backlog), 2),
            "backlog: 5 replies waiting for 60 s, not held; bot silent in 2 chat(s) (human takeover)"
        );
        let sent = state(|r| r.last_send_out_ms = Some(12 * 3_600_000 + 10 * 60_000 - 3_000));
        assert_eq!(
            line(Some(connected), Some(&sent), 0),
            "ok: last reply sent 3 s ago"
        );
        assert!(line(Some(connected), None, 1).starts_with("takeover: "));
        assert!(line(Some(connected), None, 0).starts_with("idle: "));
        assert!(
            line(Some(row(true, true)), None, 0)
                .starts_with("held: bridge disconnected (tenants table)")
        );
        assert!(line(Some(row(false, false)), Some(&held), 0).starts_with("suspended"));
    }
}
