//! `fleet stuck [--older-than 24h]`: tenant bridges that have waited too long
//! for a QR scan or a link code (provisioned, never reported connected) or
//! whose session dropped and has not come back. Read from the tenants table
//! only (the state the `connected`/`disconnected` webhooks and `fleet
//! reconcile` record, and when it was last recorded), so listing never
//! spends the provider's budget. Exit 3 when any bridge is stuck, for cron.
//!
//! `--notify` also tells each stuck tenant (`pairing.stuck`, through the
//! notifier: signed, retried, never on the provider's budget) — the nudge the
//! fleet guide asks for. Each tenant's nudge has one `webhook-id` per stuck
//! episode and day: a run repeated within the stream's duplicate window is
//! stored once, a later run the same day posts it again under the same id
//! (a receiver that deduplicates by `webhook-id`, as Standard Webhooks asks,
//! sees it once a day); tenants without a notification URL are listed as not
//! told.

use std::time::Duration;

use clap::Args;
use serde::Serialize;
use sqlx::{PgPool, Row as _};
use switchyard_shared::{
    ids::TenantId,
    notifications::{self, Notification, NotificationEvent, target},
    wabridges::BridgeState,
};

use crate::{
    context::Context,
    exit::{CliResult, Exit},
    output::{self, Output},
};

#[derive(Debug, Args)]
pub struct StuckArgs {
    /// Only bridges in their state for at least this long (e.g. 30m, 24h, 3d).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub older_than: Duration,
    /// Tell each stuck tenant that has a notification URL (`pairing.stuck`).
    #[arg(long)]
    pub notify: bool,
}

pub use switchyard_shared::bridge_state::StuckKind;

/// How the table names a kind, and what the operator should do.
trait StuckKindText {
    fn label(self) -> &'static str;
    fn next_step(self, tenant: &TenantId) -> String;
}

impl StuckKindText for StuckKind {
    fn label(self) -> &'static str {
        match self {
            Self::AwaitingPairing => "awaiting pairing",
            Self::Disconnected => "disconnected",
        }
    }

    /// What the operator should do.
    fn next_step(self, tenant: &TenantId) -> String {
        match self {
            Self::AwaitingPairing => format!("fleet pair {tenant}"),
            Self::Disconnected => format!("phone online? else fleet pair {tenant}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StuckBridge {
    pub tenant: TenantId,
    /// The tenant's name, the contact the tenants table holds.
    pub display_name: String,
    pub bridge_id: i64,
    pub state: BridgeState,
    pub kind: StuckKind,
    /// How long it has been in this state (seconds), as far as recorded.
    pub for_seconds: u64,
    /// Whether the number was ever paired (a re-pair rather than a first pairing).
    pub ever_paired: bool,
    pub next_step: String,
    /// When the state was recorded: the stuck episode's identity.
    #[serde(skip)]
    pub state_at: time::OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct StuckReport {
    pub older_than_seconds: u64,
    pub stuck: Vec<StuckBridge>,
    /// With `--notify`: who was told, and who has no notification URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notified: Option<Nudges>,
}

/// What `--notify` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Nudges {
    /// Stored for the notifier (it posts them to the tenants' URLs).
    pub told: Vec<TenantId>,
    /// No notification URL: nothing to tell them through.
    pub no_url: Vec<TenantId>,
    /// The NOTIFY stream did not take it (retried 3 times; run again).
    pub failed: Vec<TenantId>,
}

/// Tenant bridges stuck for at least `older_than`, longest first.
pub async fn stuck(pool: &PgPool, older_than: Duration) -> CliResult<Vec<StuckBridge>> {
    let rows = sqlx::query(
        "SELECT id, display_name, bridge_id, bridge_state, paired_at IS NOT NULL AS ever_paired, \
         COALESCE(bridge_state_at, created_at) AS state_at, \
         GREATEST(0, EXTRACT(EPOCH FROM (now() - COALESCE(bridge_state_at, created_at))))::bigint \
           AS for_seconds \
         FROM tenants WHERE bridge_id IS NOT NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let mut found = Vec::new();
    for row in rows {
        let state = BridgeState::parse(row.try_get::<&str, _>("bridge_state")?);
        let Some(kind) = StuckKind::of(&state) else {
            continue;
        };
        let for_seconds = u64::try_from(row.try_get::<i64, _>("for_seconds")?).unwrap_or(0);
        if for_seconds < older_than.as_secs() {
            continue;
        }
        let tenant = TenantId::parse(row.try_get::<&str, _>("id")?)
            .map_err(|e| anyhow::anyhow!("invalid tenant id in the table: {e}"))?;
        found.push(StuckBridge {
            next_step: kind.next_step(&tenant),
            display_name: row.try_get("display_name")?,
            bridge_id: row.try_get("bridge_id")?,
            state,
            kind,
            for_seconds,
            ever_paired: row.try_get("ever_paired")?,
            state_at: row.try_get("state_at")?,
            tenant,
        });
    }
    found.sort_by_key(|s| std::cmp::Reverse(s.for_seconds));
    Ok(found)
}

/// `3h 12m`-style, to the minute (seconds below one minute).
fn age(seconds: u64) -> String {
    let rounded = if seconds >= 60 {
        seconds - seconds % 60
    } else {
        seconds
    };
    humantime::format_duration(Duration::from_secs(rounded)).to_string()
}

/// Tells each of `stuck` that has a notification URL, under one id per episode and day.
async fn nudge(pool: &PgPool, ctx: &Context, stuck: &[StuckBridge]) -> CliResult<Nudges> {
    let with_url = target::enabled(pool).await?;
    let js = ctx.jetstream().await?;
    let now = time::OffsetDateTime::now_utc();
    let mut nudges = Nudges::default();
    for s in stuck {
        if !with_url.contains(&s.tenant) {
            nudges.no_url.push(s.tenant.clone());
            continue;
        }
        let event = NotificationEvent::PairingStuck {
            kind: s.kind,
            for_seconds: s.for_seconds,
        };
        let fact = nudge_fact(s.state_at, now);
        let notification = Notification::new(s.tenant.clone(), now, event, &fact);
        if notifications::publish(&js, &notification).await {
            nudges.told.push(s.tenant.clone());
        } else {
            nudges.failed.push(s.tenant.clone());
        }
    }
    Ok(nudges)
}

/// The nudge's identity: the episode (its state's recording time) and the
/// day, so a repeat on the same day is stored once and a daily run tells again.
fn nudge_fact(state_at: time::OffsetDateTime, now: time::OffsetDateTime) -> String {
    format!("{}:nudge:{}", state_at.unix_timestamp_nanos(), now.date())
}

pub async fn run(args: StuckArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    let stuck = stuck(&pool, args.older_than).await?;
    let notified = if args.notify {
        Some(nudge(&pool, ctx, &stuck).await?)
    } else {
        None
    };
    let report = StuckReport {
        older_than_seconds: args.older_than.as_secs(),
        stuck,
        notified,
    };
    out.emit(&report, |w| {
        if !report.stuck.is_empty() {
            let mut t = output::table(["tenant", "contact", "bridge", "stuck", "for", "next step"]);
            for s in &report.stuck {
                t.add_row(vec![
                    s.tenant.to_string(),
                    s.display_name.clone(),
                    s.bridge_id.to_string(),
                    match (&s.state, s.ever_paired) {
                        (BridgeState::Other(raw), _) => format!("{} ({raw})", s.kind.label()),
                        (_, true) => format!("{} (was paired)", s.kind.label()),
                        (_, false) => s.kind.label().to_owned(),
                    },
                    age(s.for_seconds),
                    s.next_step.clone(),
                ]);
            }
            output::write_table(w, &t)?;
        }
        writeln!(
            w,
            "{} bridge(s) stuck for at least {}",
            report.stuck.len(),
            humantime::format_duration(args.older_than)
        )?;
        if let Some(n) = &report.notified {
            let names = |ids: &[TenantId]| {
                ids.iter()
                    .map(TenantId::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            writeln!(w, "told (pairing.stuck): {}", names(&n.told))?;
            if !n.no_url.is_empty() {
                writeln!(w, "not told, no notification URL: {}", names(&n.no_url))?;
            }
            if !n.failed.is_empty() {
                writeln!(
                    w,
                    "not told, the NOTIFY stream refused (run again): {}",
                    names(&n.failed)
                )?;
            }
        }
        Ok(())
    })?;
    Ok(if report.stuck.is_empty() {
        Exit::Ok
    } else {
        Exit::Drift
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unpaired_and_disconnected_bridges_can_be_stuck() {
        assert_eq!(
            StuckKind::of(&BridgeState::Disconnected),
            Some(StuckKind::Disconnected)
        );
        assert_eq!(
            StuckKind::of(&BridgeState::Running),
            Some(StuckKind::AwaitingPairing)
        );
        assert_eq!(
            StuckKind::of(&BridgeState::Other("unpaired".into())),
            Some(StuckKind::AwaitingPairing)
        );
        for fine in [
            BridgeState::Connected,
            BridgeState::Unprovisioned,
            BridgeState::Missing,
        ] {
            assert_eq!(StuckKind::of(&fine), None, "{fine}");
        }
    }

    #[test]
    fn a_nudge_is_one_per_episode_and_day() {
        let episode = time::macros::datetime!(2026-12-01 08:00 UTC);
        let morning = time::macros::datetime!(2026-12-06 07:00 UTC);
        let evening = time::macros::datetime!(2026-12-06 21:00 UTC);
        let next_day = time::macros::datetime!(2026-12-07 07:00 UTC);
        assert_eq!(nudge_fact(episode, morning), nudge_fact(episode, evening));
        assert_ne!(nudge_fact(episode, morning), nudge_fact(episode, next_day));
        let later_episode = time::macros::datetime!(2026-12-05 08:00 UTC);
        assert_ne!(
            nudge_fact(episode, morning),
            nudge_fact(later_episode, morning)
        );
    }

    #[test]
    fn ages_are_shown_to_the_minute() {
        assert_eq!(age(30 * 3600 + 59), "1day 6h");
        assert_eq!(age(42), "42s");
    }
}
