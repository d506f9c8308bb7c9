//! Live before bulk, driven with made-up instants: a tenant's bulk lane is
//! served only while it has no live reply ready, never beyond its share of
//! the fleet budget, never in its tenant's last in-flight slot, and never at
//! another tenant's expense.

use std::time::Duration;

use switchyard_shared::{ids::TenantId, tenants::SendLimits};
use tokio::time::Instant;

use super::*;

fn t(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

fn limits(max_in_flight: u32) -> SendLimits {
    SendLimits {
        weight: 1,
        sends_per_minute: 1_000_000,
        send_burst: 1_000_000,
        max_in_flight,
    }
}

/// A fleet budget that binds (`per_minute`, one at a time) or, for 0, none.
fn scheduler(fleet_per_minute: u32) -> Scheduler {
    Scheduler::new(match fleet_per_minute {
        0 => GlobalLimits::local(1_000_000, 1_000_000, 1_000_000),
        n => GlobalLimits::local(n, 1, 1_000_000),
    })
}

#[test]
fn live_replies_arriving_during_a_replay_are_granted_before_any_more_bulk() {
    let mut s = scheduler(0);
    let a = t("alpha");
    s.upsert_tenant(a.clone(), limits(100));
    s.bulk_arrived(&a, 1_000).unwrap();
    let now = Instant::now();
    for _ in 0..5 {
        let Decision::Send(g) = s.next(now) else {
            panic!("bulk alone is served")
        };
        assert_eq!(g.class(), LaneClass::Bulk);
        s.completed_at(g, GrantOutcome::Delivered, now);
    }
    s.work_arrived(&a, 3).unwrap();
    for _ in 0..3 {
        let Decision::Send(g) = s.next(now) else {
            panic!("live is served")
        };
        assert_eq!(g.class(), LaneClass::Live, "live goes before bulk");
        s.completed_at(g, GrantOutcome::Delivered, now);
    }
    let Decision::Send(g) = s.next(now) else {
        panic!("bulk resumes")
    };
    assert_eq!(
        g.class(),
        LaneClass::Bulk,
        "bulk resumes once live is empty"
    );
    assert_eq!(s.bulk_ready(&a), Some(1_000 - 6));
}

#[test]
fn a_tenants_bulk_never_takes_more_than_its_share_of_the_fleet_budget() {
    // Fleet 1,200/min; alpha's bulk may take 25 % (300/min, burst 15).
    let mut s = scheduler(1_200);
    let a = t("alpha");
    s.upsert_tenant(a.clone(), limits(100));
    s.set_bulk_rate(&a, Some((300, 15))).unwrap();
    s.bulk_arrived(&a, 100_000).unwrap();
    let start = Instant::now();
    let mut now = start;
    let mut bulk = 0u32;
    while now < start + Duration::from_secs(60) {
        match s.next(now) {
            Decision::Send(g) => {
                assert_eq!(g.class(), LaneClass::Bulk);
                bulk += 1;
                s.completed_at(g, GrantOutcome::Delivered, now);
            }
            Decision::WaitUntil(at) => now = at,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        (295..=315).contains(&bulk),
        "bulk got {bulk} sends in a minute; its share is 300 (+15 burst)"
    );
}

#[test]
fn live_work_uses_the_fleet_budget_bulk_leaves_over() {
    let mut s = scheduler(1_200);
    let (a, b) = (t("alpha"), t("bravo"));
    for id in [&a, &b] {
        s.upsert_tenant(id.clone(), limits(100));
    }
    s.set_bulk_rate(&a, Some((300, 15))).unwrap();
    s.bulk_arrived(&a, 100_000).unwrap();
    s.work_arrived(&b, 100_000).unwrap();
    let start = Instant::now();
    let mut now = start;
    let (mut bulk, mut live) = (0u32, 0u32);
    while now < start + Duration::from_secs(60) {
        match s.next(now) {
            Decision::Send(g) => {
                match g.class() {
                    LaneClass::Bulk => bulk += 1,
                    LaneClass::Live => live += 1,
                }
                s.completed_at(g, GrantOutcome::Delivered, now);
            }
            Decision::WaitUntil(at) => now = at,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(bulk <= 315, "bulk stayed within its share: {bulk}");
    assert!(
        live >= 1_200 - 315 - 2,
        "the live tenant got the rest of the budget: {live} (bulk {bulk})"
    );
}

#[test]
fn another_tenants_live_reply_is_granted_at_once_beside_a_replay() {
    let mut s = scheduler(0);
    let (a, b) = (t("alpha"), t("bravo"));
    for id in [&a, &b] {
        s.upsert_tenant(id.clone(), limits(1));
    }
    s.bulk_arrived(&a, 1_000).unwrap();
    let now = Instant::now();
    let Decision::Send(first) = s.next(now) else {
        panic!("bulk alone is served")
    };
    s.completed_at(first, GrantOutcome::Delivered, now);
    s.work_arrived(&b, 1).unwrap();
    let mut granted = Vec::new();
    for _ in 0..2 {
        let Decision::Send(g) = s.next(now) else {
            panic!("someone can send")
        };
        granted.push(g.tenant().clone());
        s.completed_at(g, GrantOutcome::Delivered, now);
    }
    assert!(
        granted.contains(&b),
        "bravo waited behind alpha's replay: {granted:?}"
    );
}

#[test]
fn bulk_leaves_a_tenants_last_in_flight_slot_to_live_replies() {
    let mut s = scheduler(0);
    let a = t("alpha");
    s.upsert_tenant(a.clone(), limits(3));
    s.bulk_arrived(&a, 100).unwrap();
    let now = Instant::now();
    let mut held = Vec::new();
    while let Decision::Send(g) = s.next(now) {
        assert_eq!(g.class(), LaneClass::Bulk);
        held.push(g);
    }
    assert_eq!(held.len(), 2, "bulk takes all but the last slot");
    s.work_arrived(&a, 1).unwrap();
    let Decision::Send(live) = s.next(now) else {
        panic!("the last slot is there for a live reply")
    };
    assert_eq!(live.class(), LaneClass::Live);
    s.completed_at(live, GrantOutcome::Delivered, now);
    for g in held {
        s.completed_at(g, GrantOutcome::Delivered, now);
    }
}

#[test]
fn a_paced_tenant_waits_at_most_one_gap_for_a_live_reply_during_a_replay() {
    let gap = Duration::from_millis(1_000);
    let mut s = scheduler(0);
    let a = t("alpha");
    s.upsert_tenant(a.clone(), limits(10));
    s.set_pacing(&a, gap).unwrap();
    s.bulk_arrived(&a, 1_000).unwrap();
    let start = Instant::now();
    let Decision::Send(g) = s.next(start) else {
        panic!("bulk is served")
    };
    // The bulk send is answered 100 ms later; a live reply arrives then.
    let answered = start + Duration::from_millis(100);
    s.completed_at(g, GrantOutcome::Delivered, answered);
    s.work_arrived(&a, 1).unwrap();
    let mut now = answered;
    let live_at = loop {
        match s.next(now) {
            Decision::Send(g) => {
                assert_eq!(g.class(), LaneClass::Live, "no bulk goes before it");
                s.completed_at(g, GrantOutcome::Delivered, now);
                break now;
            }
            Decision::WaitUntil(at) => now = at,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(
        live_at - answered <= gap + gap / 2,
        "the live reply waited {:?}, more than the gap plus jitter",
        live_at - answered
    );
}
