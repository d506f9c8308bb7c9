//! Random operation sequences never break a cap, never grant a paused tenant
//! or one without work, and never leave the scheduler waiting while some
//! tenant could send (work conservation).
//!
//! A small model tracks what the scheduler was told; the buckets in the model
//! are [`TokenBucket`]s fed the same takes and refunds (the bucket itself has
//! its own tests), and the rate caps are checked afterwards on the recorded
//! grant instants against the textbook bound `burst + span / interval + refunds`.

use std::{collections::HashMap, time::Duration};

use proptest::prelude::*;
use switchyard_shared::{ids::TenantId, tenants::SendLimits};
use tokio::time::Instant;

use super::{token_bucket::TokenBucket, *};

const TENANTS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    WorkArrived(usize, u64),
    SetReady(usize, u64),
    Pause(usize, PauseReason, Option<u64>),
    Resume(usize, PauseReason),
    ResumeAll(usize),
    PauseFleet(u64),
    Advance(u64),
    Next,
    Complete(usize, GrantOutcome),
}

fn reason() -> impl Strategy<Value = PauseReason> {
    prop_oneof![
        Just(PauseReason::BridgeDisconnected),
        Just(PauseReason::Unauthorized),
        Just(PauseReason::Restricted),
        Just(PauseReason::Operator),
        Just(PauseReason::Backoff),
    ]
}

fn outcome() -> impl Strategy<Value = GrantOutcome> {
    prop_oneof![
        Just(GrantOutcome::Delivered),
        Just(GrantOutcome::Failed),
        Just(GrantOutcome::RateLimited),
        Just(GrantOutcome::NotAttempted),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..TENANTS, 0u64..6).prop_map(|(i, n)| Op::WorkArrived(i, n)),
        1 => (0..TENANTS, 0u64..4).prop_map(|(i, n)| Op::SetReady(i, n)),
        1 => (0..TENANTS, reason(), proptest::option::of(0u64..5_000))
            .prop_map(|(i, r, ms)| Op::Pause(i, r, ms)),
        1 => (0..TENANTS, reason()).prop_map(|(i, r)| Op::Resume(i, r)),
        1 => (0..TENANTS).prop_map(Op::ResumeAll),
        1 => (0u64..3_000).prop_map(Op::PauseFleet),
        4 => (0u64..1_500).prop_map(Op::Advance),
        10 => Just(Op::Next),
        5 => (0usize..64, outcome()).prop_map(|(i, o)| Op::Complete(i, o)),
    ]
}

fn tenant_limits() -> impl Strategy<Value = SendLimits> {
    (0u32..6, 0u32..300, 0u32..4, 0u32..4).prop_map(|(weight, rate, burst, in_flight)| SendLimits {
        weight,
        sends_per_minute: rate,
        send_burst: burst,
        max_in_flight: in_flight,
    })
}

#[derive(Debug, Default)]
struct Model {
    ready: u64,
    in_flight: u32,
    pauses: HashMap<PauseReason, Option<Instant>>,
}

impl Model {
    fn paused(&self, now: Instant) -> bool {
        self.pauses.values().any(|u| u.is_none_or(|u| now < u))
    }
}

/// Grant and refund instants of one rate limit, for the bound check.
#[derive(Debug, Default)]
struct RateLog {
    grants: Vec<Instant>,
    refunds: Vec<Instant>,
}

impl RateLog {
    /// In every span [a, b] between two grants: grants <= burst + span/interval + refunds.
    fn check(&self, per_minute: u32, burst: u32) -> Result<(), TestCaseError> {
        if per_minute == 0 {
            prop_assert!(self.grants.is_empty());
            return Ok(());
        }
        let interval = 60_000_000_000u128.div_ceil(u128::from(per_minute));
        let burst = u128::from(burst.max(1));
        for (i, a) in self.grants.iter().enumerate() {
            for (j, b) in self.grants.iter().enumerate().skip(i) {
                let span = (*b - *a).as_nanos();
                let refunds = self
                    .refunds
                    .iter()
                    .filter(|r| *a <= **r && **r <= *b)
                    .count();
                let allowed = burst + span / interval + refunds as u128;
                prop_assert!(
                    (j - i + 1) as u128 <= allowed,
                    "{} grants in {span} ns",
                    j - i + 1
                );
            }
        }
        Ok(())
    }
}

fn run(
    tenant_limits: Vec<SendLimits>,
    fleet_rate: u32,
    fleet_burst: u32,
    max_in_flight: u32,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let ids: Vec<TenantId> = (0..TENANTS)
        .map(|i| TenantId::parse(&format!("t{i}")).unwrap())
        .collect();
    let mut s = Scheduler::new(GlobalLimits::local(fleet_rate, fleet_burst, max_in_flight));
    let mut models: Vec<Model> = (0..TENANTS).map(|_| Model::default()).collect();
    let mut buckets: Vec<TokenBucket> = tenant_limits
        .iter()
        .map(|l| TokenBucket::per_minute(l.sends_per_minute, l.send_burst))
        .collect();
    let mut fleet_bucket = TokenBucket::per_minute(fleet_rate, fleet_burst);
    let mut tenant_logs: Vec<RateLog> = (0..TENANTS).map(|_| RateLog::default()).collect();
    let mut fleet_log = RateLog::default();
    for (id, limits) in ids.iter().zip(&tenant_limits) {
        s.upsert_tenant(id.clone(), *limits);
    }
    let mut now = Instant::now();
    let mut fleet_paused_until: Option<Instant> = None;
    let mut outstanding: Vec<(usize, Grant)> = Vec::new();

    for op in ops {
        match op {
            Op::WorkArrived(i, n) => {
                s.work_arrived(&ids[i], n).unwrap();
                models[i].ready += n;
            }
            Op::SetReady(i, n) => {
                s.set_ready(&ids[i], n).unwrap();
                models[i].ready = n;
            }
            Op::Pause(i, reason, ms) => {
                let until = ms.map(|ms| now + Duration::from_millis(ms));
                s.pause(&ids[i], reason, until).unwrap();
                models[i].pauses.insert(reason, until);
            }
            Op::Resume(i, reason) => {
                s.resume(&ids[i], reason).unwrap();
                models[i].pauses.remove(&reason);
            }
            Op::ResumeAll(i) => {
                s.resume_all(&ids[i]).unwrap();
                models[i].pauses.clear();
            }
            Op::PauseFleet(ms) => {
                let until = now + Duration::from_millis(ms);
                s.pause_fleet_until(until);
                fleet_paused_until = Some(fleet_paused_until.map_or(until, |u| u.max(until)));
            }
            Op::Advance(ms) => now += Duration::from_millis(ms),
            Op::Complete(k, outcome) => {
                if outstanding.is_empty() {
                    continue;
                }
                let (i, grant) = outstanding.swap_remove(k % outstanding.len());
                s.completed(grant, outcome);
                models[i].in_flight -= 1;
                if matches!(
                    outcome,
                    GrantOutcome::RateLimited | GrantOutcome::NotAttempted
                ) {
                    buckets[i].refund();
                    tenant_logs[i].refunds.push(now);
                }
                if outcome == GrantOutcome::NotAttempted {
                    fleet_bucket.refund();
                    fleet_log.refunds.push(now);
                }
            }
            Op::Next => {
                let fleet_open = fleet_paused_until.is_none_or(|u| now >= u)
                    && (outstanding.len() as u32) < max_in_flight
                    && fleet_bucket.has_token(now);
                // The last token (when the burst can hold more) is kept for
                // sparse tenants.
                let reserve_free = fleet_bucket
                    .ready_at_holding(now, 1 + SPARSE_RESERVE)
                    .is_some_and(|at| at <= now);
                let could_send: Vec<bool> = (0..TENANTS)
                    .map(|i| {
                        let m = &models[i];
                        fleet_open
                            && (reserve_free || s.is_sparse(&ids[i]))
                            && m.ready > 0
                            && m.in_flight < tenant_limits[i].max_in_flight
                            && !m.paused(now)
                            && buckets[i].has_token(now)
                    })
                    .collect();
                match s.next(now) {
                    Decision::Send(grant) => {
                        let i = ids.iter().position(|id| id == grant.tenant()).unwrap();
                        prop_assert!(could_send[i], "granted {i}, which could not send");
                        prop_assert!(buckets[i].try_take(now) && fleet_bucket.try_take(now));
                        models[i].ready -= 1;
                        models[i].in_flight += 1;
                        tenant_logs[i].grants.push(now);
                        fleet_log.grants.push(now);
                        outstanding.push((i, grant));
                    }
                    Decision::WaitUntil(at) => {
                        prop_assert!(at > now, "a wait must lie in the future");
                        prop_assert!(!could_send.contains(&true), "waited while {could_send:?}");
                    }
                    Decision::Idle => {
                        prop_assert!(!could_send.contains(&true), "idle while {could_send:?}");
                    }
                    Decision::NeedFleetPermits { .. } => {
                        prop_assert!(false, "a local fleet limit never leases");
                    }
                }
            }
        }
        prop_assert!(s.in_flight() <= max_in_flight);
        prop_assert_eq!(s.in_flight() as usize, outstanding.len());
        for i in 0..TENANTS {
            prop_assert_eq!(s.ready(&ids[i]), Some(models[i].ready));
            prop_assert_eq!(s.tenant_in_flight(&ids[i]), Some(models[i].in_flight));
            prop_assert!(models[i].in_flight <= tenant_limits[i].max_in_flight);
        }
    }
    for (log, limits) in tenant_logs.iter().zip(&tenant_limits) {
        log.check(limits.sends_per_minute, limits.send_burst)?;
    }
    fleet_log.check(fleet_rate, fleet_burst)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operations_never_break_a_cap_nor_grant_who_cannot_send(
        tenant_limits in proptest::collection::vec(tenant_limits(), TENANTS),
        fleet_rate in 0u32..600,
        fleet_burst in 0u32..5,
        max_in_flight in 0u32..5,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        run(tenant_limits, fleet_rate, fleet_burst, max_in_flight, ops)?;
    }
}
