//! Sparse tenants, driven with made-up instants: a tenant that gets a reply
//! while another floods the fleet budget sends at once (ahead of the
//! flooder, on the gate's reserve), yet arriving just in time again and
//! again buys no more than an equal (or weighted) share. With leased
//! permits (several replicas) the one that expires last is the reserve.

use std::{collections::HashMap, time::Duration};

use switchyard_shared::{ids::TenantId, tenants::SendLimits};
use tokio::time::Instant;

use super::*;

fn t(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

fn unlimited(weight: u32) -> SendLimits {
    SendLimits {
        weight,
        sends_per_minute: 1_000_000,
        send_burst: 1_000_000,
        max_in_flight: 1_000_000,
    }
}

/// 100 sends a second (a token every 10 ms), 5 at once.
fn flood_budget() -> GlobalLimits {
    GlobalLimits::local(6_000, 5, 1_000)
}

/// Grants, each completed at once, until the scheduler says to wait.
fn grant_all_now(s: &mut Scheduler, now: Instant) -> Vec<TenantId> {
    let mut out = Vec::new();
    while let Decision::Send(grant) = s.next(now) {
        out.push(grant.tenant().clone());
        s.completed(grant, GrantOutcome::Delivered);
    }
    out
}

/// Follows the scheduler's waits to its next grant, completed at once.
fn next_grant(s: &mut Scheduler, mut now: Instant) -> (Instant, TenantId) {
    loop {
        match s.next(now) {
            Decision::Send(grant) => {
                let tenant = grant.tenant().clone();
                s.completed(grant, GrantOutcome::Delivered);
                return (now, tenant);
            }
            Decision::WaitUntil(at) => now = at,
            other => panic!("expected a grant or a wait, got {other:?}"),
        }
    }
}

#[test]
fn a_quiet_tenants_reply_goes_at_once_while_another_floods_the_budget() {
    let start = Instant::now();
    let mut s = Scheduler::new(flood_budget());
    for id in ["noisy", "quiet"] {
        s.upsert_tenant(t(id), unlimited(1));
    }
    s.work_arrived(&t("noisy"), 1_000_000).unwrap();
    // The flood spends the burst and then every token as it comes.
    let burst = grant_all_now(&mut s, start);
    assert_eq!(burst.len(), 4, "the burst but the reserve: {burst:?}");
    let mut now = start;
    for _ in 0..50 {
        let (at, who) = next_grant(&mut s, now);
        assert_eq!(who, t("noisy"));
        now = at;
    }
    // Halfway to the next token, the quiet tenant's reply is granted on
    // the spot: no token interval, no turn of the flooder first.
    let arrival = now + Duration::from_millis(5);
    s.work_arrived(&t("quiet"), 1).unwrap();
    let (at, who) = next_grant(&mut s, arrival);
    assert_eq!((at, who), (arrival, t("quiet")));
    // The flooder goes on at the budget's rate once the reserve is back:
    // the reply took its token, no more.
    let (at, who) = next_grant(&mut s, arrival);
    assert_eq!(who, t("noisy"));
    assert_eq!(
        at,
        now + Duration::from_millis(20),
        "two tokens after its last"
    );
}

#[test]
fn two_quiet_replies_at_once_both_go_before_the_flooder_in_arrival_order() {
    let start = Instant::now();
    let mut s = Scheduler::new(flood_budget());
    for id in ["noisy", "q1", "q2"] {
        s.upsert_tenant(t(id), unlimited(1));
    }
    s.work_arrived(&t("noisy"), 1_000_000).unwrap();
    grant_all_now(&mut s, start);
    let now = start + Duration::from_millis(1);
    s.work_arrived(&t("q2"), 1).unwrap();
    s.work_arrived(&t("q1"), 1).unwrap();
    let (first_at, first) = next_grant(&mut s, now);
    let (second_at, second) = next_grant(&mut s, first_at);
    let (_, third) = next_grant(&mut s, second_at);
    assert_eq!(
        [first, second, third],
        [t("q2"), t("q1"), t("noisy")],
        "the sparse tenants first, in the order their work came"
    );
    assert_eq!(first_at, now, "the first takes the reserve");
    assert!(
        second_at - now <= Duration::from_millis(10),
        "the second the next token"
    );
}

/// A tenant that gets one message right after each of its sends is sparse
/// only once every tenant in the ring has had a turn since: with one
/// flooder that is every other grant, an equal share, never more.
fn share_of_a_just_in_time_tenant(gamer_weight: u32, flooder_weight: u32) -> f64 {
    let start = Instant::now();
    let mut s = Scheduler::new(flood_budget());
    s.upsert_tenant(t("flooder"), unlimited(flooder_weight));
    s.upsert_tenant(t("gamer"), unlimited(gamer_weight));
    s.work_arrived(&t("flooder"), 1_000_000).unwrap();
    let mut now = start;
    let mut counts: HashMap<TenantId, u32> = HashMap::new();
    for _ in 0..2_000 {
        if s.ready(&t("gamer")) == Some(0) {
            s.work_arrived(&t("gamer"), 1).unwrap();
        }
        let (at, who) = next_grant(&mut s, now);
        *counts.entry(who).or_default() += 1;
        now = at;
    }
    f64::from(counts[&t("gamer")]) / 2_000.0
}

#[test]
fn arriving_just_in_time_again_and_again_buys_no_more_than_an_equal_share() {
    let share = share_of_a_just_in_time_tenant(1, 1);
    assert!((0.45..=0.51).contains(&share), "{share}");
}

#[test]
fn nor_more_than_a_weighted_share() {
    let share = share_of_a_just_in_time_tenant(1, 3);
    assert!(
        share <= 0.26,
        "a weight of 1 against 3 may take a quarter: {share}"
    );
    assert!(share >= 0.2, "and gets about that: {share}");
}

#[test]
fn backlogged_tenants_alone_keep_the_full_rate() {
    let start = Instant::now();
    let mut s = Scheduler::new(flood_budget());
    for id in ["a", "b"] {
        s.upsert_tenant(t(id), unlimited(1));
        s.work_arrived(&t(id), 1_000_000).unwrap();
    }
    let mut now = start;
    let mut grants = 0u32;
    while now < start + Duration::from_secs(10) {
        let (at, _) = next_grant(&mut s, now);
        now = at;
        grants += 1;
    }
    // 5 at once, less the reserve, then one every 10 ms for 10 s.
    assert!((1_003..=1_005).contains(&grants), "{grants}");
}

/// Leased permits (several replicas): 3 permits valid for 1.2 s.
fn leased_with_a_backlog(now: Instant) -> Scheduler {
    let mut s = Scheduler::new(GlobalLimits::leased(100));
    for id in ["noisy", "quiet"] {
        s.upsert_tenant(t(id), unlimited(1));
    }
    s.work_arrived(&t("noisy"), 1_000).unwrap();
    s.add_fleet_permits(3, now + Duration::from_millis(1_200));
    s
}

#[test]
fn with_leased_permits_the_last_one_is_kept_for_a_sparse_tenant() {
    let now = Instant::now();
    let mut s = leased_with_a_backlog(now);
    // The flooder's first send is sparse (it never sent); backlogged after
    // it, it takes one more and leaves the last.
    assert_eq!(grant_all_now(&mut s, now), [t("noisy"), t("noisy")]);
    assert!(
        matches!(s.next(now), Decision::NeedFleetPermits { wanted: 1, .. }),
        "it leases more rather than take the reserve"
    );
    assert_eq!(s.fleet_permits_held(now), 1);
    s.work_arrived(&t("quiet"), 1).unwrap();
    assert_eq!(grant_all_now(&mut s, now), [t("quiet")], "on the spot");
    assert_eq!(s.fleet_permits_held(now), 0);
}

#[test]
fn a_reserved_leased_permit_goes_to_the_backlog_before_it_expires() {
    let now = Instant::now();
    let mut s = leased_with_a_backlog(now);
    grant_all_now(&mut s, now);
    let late = now + Duration::from_millis(900);
    assert!(matches!(s.next(late), Decision::NeedFleetPermits { .. }));
    // Within its last 250 ms nobody sparse came: the backlog uses it.
    let last_part = now + Duration::from_millis(950);
    assert_eq!(grant_all_now(&mut s, last_part), [t("noisy")]);
    assert_eq!(s.fleet_permits_held(last_part), 0);
}

#[test]
fn a_spent_shared_budget_stops_leases_but_not_the_reserve() {
    let now = Instant::now();
    let mut s = leased_with_a_backlog(now);
    grant_all_now(&mut s, now);
    let next_permit = now + Duration::from_millis(10);
    s.lease_later(next_permit);
    assert!(
        matches!(s.next(now), Decision::WaitUntil(at) if at == next_permit),
        "no lease before the budget's next permit"
    );
    assert_eq!(s.fleet_paused_until(now), Some(next_permit));
    s.work_arrived(&t("quiet"), 1).unwrap();
    assert_eq!(
        grant_all_now(&mut s, now),
        [t("quiet")],
        "the reserve is still there"
    );
    assert!(matches!(
        s.next(next_permit),
        Decision::NeedFleetPermits { .. }
    ));
}

#[test]
fn a_sparse_member_waiting_for_a_permit_is_reported_for_its_lease() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::leased(100));
    for id in ["noisy", "quiet"] {
        s.upsert_tenant(t(id), unlimited(1));
    }
    s.work_arrived(&t("noisy"), 1_000).unwrap();
    s.add_fleet_permits(1, now + Duration::from_secs(1));
    grant_all_now(&mut s, now);
    let sparse_waiting = |s: &mut Scheduler| match s.next(now) {
        Decision::NeedFleetPermits { sparse_waiting, .. } => sparse_waiting,
        other => panic!("expected a lease, got {other:?}"),
    };
    assert!(
        !sparse_waiting(&mut s),
        "a backlog alone leases as a backlog"
    );
    s.work_arrived(&t("quiet"), 1).unwrap();
    assert!(sparse_waiting(&mut s));
    s.pause(&t("quiet"), PauseReason::Operator, None).unwrap();
    assert!(!sparse_waiting(&mut s), "only one that could send");
}
