//! Which status records a replica writes, and when, for thousands of tenants:
//! a record whose state changed (or is new) is written at the next cycle; one
//! that did not is rewritten only while the tenant is active (held or with
//! work) or its traffic moved on (a later last event or send), every
//! `max_age / 3`, so it never expires under a live replica and its "last
//! seen" times are at most that old; a tenant that went idle gets one last
//! record (its holds and counts cleared, its latest times kept) and is then
//! left to expire. Every cycle writes at most `writes_per_second × interval`
//! records, news before refreshes, so a fleet-wide event (every bridge
//! reconnecting) is spread over a few cycles instead of flooding the bucket;
//! what a cycle held back (traffic times, news over the budget) is written
//! by a later one, at the latest when its tenant goes quiet.

use std::{collections::HashMap, time::Duration};

use futures::StreamExt as _;
use tokio::time::Instant;

use crate::{
    config::{ConfigError, Env},
    ids::TenantId,
    tenant_status::{record::StatusRecord, store::StatusStore},
};

/// Puts in flight at once.
const PUT_CONCURRENCY: usize = 16;

/// How a replica publishes its status records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusSettings {
    /// `SWITCHYARD_STATUS_MAX_AGE` (default 60s): an entry not rewritten for
    /// this long is gone (a dead replica's records); live replicas rewrite
    /// their active tenants every third of it.
    pub max_age: Duration,
    /// `SWITCHYARD_STATUS_INTERVAL` (default 2s): how often a replica looks
    /// at its tenants and writes what changed.
    pub interval: Duration,
    /// `SWITCHYARD_STATUS_WRITES_PER_SECOND` (default 200): the most records
    /// one replica writes a second, on average over a cycle.
    pub writes_per_second: u32,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(60),
            interval: Duration::from_secs(2),
            writes_per_second: 200,
        }
    }
}

impl StatusSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let s = Self {
            max_age: env.duration("SWITCHYARD_STATUS_MAX_AGE", d.max_age)?,
            interval: env.duration("SWITCHYARD_STATUS_INTERVAL", d.interval)?,
            writes_per_second: env.bounded(
                "SWITCHYARD_STATUS_WRITES_PER_SECOND",
                d.writes_per_second,
                1..=100_000,
            )?,
        };
        if s.interval.is_zero() || s.interval * 3 > s.max_age {
            return Err(ConfigError {
                variable: "SWITCHYARD_STATUS_INTERVAL".into(),
                reason: format!(
                    "must be above zero and at most a third of SWITCHYARD_STATUS_MAX_AGE ({})",
                    humantime::format_duration(s.max_age)
                ),
            });
        }
        Ok(s)
    }

    /// How often an unchanged active record is rewritten.
    pub fn refresh_every(&self) -> Duration {
        self.max_age / 3
    }

    /// Records written at most per cycle.
    pub fn writes_per_cycle(&self) -> usize {
        let n = f64::from(self.writes_per_second) * self.interval.as_secs_f64();
        (n.floor() as usize).max(1)
    }
}

/// One replica's writer of status records.
#[derive(Debug)]
pub struct StatusPublisher {
    store: StatusStore,
    settings: StatusSettings,
    /// The last record written per tenant, and when.
    written: Written,
    /// Newer records not written yet (see [`Plan::held_back`]).
    held_back: HeldBack,
}

impl StatusPublisher {
    pub fn new(store: StatusStore, settings: StatusSettings) -> Self {
        Self {
            store,
            settings,
            written: HashMap::new(),
            held_back: HashMap::new(),
        }
    }

    /// A publisher on the status bucket, opened as
    /// [`StatusStore::open_eventually`] does (`None` on shutdown first).
    pub async fn open_eventually(
        js: &async_nats::jetstream::Context,
        replicas: usize,
        settings: StatusSettings,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<Self> {
        let store = StatusStore::open_eventually(js, settings.max_age, replicas, shutdown).await?;
        Some(Self::new(store, settings))
    }

    pub fn settings(&self) -> StatusSettings {
        self.settings
    }

    /// One cycle. `records`: every tenant this replica has something to say
    /// about now (active, or with activity since the last cycle); a tenant
    /// written before and missing here is idle. Returns the records written.
    pub async fn publish(&mut self, records: Vec<StatusRecord>, now: Instant) -> usize {
        let plan = plan(&self.written, &self.held_back, self.settings, records, now);
        self.held_back = plan
            .held_back
            .into_iter()
            .map(|r| (r.tenant.clone(), r))
            .collect();
        let written: Vec<(StatusRecord, Result<(), async_nats::Error>)> =
            futures::stream::iter(plan.write)
                .map(|record| {
                    let store = self.store.clone();
                    async move {
                        let result = store.put(&record).await;
                        (record, result)
                    }
                })
                .buffer_unordered(PUT_CONCURRENCY)
                .collect()
                .await;
        let mut failed = 0;
        let mut done = 0;
        for (record, result) in written {
            match result {
                Ok(()) => {
                    done += 1;
                    self.written.insert(record.tenant.clone(), (record, now));
                }
                // Not remembered as written: tried again next cycle (or
                // written as the tenant's last words if it has gone quiet).
                Err(_) => {
                    failed += 1;
                    self.held_back
                        .entry(record.tenant.clone())
                        .or_insert(record);
                }
            }
        }
        if failed > 0 {
            tracing::warn!(
                status.failed = failed,
                "cannot write tenant status records; retrying next cycle"
            );
        }
        // An idle tenant's last record has expired from the bucket by now.
        let max_age = self.settings.max_age;
        self.written
            .retain(|_, (r, at)| r.is_active() || now.duration_since(*at) < max_age);
        done
    }
}

/// The last record written per tenant, and when.
type Written = HashMap<TenantId, (StatusRecord, Instant)>;
/// Per tenant, its newest record that is not written yet.
type HeldBack = HashMap<TenantId, StatusRecord>;

/// One cycle's decision.
#[derive(Debug, Default)]
struct Plan {
    /// Written now.
    write: Vec<StatusRecord>,
    /// Newer than what the bucket has, but not worth a write this cycle:
    /// only its traffic times moved (written at the refresh), or news over the
    /// cycle's budget. A tenant missing from the next cycle's records gets its
    /// held-back record written then, so its latest times are not lost.
    held_back: Vec<StatusRecord>,
}

/// What to write this cycle, news first, within the cycle's budget.
fn plan(
    written: &Written,
    held_back: &HeldBack,
    settings: StatusSettings,
    records: Vec<StatusRecord>,
    now: Instant,
) -> Plan {
    let refresh = settings.refresh_every();
    let mut plan = Plan::default();
    // (is a refresh, last written) orders news before refreshes, oldest first.
    let mut due: Vec<((bool, Option<Instant>), StatusRecord)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for record in records {
        seen.insert(record.tenant.clone());
        match written.get(&record.tenant) {
            None => due.push(((false, None), record)),
            Some((last, at)) if !last.same_state(&record) => {
                due.push(((false, Some(*at)), record));
            }
            Some((last, at))
                if (record.is_active() || !last.same_news(&record))
                    && now.duration_since(*at) >= refresh =>
            {
                due.push(((true, Some(*at)), record));
            }
            Some((last, _)) if !last.same_news(&record) => plan.held_back.push(record),
            Some(_) => {}
        }
    }
    for (tenant, (last, at)) in written {
        if seen.contains(tenant) {
            continue;
        }
        let latest = held_back.get(tenant);
        if last.is_active() {
            let idle = StatusRecord {
                holds: Vec::new(),
                queued: 0,
                spilled: 0,
                waiting_since_ms: None,
                written_ms: super::record::now_ms(),
                ..latest.unwrap_or(last).clone()
            };
            due.push(((false, Some(*at)), idle));
        } else if let Some(latest) = latest {
            // Gone quiet with newer times than written: its last words.
            due.push(((false, Some(*at)), latest.clone()));
        }
    }
    // Held back before ever being written (news over the budget, then quiet).
    for (tenant, record) in held_back {
        if !seen.contains(tenant) && !written.contains_key(tenant) {
            due.push(((false, None), record.clone()));
        }
    }
    due.sort_by_key(|(order, _)| *order);
    let budget = settings.writes_per_cycle();
    for (n, (_, record)) in due.into_iter().enumerate() {
        if n < budget {
            plan.write.push(record);
        } else {
            plan.held_back.push(record);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_must_leave_room_for_refreshes_within_the_max_age() {
        let env = Env::from_map([
            ("SWITCHYARD_STATUS_MAX_AGE", "3s"),
            ("SWITCHYARD_STATUS_INTERVAL", "2s"),
        ]);
        assert!(StatusSettings::from_env(&env).is_err());
        let ok =
            StatusSettings::from_env(&Env::from_map([("SWITCHYARD_STATUS_INTERVAL", "500ms")]))
                .unwrap();
        assert_eq!(ok.refresh_every(), Duration::from_secs(20));
        assert_eq!(ok.writes_per_cycle(), 100);
    }

    fn record(tenant: &str, queued: u64) -> StatusRecord {
        StatusRecord {
            queued,
            ..StatusRecord::new(
                TenantId::parse(tenant).unwrap(),
                crate::tenant_status::StatusService::Sender,
                "s1",
                0,
            )
        }
    }

    #[test]
    fn news_goes_first_within_the_budget_and_an_idle_tenant_gets_one_last_record() {
        let settings = settings(2);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(11);
        let mut written = Written::new();
        // "a" is unchanged and due for a refresh; "b" went idle; "c", "d" are new.
        written.insert(TenantId::parse("a").unwrap(), (record("a", 1), t0));
        written.insert(TenantId::parse("b").unwrap(), (record("b", 5), t0));
        let none = HeldBack::new();
        let out = plan(
            &written,
            &none,
            settings,
            vec![record("a", 1), record("c", 1), record("d", 1)],
            later,
        )
        .write;
        assert_eq!(out.len(), 2, "two writes a cycle");
        assert!(
            out.iter().all(|r| r.tenant.as_str() != "a"),
            "refresh after news"
        );
        let out = plan(&written, &none, settings, vec![record("a", 1)], later).write;
        let idle = out.iter().find(|r| r.tenant.as_str() == "b").unwrap();
        assert!(!idle.is_active());
        assert!(out.iter().any(|r| r.tenant.as_str() == "a"), "refreshed");
        let soon = t0 + Duration::from_secs(1);
        assert!(
            plan(
                &written,
                &none,
                settings,
                vec![record("a", 1), record("b", 5)],
                soon
            )
            .write
            .is_empty(),
            "nothing new, nothing due"
        );
    }

    /// A 30 s max age, a cycle a second, `writes_per_second` writes a cycle.
    fn settings(writes_per_second: u32) -> StatusSettings {
        StatusSettings {
            max_age: Duration::from_secs(30),
            interval: Duration::from_secs(1),
            writes_per_second,
        }
    }

    fn held(records: &[StatusRecord]) -> HeldBack {
        records
            .iter()
            .map(|r| (r.tenant.clone(), r.clone()))
            .collect()
    }

    fn sent_at(tenant: &str, ms: i64) -> StatusRecord {
        StatusRecord {
            last_send_out_ms: Some(ms),
            ..record(tenant, 0)
        }
    }

    #[test]
    fn traffic_times_are_written_at_the_refresh_or_when_the_tenant_goes_quiet() {
        let settings = settings(100);
        let t0 = Instant::now();
        let mut written = Written::new();
        written.insert(TenantId::parse("a").unwrap(), (sent_at("a", 1), t0));
        let none = HeldBack::new();
        // A later send a second on: held back, not written.
        let soon = plan(
            &written,
            &none,
            settings,
            vec![sent_at("a", 2)],
            t0 + Duration::from_secs(1),
        );
        assert!(soon.write.is_empty(), "{soon:?}");
        assert_eq!(soon.held_back, vec![sent_at("a", 2)]);
        // Still sending at the refresh (a third of the max age): written.
        let refresh = t0 + settings.refresh_every();
        let due = plan(&written, &none, settings, vec![sent_at("a", 9)], refresh);
        assert_eq!(due.write, vec![sent_at("a", 9)]);
        // Gone quiet before the refresh: the held-back times are its last words.
        let quiet = plan(
            &written,
            &held(&soon.held_back),
            settings,
            Vec::new(),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(quiet.write, vec![sent_at("a", 2)]);
        assert!(quiet.held_back.is_empty());
        // A state change is news at once, whatever the times do.
        let held_now = StatusRecord {
            queued: 3,
            ..sent_at("a", 3)
        };
        let news = plan(
            &written,
            &none,
            settings,
            vec![held_now.clone()],
            t0 + Duration::from_secs(1),
        );
        assert_eq!(news.write, vec![held_now]);
    }

    #[test]
    fn news_over_the_budget_is_written_by_a_later_cycle_even_if_its_tenant_went_quiet() {
        let settings = settings(1);
        let t0 = Instant::now();
        let written = Written::new();
        let first = plan(
            &written,
            &HeldBack::new(),
            settings,
            vec![record("a", 1), record("b", 1)],
            t0,
        );
        assert_eq!(first.write.len(), 1);
        assert_eq!(first.held_back.len(), 1);
        let next = plan(
            &written,
            &held(&first.held_back),
            settings,
            Vec::new(),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(next.write, first.held_back);
    }
}
