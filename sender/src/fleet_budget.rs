//! The provider's call budget, shared by every sender replica through NATS.
//!
//! WA Bridges limits calls per API key, i.e. for the whole fleet (120 a
//! minute by default). Each replica leases a few permits at a time from one
//! JetStream KV key ([`switchyard_shared::subjects::BUDGET_BUCKET`]) holding a
//! sliding window of per-slot counts ([`budget_ledger`]), updated with
//! compare-and-swap, so the fleet together never exceeds the limit in any
//! window-long span while any replica may use whatever the others leave.
//! The same key carries the fleet pause a 429 imposes, so every replica
//! honours it at its next lease. `docs/fair-share.md` derives the bound.
//!
//! The scheduler is fed from here in [`crate::fair_share::FleetLimit::Leased`]
//! mode: when it answers `NeedFleetPermits { wanted, sparse_waiting }`, call
//! [`FleetBudget::acquire_for`] (with [`budget_ledger::Claim::Sparse`] when a
//! sparse tenant waits) and hand the lease over.

pub mod budget_ledger;
pub mod local_share;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{
    self,
    kv::{self, CreateErrorKind, UpdateErrorKind},
};
use bytes::Bytes;
use switchyard_shared::{
    config::{ConfigError, Env},
    subjects::BUDGET_BUCKET,
};
use tokio::time::Instant;

use self::{
    budget_ledger::{BudgetLedger, Claim, Take, Window},
    local_share::{LocalShare, LocalTake, Steady},
};
use crate::fair_share::Scheduler;

/// Compare-and-swap rounds before giving up on one lease (each round is one
/// read and one write; losing 32 in a row means something else is wrong).
const MAX_CAS_ROUNDS: u32 = 32;

/// The shared budget's settings; every replica must use the same ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetBudgetConfig {
    /// KV bucket name.
    pub bucket: String,
    /// Key within the bucket: one per provider limit (sends, provisioning).
    pub key: String,
    /// Calls per window for the whole fleet (`SWITCHYARD_FLEET_CALLS_PER_MINUTE`, default 120).
    pub limit: u32,
    /// The provider's window (a minute).
    pub window: Duration,
    /// Slots per window; more slots waste less of the budget at the guard
    /// (`SWITCHYARD_FLEET_BUDGET_SLOTS`, default 60).
    pub slots: u32,
    /// Extra slots counted beyond the window: one for slot granularity, one
    /// for lease grace (half a slot) and clock skew (up to a quarter slot).
    pub guard_slots: u32,
    /// Most permits one lease hands to one replica (`SWITCHYARD_FLEET_LEASE_CHUNK`, default 4).
    pub chunk: u32,
    /// Most permits counted in one slot; `None`: 5 % of the limit (at least
    /// 1). Bounds what a slot outside the guard can add to any span
    /// (`SWITCHYARD_FLEET_MAX_PER_SLOT`).
    pub max_per_slot: Option<u32>,
    /// KV replicas (1 in development, 3 in production).
    pub replicas: usize,
    /// Whether takes are paced so that a sustained demand never runs the
    /// window out ([`budget_ledger`]); always in production, off in tests
    /// that look at the window alone.
    pub pace: bool,
}

impl FleetBudgetConfig {
    /// The send budget with the provider's defaults.
    pub fn per_minute(limit: u32) -> Self {
        Self {
            bucket: BUDGET_BUCKET.to_owned(),
            key: "sends".to_owned(),
            limit,
            window: Duration::from_secs(60),
            slots: 60,
            guard_slots: 2,
            chunk: 4,
            max_per_slot: None,
            replicas: 1,
            pace: true,
        }
    }

    /// The send budget from the environment; `replicas` as the streams'.
    pub fn from_env(env: &Env, replicas: usize) -> Result<Self, ConfigError> {
        let d = Self::per_minute(120);
        let config = Self {
            limit: env.bounded("SWITCHYARD_FLEET_CALLS_PER_MINUTE", d.limit, 1..=1_000_000)?,
            // The provider's window is a minute; tests shorten it to see several windows.
            window: env.duration("SWITCHYARD_FLEET_WINDOW", d.window)?,
            slots: env.bounded("SWITCHYARD_FLEET_BUDGET_SLOTS", d.slots, 1..=600)?,
            chunk: env.bounded("SWITCHYARD_FLEET_LEASE_CHUNK", d.chunk, 1..=1000)?,
            max_per_slot: match env.raw("SWITCHYARD_FLEET_MAX_PER_SLOT") {
                None => None,
                Some(_) => Some(env.bounded("SWITCHYARD_FLEET_MAX_PER_SLOT", 1, 1..=1_000_000)?),
            },
            replicas,
            ..d
        };
        config.shape().map_err(|reason| ConfigError {
            variable: "SWITCHYARD_FLEET_BUDGET_SLOTS".to_owned(),
            reason,
        })?;
        Ok(config)
    }

    /// The ledger's view of these settings.
    fn shape(&self) -> Result<Window, String> {
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let slot_ms = window_ms / u64::from(self.slots.max(1));
        if slot_ms < 10 || self.chunk == 0 || self.limit == 0 {
            return Err(format!(
                "a {:?} window in {} slots gives {slot_ms} ms slots (need >= 10 ms), chunk {} and limit {} (need >= 1)",
                self.window, self.slots, self.chunk, self.limit
            ));
        }
        let max_per_slot = self
            .max_per_slot
            .unwrap_or_else(|| self.limit.div_ceil(20))
            .max(1);
        Ok(Window {
            limit: self.limit,
            slot_ms,
            span_slots: u64::from(self.slots) + u64::from(self.guard_slots),
            chunk: self.chunk,
            max_per_slot,
            grace_ms: slot_ms / 2,
            // Paced at 2 % of the limit at once: with the steady rate that
            // is 3.6 % of it in a slot at most, below the slot cap.
            pace_burst: self
                .pace
                .then(|| self.limit.div_ceil(50).max(1))
                .filter(|burst| *burst < self.limit),
        })
    }
}

/// The answer to [`FleetBudget::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// `permits` calls may start before `expires_at`
    /// ([`crate::fair_share::Scheduler::add_fleet_permits`]).
    Granted { permits: u32, expires_at: Instant },
    /// The fleet used its budget; more frees up at `retry_at`
    /// ([`crate::fair_share::Scheduler::pause_fleet_until`]).
    Exhausted { retry_at: Instant },
    /// The provider said to stop (a 429 anywhere in the fleet) until `until`
    /// ([`crate::fair_share::Scheduler::pause_fleet_until`]).
    Paused { until: Instant },
}

impl Lease {
    /// Until when to stop asking, when not granted.
    pub fn wait_until(&self) -> Option<Instant> {
        match self {
            Lease::Granted { .. } => None,
            Lease::Exhausted { retry_at } => Some(*retry_at),
            Lease::Paused { until } => Some(*until),
        }
    }

    /// Hands the lease to a scheduler in leased mode: permits to spend, a
    /// time before which no lease is asked for (the permits held stay
    /// usable), or a fleet pause.
    pub fn apply_to(self, scheduler: &mut Scheduler) {
        match self {
            Lease::Granted {
                permits,
                expires_at,
            } => scheduler.add_fleet_permits(permits, expires_at),
            // Spent for now: ask again then; the permits held (a sparse
            // tenant's reserve) stay usable.
            Lease::Exhausted { retry_at } => scheduler.lease_later(retry_at),
            Lease::Paused { until } => scheduler.pause_fleet_until(until),
        }
    }
}

/// Whether a compare-and-swap write failed because another replica wrote
/// first. async-nats 0.51 recognises only the server's error 10071 ("wrong
/// last sequence: N"); nats-server 2.12+ also answers 10164 ("wrong last
/// sequence", without the number), which async-nats reports as an unknown
/// error. Taken for a failure, every lost race paused this replica's sends
/// (seen as 20 s without sends after a NATS node's loss, issue 16), so the
/// server's code is looked for in the error's sources.
fn lost_the_race(error: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::ErrorCode;
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return [
                ErrorCode::STREAM_WRONG_LAST_SEQUENCE,
                ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT,
            ]
            .contains(&js.error_code());
        }
        source = e.source();
    }
    false
}

/// The shared budget could not be reached or read.
#[derive(Debug, thiserror::Error)]
pub enum FleetBudgetError {
    #[error("invalid fleet budget settings: {0}")]
    InvalidConfig(String),
    #[error("cannot create or open the budget bucket {bucket}: {source}")]
    Setup {
        bucket: String,
        #[source]
        source: jetstream::context::CreateKeyValueError,
    },
    #[error("cannot read the fleet budget: {0}")]
    Read(#[from] kv::EntryError),
    #[error("cannot write the fleet budget: {0}")]
    Write(String),
    #[error("the fleet budget stayed contended for {0} compare-and-swap rounds")]
    Contended(u32),
    #[error("the fleet budget did not answer within {0:?}")]
    Unanswered(Duration),
}

/// One replica's handle on the shared budget. Cheap to clone (clones share
/// the local share).
#[derive(Debug, Clone)]
pub struct FleetBudget {
    kv: kv::Store,
    key: String,
    window: Window,
    steady: Steady,
    local: std::sync::Arc<std::sync::Mutex<LocalShare>>,
}

impl FleetBudget {
    /// Creates the bucket if needed (idempotent, any replica may be first).
    pub async fn open(
        js: &jetstream::Context,
        config: &FleetBudgetConfig,
    ) -> Result<Self, FleetBudgetError> {
        let window = config.shape().map_err(FleetBudgetError::InvalidConfig)?;
        let kv = js
            .create_or_update_key_value(kv::Config {
                bucket: config.bucket.clone(),
                description: "Switchyard: the provider call budget shared by sender replicas"
                    .to_owned(),
                history: 1,
                // A lost ledger would hand out a fresh window at once: keep it on disk.
                storage: jetstream::stream::StorageType::File,
                num_replicas: config.replicas,
                max_value_size: 64 * 1024,
                ..Default::default()
            })
            .await
            .map_err(|source| FleetBudgetError::Setup {
                bucket: config.bucket.clone(),
                source,
            })?;
        Ok(Self {
            kv,
            key: config.key.clone(),
            window,
            steady: Steady {
                limit: config.limit,
                window: config.window,
                chunk: config.chunk,
                lease: Duration::from_millis(window.slot_ms + window.grace_ms),
            },
            local: Default::default(),
        })
    }

    /// Leases up to `want` permits (at most the configured chunk). Permits
    /// spent under [`FleetBudget::local_lease`] since the last answer are
    /// charged first, in the same write.
    pub async fn acquire(&self, want: u32) -> Result<Lease, FleetBudgetError> {
        self.acquire_for(want, Claim::Backlog).await
    }

    /// [`FleetBudget::acquire`] for `claim`: a sparse tenant's lease may take
    /// the pace's last permit, which backlogged tenants leave.
    pub async fn acquire_for(&self, want: u32, claim: Claim) -> Result<Lease, FleetBudgetError> {
        let want = want.max(1);
        let owed = self.local().settle();
        let taken = self
            .modify(|ledger, now_ms| {
                ledger.charge(&self.window, now_ms, owed);
                let take = ledger.take_for(&self.window, now_ms, want, claim);
                // A grant, or a charge, needs writing; a bare refusal leaves
                // the ledger as it was.
                let write = owed > 0 || matches!(take, Take::Granted { .. });
                (take, write)
            })
            .await;
        let (now, take) = match taken {
            Ok(taken) => {
                if owed > 0 {
                    tracing::info!(
                        charged = owed,
                        "the fleet budget answers again; the calls made meanwhile are counted"
                    );
                }
                taken
            }
            Err(e) => {
                self.local().unsettle(owed);
                return Err(e);
            }
        };
        let (instant, now_ms) = now;
        let at = |ms: u64| instant + Duration::from_millis(ms.saturating_sub(now_ms));
        Ok(match take {
            Take::Granted {
                count,
                expires_at_ms,
            } => Lease::Granted {
                permits: count,
                expires_at: at(expires_at_ms),
            },
            Take::Exhausted { retry_at_ms } => Lease::Exhausted {
                retry_at: at(retry_at_ms),
            },
            Take::Paused { until_ms } => Lease::Paused {
                until: at(until_ms),
            },
        })
    }

    /// While the shared ledger cannot be reached: up to `want` permits at
    /// `share` (this replica's part of the partitions) of the fleet's
    /// steady rate ([`local_share`]), charged to the ledger at the next
    /// [`FleetBudget::acquire`] that reaches it.
    pub fn local_lease(&self, want: u32, share: f64) -> Lease {
        let mut local = self.local();
        if !local.in_outage() {
            tracing::warn!(
                share = format!("{:.0} %", share * 100.0),
                "the fleet budget cannot be reached; sending on at this replica's share of the steady rate"
            );
        }
        match local.take(&self.steady, share, want, Instant::now()) {
            LocalTake::Granted { count, expires_at } => Lease::Granted {
                permits: count,
                expires_at,
            },
            LocalTake::Wait { retry_at } => Lease::Exhausted { retry_at },
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, LocalShare> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops every replica's calls for `duration` (a 429's Retry-After).
    /// Returns when the fleet pause ends, which a longer pause set by someone
    /// else may push further out.
    pub async fn pause_for(&self, duration: Duration) -> Result<Instant, FleetBudgetError> {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let ((instant, now_ms), until_ms) = self
            .modify(|ledger, now_ms| {
                let before = ledger.paused_until_ms;
                ledger.pause_until(now_ms.saturating_add(millis));
                (ledger.paused_until_ms, ledger.paused_until_ms != before)
            })
            .await?;
        Ok(instant + Duration::from_millis(until_ms.saturating_sub(now_ms)))
    }

    /// The fleet pause in force, if any.
    pub async fn paused_until(&self) -> Result<Option<Instant>, FleetBudgetError> {
        let (instant, now_ms) = clock();
        let (ledger, _) = self.read().await?;
        Ok((ledger.paused_until_ms > now_ms)
            .then(|| instant + Duration::from_millis(ledger.paused_until_ms - now_ms)))
    }

    /// Permits counted in the current span, for metrics and tests.
    pub async fn used(&self) -> Result<u64, FleetBudgetError> {
        let (_, now_ms) = clock();
        let (ledger, _) = self.read().await?;
        Ok(ledger.used(&self.window, now_ms))
    }

    /// Read, apply `change`, write back under compare-and-swap when it asks
    /// to, retrying on conflict. `change` runs again on each retry with a
    /// fresh clock, so a retry decides on the winner's ledger.
    async fn modify<T>(
        &self,
        mut change: impl FnMut(&mut BudgetLedger, u64) -> (T, bool),
    ) -> Result<((Instant, u64), T), FleetBudgetError> {
        for _ in 0..MAX_CAS_ROUNDS {
            let (mut ledger, revision) = self.read().await?;
            // Read the clock after the ledger, so our slot is never older
            // than one the ledger already holds from this machine.
            let now = clock();
            let (result, write) = change(&mut ledger, now.1);
            if !write {
                return Ok((now, result));
            }
            let value = match serde_json::to_vec(&ledger) {
                Ok(v) => Bytes::from(v),
                Err(e) => return Err(FleetBudgetError::Write(e.to_string())),
            };
            let written = match revision {
                Some(revision) => self
                    .kv
                    .update(&self.key, value, revision)
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        (
                            e.kind() == UpdateErrorKind::WrongLastRevision || lost_the_race(&e),
                            e.to_string(),
                        )
                    }),
                None => self
                    .kv
                    .create(&self.key, value)
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        (
                            e.kind() == CreateErrorKind::AlreadyExists || lost_the_race(&e),
                            e.to_string(),
                        )
                    }),
            };
            match written {
                Ok(()) => return Ok((now, result)),
                // Another replica wrote first: read its version and try again.
                Err((true, _)) => continue,
                Err((false, message)) => return Err(FleetBudgetError::Write(message)),
            }
        }
        Err(FleetBudgetError::Contended(MAX_CAS_ROUNDS))
    }

    /// The ledger and its revision (`None`: no ledger yet).
    async fn read(&self) -> Result<(BudgetLedger, Option<u64>), FleetBudgetError> {
        let Some(entry) = self.kv.entry(&self.key).await? else {
            return Ok((BudgetLedger::default(), None));
        };
        if entry.operation != kv::Operation::Put {
            // Deleted or purged by an operator: start afresh on top of the marker.
            return Ok((BudgetLedger::default(), Some(entry.revision)));
        }
        let ledger = serde_json::from_slice(&entry.value).unwrap_or_else(|error| {
            // Refusing every send over a bad document would stop the fleet;
            // starting a fresh window risks at most one window's overshoot.
            tracing::error!(%error, budget.key = %self.key, "unreadable fleet budget ledger; starting afresh");
            BudgetLedger::default()
        });
        Ok((ledger, Some(entry.revision)))
    }
}

/// The monotonic instant and the wall-clock milliseconds read together: the
/// ledger is shared across machines (wall clock), leases are used locally.
fn clock() -> (Instant, u64) {
    let instant = Instant::now();
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    (instant, millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_providers_minute_in_one_second_slots() {
        let config = FleetBudgetConfig::from_env(&Env::from_map::<_, &str, &str>([]), 3).unwrap();
        let window = config.shape().unwrap();
        assert_eq!(config.limit, 120);
        assert_eq!(config.replicas, 3);
        assert_eq!(window.slot_ms, 1000);
        assert_eq!(window.span_slots, 62);
        assert_eq!(window.max_per_slot, 6);
        assert_eq!(window.grace_ms, 500);
        assert_eq!(window.pace_burst, Some(3));
    }

    #[test]
    fn settings_come_from_the_environment_and_are_checked() {
        let env = Env::from_map([
            ("SWITCHYARD_FLEET_CALLS_PER_MINUTE", "600"),
            ("SWITCHYARD_FLEET_MAX_PER_SLOT", "50"),
        ]);
        let config = FleetBudgetConfig::from_env(&env, 1).unwrap();
        assert_eq!(config.limit, 600);
        assert_eq!(config.shape().unwrap().max_per_slot, 50);

        let too_fine = Env::from_map([("SWITCHYARD_FLEET_BUDGET_SLOTS", "600")]);
        assert!(FleetBudgetConfig::from_env(&too_fine, 1).is_ok());
        let zero = Env::from_map([("SWITCHYARD_FLEET_CALLS_PER_MINUTE", "0")]);
        let err = FleetBudgetConfig::from_env(&zero, 1).unwrap_err();
        assert_eq!(err.variable, "SWITCHYARD_FLEET_CALLS_PER_MINUTE");
    }

    #[test]
    fn slots_shorter_than_ten_milliseconds_are_refused() {
        let config = FleetBudgetConfig {
            window: Duration::from_millis(100),
            slots: 20,
            ..FleetBudgetConfig::per_minute(10)
        };
        assert!(config.shape().is_err());
    }
}
