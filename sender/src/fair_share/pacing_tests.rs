//! The pacing gate, driven with made-up instants: a paced tenant's sends are
//! at least the gap apart (plus at most half of it as jitter), one at a time,
//! and the gap's idle time goes to the other tenants (work-conserving).

use std::time::Duration;

use switchyard_shared::{ids::TenantId, tenants::SendLimits};
use tokio::time::Instant;

use super::*;

fn t(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

fn unlimited() -> SendLimits {
    SendLimits {
        weight: 1,
        sends_per_minute: 1_000_000,
        send_burst: 1_000_000,
        max_in_flight: 1_000,
    }
}

fn roomy() -> GlobalLimits {
    GlobalLimits::local(1_000_000, 1_000_000, 1_000_000)
}

const GAP: Duration = Duration::from_millis(1000);

fn paced_scheduler(tenants: &[(&str, Duration)]) -> Scheduler {
    let mut s = Scheduler::new(roomy());
    for (id, gap) in tenants {
        s.upsert_tenant(t(id), unlimited());
        s.set_pacing(&t(id), *gap).unwrap();
        s.work_arrived(&t(id), 1_000).unwrap();
    }
    s
}

#[test]
fn a_paced_tenants_grants_are_at_least_the_gap_and_at_most_one_and_a_half_gaps_apart() {
    let mut s = paced_scheduler(&[("slow", GAP)]);
    let mut now = Instant::now();
    let mut granted = Vec::new();
    while granted.len() < 50 {
        match s.next(now) {
            Decision::Send(grant) => {
                granted.push(now);
                s.completed_at(grant, GrantOutcome::Delivered, now);
            }
            Decision::WaitUntil(at) => {
                assert!(at > now, "a wait moves time forward");
                now = at;
            }
            other => panic!("a paced tenant with work is never idle: {other:?}"),
        }
    }
    let gaps: Vec<Duration> = granted.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g >= GAP), "{gaps:?}");
    assert!(gaps.iter().all(|g| *g <= GAP + GAP / 2), "{gaps:?}");
    // Jitter: the gaps are not all equal (a fixed rhythm looks like a bot).
    assert!(gaps.iter().any(|g| *g != gaps[0]), "{gaps:?}");
}

#[test]
fn the_gap_counts_from_the_answer_so_a_slow_send_pushes_the_next_one_later() {
    let mut s = paced_scheduler(&[("slow", GAP)]);
    let start = Instant::now();
    let grant = match s.next(start) {
        Decision::Send(g) => g,
        other => panic!("{other:?}"),
    };
    // One at a time: nothing while the first send is in flight.
    assert!(matches!(s.next(start + GAP * 5), Decision::Idle));
    let answered = start + Duration::from_secs(3);
    s.completed_at(grant, GrantOutcome::Delivered, answered);
    match s.next(answered) {
        Decision::WaitUntil(at) => {
            assert!(at >= answered + GAP && at <= answered + GAP + GAP / 2)
        }
        other => panic!("expected a wait for the gate, got {other:?}"),
    }
}

#[test]
fn a_grant_never_used_for_a_call_reopens_the_gate() {
    let mut s = paced_scheduler(&[("slow", GAP)]);
    let now = Instant::now();
    let grant = match s.next(now) {
        Decision::Send(g) => g,
        other => panic!("{other:?}"),
    };
    s.completed_at(grant, GrantOutcome::NotAttempted, now);
    assert!(matches!(s.next(now), Decision::Send(_)));
}

#[test]
fn while_one_tenants_gate_is_closed_the_others_get_every_send() {
    let mut s = paced_scheduler(&[("slow", GAP), ("fast", Duration::ZERO)]);
    let start = Instant::now();
    let mut now = start;
    let (mut slow, mut fast) = (0u32, 0u32);
    // 10 sends a second of global pacing by stepping time ourselves.
    while now < start + Duration::from_secs(10) {
        match s.next(now) {
            Decision::Send(grant) => {
                if grant.tenant() == &t("slow") {
                    slow += 1;
                } else {
                    fast += 1;
                }
                s.completed_at(grant, GrantOutcome::Delivered, now);
                now += Duration::from_millis(100);
            }
            Decision::WaitUntil(at) => now = at,
            other => panic!("{other:?}"),
        }
    }
    // slow: one send per 1–1.5 s; fast: everything else (work-conserving).
    assert!((7..=10).contains(&slow), "slow sent {slow}");
    assert!(fast >= 90, "fast sent {fast}");
}

#[test]
fn the_wait_names_the_instant_the_gate_opens_when_only_a_gated_tenant_has_work() {
    let mut s = paced_scheduler(&[("slow", GAP)]);
    let now = Instant::now();
    let grant = match s.next(now) {
        Decision::Send(g) => g,
        other => panic!("{other:?}"),
    };
    s.completed_at(grant, GrantOutcome::Delivered, now);
    let Decision::WaitUntil(at) = s.next(now) else {
        panic!("expected a wait");
    };
    assert!(matches!(
        s.next(at - Duration::from_nanos(1)),
        Decision::WaitUntil(_)
    ));
    assert!(matches!(s.next(at), Decision::Send(_)));
}

#[test]
fn turning_pacing_off_opens_the_gate_at_once_and_restores_the_in_flight_cap() {
    let mut s = paced_scheduler(&[("slow", GAP)]);
    let now = Instant::now();
    let first = match s.next(now) {
        Decision::Send(g) => g,
        other => panic!("{other:?}"),
    };
    s.set_pacing(&t("slow"), Duration::ZERO).unwrap();
    let second = match s.next(now) {
        Decision::Send(g) => g,
        other => panic!("expected a second concurrent send, got {other:?}"),
    };
    s.completed(first, GrantOutcome::Delivered);
    s.completed(second, GrantOutcome::Delivered);
}
