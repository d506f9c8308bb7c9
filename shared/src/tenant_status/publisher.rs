//! Which status records a replica writes, and when, for thousands of tenants:
//! a record that changed (or is new) is written at the next cycle; one that
//! did not is rewritten only while the tenant is active (held or with work),
//! every `max_age / 3`, so it never expires under a live replica; a tenant
//! that went idle gets one last record (its holds and counts cleared, its
//! timestamps kept) and is then left to expire. Every cycle writes at most
//! `writes_per_second × interval` records, news before refreshes, so a
//! fleet-wide event (every bridge reconnecting) is spread over a few cycles
//! instead of flooding the bucket.

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
}

impl StatusPublisher {
    pub fn new(store: StatusStore, settings: StatusSettings) -> Self {
        Self {
            store,
            settings,
            written: HashMap::new(),
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
        let plan = plan(&self.written, self.settings, records, now);
        let written: Vec<(StatusRecord, Result<(), async_nats::Error>)> =
            futures::stream::iter(plan)
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
                // Not remembered as written: tried again next cycle.
                Err(_) => failed += 1,
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

/// What to write this cycle, news first, within the cycle's budget.
fn plan(
    written: &Written,
    settings: StatusSettings,
    records: Vec<StatusRecord>,
    now: Instant,
) -> Vec<StatusRecord> {
    let refresh = settings.refresh_every();
    // (is a refresh, last written) orders news before refreshes, oldest first.
    let mut due: Vec<((bool, Option<Instant>), StatusRecord)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for record in records {
        seen.insert(record.tenant.clone());
        match written.get(&record.tenant) {
            None => due.push(((false, None), record)),
            Some((last, at)) if !last.same_news(&record) => {
                due.push(((false, Some(*at)), record));
            }
            Some((_, at)) if record.is_active() && now.duration_since(*at) >= refresh => {
                due.push(((true, Some(*at)), record));
            }
            Some(_) => {}
        }
    }
    for (tenant, (last, at)) in written {
        if last.is_active() && !seen.contains(tenant) {
            let idle = StatusRecord {
                holds: Vec::new(),
                queued: 0,
                spilled: 0,
                waiting_since_ms: None,
                written_ms: super::record::now_ms(),
                ..last.clone()
            };
            due.push(((false, Some(*at)), idle));
        }
    }
    due.sort_by_key(|(order, _)| *order);
    due.into_iter()
        .take(settings.writes_per_cycle())
        .map(|(_, r)| r)
        .collect()
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
        let settings = StatusSettings {
            max_age: Duration::from_secs(30),
            interval: Duration::from_secs(1),
            writes_per_second: 2,
        };
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(11);
        let mut written = Written::new();
        // "a" is unchanged and due for a refresh; "b" went idle; "c", "d" are new.
        written.insert(TenantId::parse("a").unwrap(), (record("a", 1), t0));
        written.insert(TenantId::parse("b").unwrap(), (record("b", 5), t0));
        let out = plan(
            &written,
            settings,
            vec![record("a", 1), record("c", 1), record("d", 1)],
            later,
        );
        assert_eq!(out.len(), 2, "two writes a cycle");
        assert!(
            out.iter().all(|r| r.tenant.as_str() != "a"),
            "refresh after news"
        );
        let out = plan(&written, settings, vec![record("a", 1)], later);
        let idle = out.iter().find(|r| r.tenant.as_str() == "b").unwrap();
        assert!(!idle.is_active());
        assert!(out.iter().any(|r| r.tenant.as_str() == "a"), "refreshed");
        let soon = t0 + Duration::from_secs(1);
        assert!(
            plan(
                &written,
                settings,
                vec![record("a", 1), record("b", 5)],
                soon
            )
            .is_empty(),
            "nothing new, nothing due"
        );
    }
}
