//! `switchyard status`: the fleet at a glance. Bridge states come from the
//! tenants table (one grouped count), holds and backlogs from every record
//! in the status bucket (only active tenants and those with recent activity
//! have one, so the bucket holds far fewer keys than there are tenants).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    ids::TenantId,
    tenant_status::{HoldReason, StatusStore, merge::merge_all, record::now_ms},
};

use super::clock::{ago, rfc3339};
use crate::{
    exit::{CliResult, Exit},
    output::{self, Output},
};

/// A backlogged tenant.
#[derive(Debug, Serialize)]
pub struct Backlog {
    pub tenant: TenantId,
    pub replies_waiting: u64,
    pub waiting_since: Option<String>,
    pub holds: Vec<&'static str>,
}

/// The oldest waiting reply.
#[derive(Debug, Serialize)]
pub struct OldestWaiting {
    pub tenant: TenantId,
    pub since: String,
    pub waiting_seconds: i64,
}

/// The fleet now.
#[derive(Debug, Serialize)]
pub struct FleetStatus {
    /// Tenants by `bridge_state` (tenants table).
    pub bridge_states: BTreeMap<String, u64>,
    /// Held tenants by reason (a tenant held for two reasons counts in both).
    pub held_by_reason: BTreeMap<&'static str, u64>,
    pub held_tenants: u64,
    /// Tenants any replica reports (held, waiting or recently active).
    pub tenants_reported: u64,
    /// Replicas reporting, by service.
    pub replicas: BTreeMap<&'static str, u64>,
    pub replies_waiting: u64,
    pub largest_backlogs: Vec<Backlog>,
    pub oldest_waiting: Option<OldestWaiting>,
}

pub async fn view(
    pool: &PgPool,
    store: Option<&StatusStore>,
    top: usize,
) -> CliResult<FleetStatus> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT bridge_state, count(*) FROM tenants WHERE channel = 'wabridges' GROUP BY 1 ORDER BY 1")
            .fetch_all(pool)
            .await?;
    let records = match store {
        Some(store) => store
            .all()
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the tenant status bucket: {e}"))?,
        None => Vec::new(),
    };
    let now = now_ms();
    let states = merge_all(&records);
    let mut held_by_reason: BTreeMap<&'static str, u64> =
        HoldReason::ALL.iter().map(|r| (r.as_str(), 0)).collect();
    for s in &states {
        for h in &s.holds {
            *held_by_reason.entry(h.reason.as_str()).or_default() += 1;
        }
    }
    let replicas: BTreeSet<(&'static str, &str)> = records
        .iter()
        .map(|r| (r.service.as_str(), r.replica.as_str()))
        .collect();
    let mut by_service: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (service, _) in replicas {
        *by_service.entry(service).or_default() += 1;
    }
    let mut backlogged: Vec<_> = states.iter().filter(|s| s.replies_waiting > 0).collect();
    backlogged.sort_by(|a, b| {
        b.replies_waiting
            .cmp(&a.replies_waiting)
            .then_with(|| a.tenant.cmp(&b.tenant))
    });
    let oldest = backlogged
        .iter()
        .filter_map(|s| s.replies_waiting_since_ms.map(|since| (since, &s.tenant)))
        .min()
        .map(|(since, tenant)| OldestWaiting {
            tenant: tenant.clone(),
            since: rfc3339(since),
            waiting_seconds: (now - since).max(0) / 1000,
        });
    Ok(FleetStatus {
        bridge_states: rows
            .into_iter()
            .map(|(state, n)| (state, u64::try_from(n).unwrap_or(0)))
            .collect(),
        held_by_reason,
        held_tenants: states.iter().filter(|s| s.is_held()).count() as u64,
        tenants_reported: states.len() as u64,
        replicas: by_service,
        replies_waiting: states.iter().map(|s| s.replies_waiting).sum(),
        largest_backlogs: backlogged
            .into_iter()
            .take(top)
            .map(|s| Backlog {
                tenant: s.tenant.clone(),
                replies_waiting: s.replies_waiting,
                waiting_since: s.replies_waiting_since_ms.map(rfc3339),
                holds: s.holds.iter().map(|h| h.reason.as_str()).collect(),
            })
            .collect(),
        oldest_waiting: oldest,
    })
}

pub async fn run(
    pool: &PgPool,
    store: Option<&StatusStore>,
    top: usize,
    out: &mut Output,
) -> CliResult<Exit> {
    let f = view(pool, store, top).await?;
    let now = now_ms();
    out.emit(&f, |w| {
        let mut t = output::table(["bridge state", "tenants"]);
        for (state, n) in &f.bridge_states {
            t.add_row(vec![state.clone(), n.to_string()]);
        }
        output::write_table(w, &t)?;
        let mut t = output::table(["hold reason", "tenants"]);
        for (reason, n) in &f.held_by_reason {
            t.add_row(vec![(*reason).to_owned(), n.to_string()]);
        }
        output::write_table(w, &t)?;
        let mut t = output::table([
            "largest backlogs",
            "replies waiting",
            "waiting since",
            "held",
        ]);
        for b in &f.largest_backlogs {
            t.add_row(vec![
                b.tenant.to_string(),
                b.replies_waiting.to_string(),
                b.waiting_since.clone().unwrap_or_else(|| "-".to_owned()),
                if b.holds.is_empty() {
                    "-".to_owned()
                } else {
                    b.holds.join(", ")
                },
            ]);
        }
        output::write_table(w, &t)?;
        let replicas: Vec<String> = f
            .replicas
            .iter()
            .map(|(s, n)| format!("{n} {s} replica(s)"))
            .collect();
        writeln!(
            w,
            "{} tenant(s) reported by {}; {} held; {} replies waiting",
            f.tenants_reported,
            if replicas.is_empty() {
                "no replica".to_owned()
            } else {
                replicas.join(", ")
            },
            f.held_tenants,
            f.replies_waiting
        )?;
        match &f.oldest_waiting {
            Some(o) => writeln!(
                w,
                "oldest waiting reply: {} (waiting {})",
                o.tenant,
                ago(now - o.waiting_seconds * 1000, now)
            ),
            None => writeln!(w, "no reply waiting"),
        }
    })?;
    Ok(Exit::Ok)
}
