//! `switchyard status TENANT`: one tenant in full, with its verdict line.
//! An unknown tenant is still answered ("unknown tenant", exit 2): what the
//! replicas report of it, if anything, is shown all the same.

use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    channel::Channel,
    cloud_api::{channel as cloud_channel, limits},
    ids::TenantId,
    tenant_status::{Hold, StatusStore, TenantState, merge::merge, record::now_ms},
    tenants,
};

use super::{
    clock::{ago, rfc3339},
    verdict::{Facts, RowFacts, VerdictKind, verdict},
};
use crate::{
    exit::{CliResult, Exit},
    output::{self, Output},
    whatsapp,
};

/// A hold as shown.
#[derive(Debug, Serialize)]
pub struct HoldView {
    pub reason: &'static str,
    pub since: String,
    /// `None`: until lifted.
    pub until: Option<String>,
}

/// A Cloud API tenant's number as Meta last reported it.
#[derive(Debug, Serialize)]
pub struct CloudView {
    pub phone_number_id: String,
    /// `active`, `revoked` (an operator) or `rejected` (Meta): sends are
    /// held unless `active`.
    pub token_state: &'static str,
    /// Meta's quality rating, when one was reported.
    pub quality: Option<String>,
    /// The messaging limit tier (e.g. `TIER_2K`), when one was reported.
    pub messaging_limit: Option<String>,
    /// The send rate the senders schedule the tenant at (its plan, capped
    /// by the number's rate, scaled by the quality rating), e.g.
    /// `30/min (quality RED: 25 % of 120/min; bulk stopped)`.
    pub send_limit: String,
}

/// One replica that reported the tenant.
#[derive(Debug, Serialize)]
pub struct ReporterView {
    pub service: &'static str,
    pub replica: String,
    pub written: String,
}

/// Everything known about one tenant now.
#[derive(Debug, Serialize)]
pub struct TenantView {
    pub tenant: TenantId,
    pub verdict: String,
    pub kind: VerdictKind,
    pub known: bool,
    /// `active` or `suspended` (tenants table).
    pub status: Option<&'static str>,
    pub bridge_state: Option<String>,
    /// The Cloud API number of a Cloud tenant (`None` for WA Bridges).
    pub cloud: Option<CloudView>,
    pub held: bool,
    pub holds: Vec<HoldView>,
    pub replies_waiting: u64,
    pub replies_waiting_since: Option<String>,
    pub queued_in_memory: u64,
    pub spilled_replies: u64,
    pub spilled_events: u64,
    pub chats_in_takeover: usize,
    pub last_event_in: Option<String>,
    pub last_send_out: Option<String>,
    pub dead_letters_last_hour: u64,
    pub reported_by: Vec<ReporterView>,
}

/// Reads and merges what is known about `tenant`.
pub async fn view(
    pool: &PgPool,
    store: Option<&StatusStore>,
    tenant: &TenantId,
) -> CliResult<TenantView> {
    let row = tenants::fetch(pool, tenant).await?;
    let records = match store {
        Some(store) => store
            .tenant(tenant)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the status of {tenant}: {e}"))?,
        None => Vec::new(),
    };
    let state = merge(tenant, &records);
    let chats_in_takeover = if row.is_some() {
        whatsapp::list(pool, tenant).await?.len()
    } else {
        0
    };
    let cloud = match &row {
        Some(r) if r.channel == Channel::CloudApi => cloud_channel::fetch_in(pool, tenant)
            .await?
            .map(|c| CloudView {
                // The senders' own computation (`dispatcher::tenant_refresh`).
                send_limit: limits::effective(r.limits, c.mps, c.quality.as_deref()).explain(),
                phone_number_id: c.phone_number_id,
                token_state: c.token_state.as_str(),
                quality: c.quality,
                messaging_limit: c.messaging_limit,
            }),
        _ => None,
    };
    let now = now_ms();
    let (kind, line) = verdict(&Facts {
        row: row.as_ref().map(RowFacts::from),
        state: state.as_ref(),
        chats_in_takeover,
        now_ms: now,
    });
    let s = state.unwrap_or_else(|| TenantState::nothing_reported(tenant));
    Ok(TenantView {
        tenant: tenant.clone(),
        verdict: line,
        kind,
        known: row.is_some(),
        status: row.as_ref().map(|r| r.status.as_str()),
        bridge_state: row.as_ref().map(|r| r.bridge_state.as_str().to_owned()),
        cloud,
        held: s.is_held(),
        holds: s.holds.iter().map(hold_view).collect(),
        replies_waiting: s.replies_waiting,
        replies_waiting_since: s.replies_waiting_since_ms.map(rfc3339),
        queued_in_memory: s.queued,
        spilled_replies: s.spilled_replies,
        spilled_events: s.spilled_events,
        chats_in_takeover,
        last_event_in: s.last_event_in_ms.map(rfc3339),
        last_send_out: s.last_send_out_ms.map(rfc3339),
        dead_letters_last_hour: s.dead_letters_last_hour,
        reported_by: s
            .reporters
            .iter()
            .map(|r| ReporterView {
                service: r.service.as_str(),
                replica: r.replica.clone(),
                written: format!("{} ago", ago(r.written_ms, now)),
            })
            .collect(),
    })
}

fn hold_view(h: &Hold) -> HoldView {
    HoldView {
        reason: h.reason.as_str(),
        since: rfc3339(h.since_ms),
        until: h.until_ms.map(rfc3339),
    }
}

pub async fn run(
    pool: &PgPool,
    store: Option<&StatusStore>,
    tenant: &TenantId,
    out: &mut Output,
) -> CliResult<Exit> {
    let v = view(pool, store, tenant).await?;
    out.emit(&v, |w| {
        writeln!(w, "{}: {}", v.tenant, v.verdict)?;
        let mut t = output::table(["field", "value"]);
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".to_owned());
        let mut rows = vec![
            ("tenant status", v.status.unwrap_or("-").to_owned()),
            ("bridge state", opt(&v.bridge_state)),
        ];
        if let Some(c) = &v.cloud {
            rows.extend([
                ("cloud number", c.phone_number_id.clone()),
                ("  token", c.token_state.to_owned()),
                ("  quality", opt(&c.quality)),
                ("  messaging limit", opt(&c.messaging_limit)),
                ("  send limit", c.send_limit.clone()),
            ]);
        }
        rows.extend([
            ("replies waiting", v.replies_waiting.to_string()),
            ("  waiting since", opt(&v.replies_waiting_since)),
            ("  in memory", v.queued_in_memory.to_string()),
            ("  spilled", v.spilled_replies.to_string()),
            ("events spilled (router)", v.spilled_events.to_string()),
            ("chats in takeover", v.chats_in_takeover.to_string()),
            ("last event in", opt(&v.last_event_in)),
            ("last reply out", opt(&v.last_send_out)),
            ("dead letters (1 h)", v.dead_letters_last_hour.to_string()),
        ]);
        for (field, value) in rows {
            t.add_row(vec![field.to_owned(), value]);
        }
        output::write_table(w, &t)?;
        if !v.holds.is_empty() {
            let mut t = output::table(["hold", "since", "until"]);
            for h in &v.holds {
                t.add_row(vec![
                    h.reason.to_owned(),
                    h.since.clone(),
                    h.until.clone().unwrap_or_else(|| "until lifted".to_owned()),
                ]);
            }
            output::write_table(w, &t)?;
        }
        let mut t = output::table(["reported by", "replica", "written"]);
        for r in &v.reported_by {
            t.add_row(vec![
                r.service.to_owned(),
                r.replica.clone(),
                r.written.clone(),
            ]);
        }
        output::write_table(w, &t)
    })?;
    Ok(if v.known { Exit::Ok } else { Exit::Usage })
}
