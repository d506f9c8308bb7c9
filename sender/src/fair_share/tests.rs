//! Behaviour of the scheduler, driven with made-up instants.

use std::{collections::HashMap, time::Duration};

use switchyard_shared::{ids::TenantId, tenants::SendLimits};
use tokio::time::Instant;

use super::*;

fn t(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

fn limits(weight: u32, sends_per_minute: u32, send_burst: u32, max_in_flight: u32) -> SendLimits {
    SendLimits {
        weight,
        sends_per_minute,
        send_burst,
        max_in_flight,
    }
}

/// A tenant whose own limits never bind.
fn unlimited(weight: u32) -> SendLimits {
    limits(weight, 1_000_000, 1_000_000, 1_000_000)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A fleet budget that never binds.
fn roomy() -> GlobalLimits {
    GlobalLimits::local(1_000_000, 1_000_000, 1_000_000)
}

/// Grants (completed at once as delivered) until `count` grants or `until`,
/// following the scheduler's waits; returns (instant, tenant) per grant.
fn drive(
    s: &mut Scheduler,
    mut now: Instant,
    count: usize,
    until: Instant,
) -> (Vec<(Instant, TenantId)>, Instant) {
    let mut out = Vec::new();
    while out.len() < count && now < until {
        match s.next(now) {
            Decision::Send(grant) => {
                out.push((now, grant.tenant().clone()));
                s.completed(grant, GrantOutcome::Delivered);
            }
            Decision::WaitUntil(at) => {
                assert!(at > now, "a wait must move time forward");
                now = at;
            }
            Decision::Idle => break,
            Decision::NeedFleetPermits { .. } => panic!("local fleet limits never lease"),
        }
    }
    (out, now)
}

fn counts(grants: &[(Instant, TenantId)]) -> HashMap<TenantId, usize> {
    let mut counts = HashMap::new();
    for (_, tenant) in grants {
        *counts.entry(tenant.clone()).or_default() += 1;
    }
    counts
}

fn expect_send(s: &mut Scheduler, now: Instant) -> Grant {
    match s.next(now) {
        Decision::Send(grant) => grant,
        other => panic!("expected a send, got {other:?}"),
    }
}

#[test]
fn weights_5_3_2_split_sends_50_30_20_when_all_are_backlogged() {
    let now = Instant::now();
    let mut s = Scheduler::new(roomy());
    for (name, weight) in [("five", 5), ("three", 3), ("two", 2)] {
        s.upsert_tenant(t(name), unlimited(weight));
        s.work_arrived(&t(name), 1_000_000).unwrap();
    }

    let (grants, _) = drive(&mut s, now, 10_000, now + secs(3600.0));

    let c = counts(&grants);
    for (name, share) in [("five", 0.5), ("three", 0.3), ("two", 0.2)] {
        let got = c[&t(name)] as f64 / 10_000.0;
        assert!((got - share).abs() <= 0.03 * share, "{name}: {got}");
    }
}

#[test]
fn weights_hold_under_a_binding_fleet_budget_too() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(120, 1, 100));
    for (name, weight) in [("five", 5), ("three", 3), ("two", 2)] {
        s.upsert_tenant(t(name), unlimited(weight));
        s.work_arrived(&t(name), 1_000_000).unwrap();
    }

    let (grants, _) = drive(&mut s, now, usize::MAX, now + secs(600.0));

    assert_eq!(grants.len(), 1200);
    let c = counts(&grants);
    assert!((595..=605).contains(&c[&t("five")]), "{c:?}");
    assert!((355..=365).contains(&c[&t("three")]), "{c:?}");
    assert!((235..=245).contains(&c[&t("two")]), "{c:?}");
}

#[test]
fn a_busy_tenant_does_not_delay_a_quiet_one() {
    // The fleet budget binds (2 sends a second); the busy tenant is heavy.
    let start = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(120, 1, 100));
    s.upsert_tenant(t("busy"), unlimited(10));
    s.upsert_tenant(t("quiet"), unlimited(1));
    s.work_arrived(&t("busy"), 100_000).unwrap();
    let (_, now) = drive(&mut s, start, 50, start + secs(3600.0));

    s.work_arrived(&t("quiet"), 1).unwrap();
    let (grants, _) = drive(&mut s, now, 3, now + secs(60.0));

    let position = grants.iter().position(|(_, who)| *who == t("quiet"));
    assert!(
        matches!(position, Some(0 | 1)),
        "quiet went out at position {position:?}"
    );
    let (sent_at, _) = grants[position.unwrap()];
    assert!(sent_at - now <= secs(1.0), "waited {:?}", sent_at - now);
}

#[test]
fn an_idle_tenant_does_not_bank_credit() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(120, 1, 100));
    s.upsert_tenant(t("a"), unlimited(1));
    s.upsert_tenant(t("b"), unlimited(1));
    s.work_arrived(&t("a"), 100_000).unwrap();
    // B is idle for ten minutes while A uses everything.
    let (alone, now) = drive(&mut s, now, usize::MAX, now + secs(600.0));
    assert_eq!(counts(&alone)[&t("a")], alone.len());

    s.work_arrived(&t("b"), 100_000).unwrap();
    let (after, _) = drive(&mut s, now, 100, now + secs(3600.0));

    let b = counts(&after)[&t("b")];
    assert!((49..=51).contains(&b), "b got {b} of 100");
}

#[test]
fn a_tenant_alone_uses_the_whole_fleet_budget() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(120, 1, 100));
    for name in ["a", "b", "c", "d"] {
        s.upsert_tenant(t(name), unlimited(1));
    }
    s.work_arrived(&t("a"), 100_000).unwrap();

    let (grants, _) = drive(&mut s, now, usize::MAX, now + secs(60.0));

    assert_eq!(grants.len(), 120);
}

#[test]
fn a_paused_tenant_is_skipped_and_its_share_goes_to_others() {
    let now = Instant::now();
    let mut s = Scheduler::new(roomy());
    for name in ["a", "b", "c"] {
        s.upsert_tenant(t(name), unlimited(1));
        s.work_arrived(&t(name), 100_000).unwrap();
    }
    s.pause(&t("b"), PauseReason::BridgeDisconnected, None)
        .unwrap();

    let (paused, now) = drive(&mut s, now, 300, now + secs(60.0));
    let c = counts(&paused);
    assert_eq!(c.get(&t("b")), None);
    assert_eq!((c[&t("a")], c[&t("c")]), (150, 150));

    s.resume(&t("b"), PauseReason::BridgeDisconnected).unwrap();
    let (resumed, _) = drive(&mut s, now, 300, now + secs(60.0));
    let c = counts(&resumed);
    assert!((99..=101).contains(&c[&t("b")]), "{c:?}");
}

#[test]
fn each_pause_reason_is_lifted_on_its_own() {
    let now = Instant::now();
    let mut s = Scheduler::new(roomy());
    s.upsert_tenant(t("a"), unlimited(1));
    s.work_arrived(&t("a"), 10).unwrap();
    s.pause(&t("a"), PauseReason::BridgeDisconnected, None)
        .unwrap();
    s.pause(&t("a"), PauseReason::Operator, None).unwrap();

    s.resume(&t("a"), PauseReason::BridgeDisconnected).unwrap();
    assert!(matches!(s.next(now), Decision::Idle));
    assert_eq!(s.pause_reasons(&t("a"), now), vec![PauseReason::Operator]);

    s.resume_all(&t("a")).unwrap();
    let _grant = expect_send(&mut s, now);
}

#[test]
fn a_pause_with_an_end_lifts_itself() {
    let now = Instant::now();
    let mut s = Scheduler::new(roomy());
    s.upsert_tenant(t("a"), unlimited(1));
    s.work_arrived(&t("a"), 10).unwrap();
    s.pause(&t("a"), PauseReason::Restricted, Some(now + secs(30.0)))
        .unwrap();

    assert!(matches!(s.next(now), Decision::WaitUntil(at) if at == now + secs(30.0)));
    let _grant = expect_send(&mut s, now + secs(30.0));
}

#[test]
fn the_fleet_budget_caps_the_total_rate() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(120, 10, 1000));
    for name in ["a", "b", "c"] {
        s.upsert_tenant(t(name), unlimited(1));
        s.work_arrived(&t(name), 100_000).unwrap();
    }

    let (grants, _) = drive(&mut s, now, usize::MAX, now + secs(300.0));

    // A full bucket of 10, then exactly one every 500 ms; backlogged
    // tenants leave the last token for a sparse one that never comes.
    assert_eq!(grants.len(), 10 + 600 - 1 - SPARSE_RESERVE as usize);
    for window in grants.windows(11) {
        let span = window[10].0 - window[0].0;
        assert!(span >= secs(0.5), "11 sends within {span:?}");
    }
}

#[test]
fn a_tenant_budget_caps_that_tenant_only() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(600, 1, 1000));
    s.upsert_tenant(t("capped"), limits(1, 60, 1, 1000));
    s.upsert_tenant(t("free"), unlimited(1));
    s.work_arrived(&t("capped"), 100_000).unwrap();
    s.work_arrived(&t("free"), 100_000).unwrap();

    let (grants, _) = drive(&mut s, now, usize::MAX, now + secs(60.0));

    let c = counts(&grants);
    assert_eq!(c[&t("capped")], 60);
    assert_eq!(c[&t("free")], 600 - 60);
}

#[test]
fn the_global_in_flight_cap_holds() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(1_000_000, 1_000_000, 3));
    for name in ["a", "b"] {
        s.upsert_tenant(t(name), unlimited(1));
        s.work_arrived(&t(name), 100).unwrap();
    }

    let grants: Vec<Grant> = (0..3).map(|_| expect_send(&mut s, now)).collect();
    assert!(matches!(s.next(now), Decision::Idle));
    assert_eq!(s.in_flight(), 3);

    let mut grants = grants.into_iter();
    s.completed(grants.next().unwrap(), GrantOutcome::Delivered);
    let _again = expect_send(&mut s, now);
    assert!(matches!(s.next(now), Decision::Idle));
}

#[test]
fn a_tenant_in_flight_cap_holds_while_others_go_on() {
    let now = Instant::now();
    let mut s = Scheduler::new(roomy());
    s.upsert_tenant(t("slow"), limits(1, 1_000_000, 1_000_000, 2));
    s.upsert_tenant(t("other"), unlimited(1));
    s.work_arrived(&t("slow"), 100).unwrap();
    s.work_arrived(&t("other"), 100).unwrap();

    let mut held = Vec::new();
    for _ in 0..20 {
        let grant = expect_send(&mut s, now);
        if grant.tenant() == &t("slow") {
            held.push(grant); // the slow bridge never answers
        } else {
            s.completed(grant, GrantOutcome::Delivered);
        }
    }

    assert_eq!(held.len(), 2);
    assert_eq!(s.tenant_in_flight(&t("slow")), Some(2));
}

#[test]
fn a_fleet_pause_stops_everyone_until_it_ends() {
    let now = Instant::now();
    let mut s = Scheduler::new(roomy());
    for name in ["a", "b"] {
        s.upsert_tenant(t(name), unlimited(1));
        s.work_arrived(&t(name), 100).unwrap();
    }
    let end = now + secs(30.0);
    s.pause_fleet_until(end);
    // An earlier end does not shorten it.
    s.pause_fleet_until(now + secs(5.0));

    assert!(matches!(s.next(now), Decision::WaitUntil(at) if at == end));
    assert!(matches!(s.next(end - secs(0.001)), Decision::WaitUntil(at) if at == end));
    let (grants, _) = drive(&mut s, end, 2, end + secs(1.0));
    assert_eq!(grants.len(), 2);
}

#[test]
fn wait_until_reports_the_earliest_possible_instant() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(60, 1, 100));
    s.upsert_tenant(t("a"), limits(1, 6, 1, 10)); // one per 10 s
    s.upsert_tenant(t("b"), unlimited(1));
    s.work_arrived(&t("a"), 10).unwrap();
    s.work_arrived(&t("b"), 10).unwrap();
    s.pause(&t("b"), PauseReason::Operator, Some(now + secs(4.0)))
        .unwrap();

    let first = expect_send(&mut s, now);
    assert_eq!(first.tenant(), &t("a"));
    s.completed(first, GrantOutcome::Delivered);
    // The fleet has a token again at +1 s, but A's comes at +10 s and B's pause ends at +4 s.
    assert!(matches!(s.next(now), Decision::WaitUntil(at) if at == now + secs(4.0)));

    s.resume_all(&t("b")).unwrap();
    // Now only the fleet bucket holds B back.
    assert!(matches!(s.next(now), Decision::WaitUntil(at) if at == now + secs(1.0)));
    let second = expect_send(&mut s, now + secs(1.0));
    assert_eq!(second.tenant(), &t("b"));
}

#[test]
fn without_work_or_with_only_open_ended_pauses_it_is_idle() {
    let now = Instant::now();
    let mut s = Scheduler::new(roomy());
    s.upsert_tenant(t("a"), unlimited(1));
    assert!(matches!(s.next(now), Decision::Idle));

    s.work_arrived(&t("a"), 1).unwrap();
    s.pause(&t("a"), PauseReason::Unauthorized, None).unwrap();
    assert!(matches!(s.next(now), Decision::Idle));
}

#[test]
fn a_rate_limited_send_gives_back_the_tenant_token_but_not_the_fleet_token() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(2, 3, 100));
    s.upsert_tenant(t("a"), limits(1, 1, 1, 10));
    s.work_arrived(&t("a"), 10).unwrap();

    let grant = expect_send(&mut s, now);
    s.completed(grant, GrantOutcome::RateLimited);
    s.work_arrived(&t("a"), 1).unwrap();

    // The tenant can go again at once; the fleet has one token left, its
    // sparse reserve, which a backlogged tenant may not take (had the fleet
    // tokens come back, it could).
    let grant = expect_send(&mut s, now);
    s.completed(grant, GrantOutcome::RateLimited);
    s.work_arrived(&t("a"), 1).unwrap();
    assert!(matches!(s.next(now), Decision::WaitUntil(_)));
}

#[test]
fn a_grant_not_attempted_gives_back_both_tokens() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(1, 1, 100));
    s.upsert_tenant(t("a"), limits(1, 1, 1, 10));
    s.work_arrived(&t("a"), 10).unwrap();

    for _ in 0..5 {
        let grant = expect_send(&mut s, now);
        s.completed(grant, GrantOutcome::NotAttempted);
    }
    let grant = expect_send(&mut s, now);
    s.completed(grant, GrantOutcome::Failed);
    assert!(matches!(s.next(now), Decision::WaitUntil(_)));
    assert_eq!(s.ready(&t("a")), Some(4));
}

#[test]
fn leased_mode_asks_for_as_many_permits_as_can_start() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::leased(2));
    for name in ["a", "b", "c"] {
        s.upsert_tenant(t(name), unlimited(1));
        s.work_arrived(&t(name), 10).unwrap();
    }

    assert!(matches!(
        s.next(now),
        Decision::NeedFleetPermits { wanted: 2, .. }
    ));
    s.add_fleet_permits(1, now + secs(1.0));
    let _grant = expect_send(&mut s, now);
    assert!(matches!(
        s.next(now),
        Decision::NeedFleetPermits { wanted: 1, .. }
    ));
}

#[test]
fn leased_permits_expire_and_a_fleet_pause_drops_them() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::leased(100));
    s.upsert_tenant(t("a"), unlimited(1));
    s.work_arrived(&t("a"), 10).unwrap();

    s.add_fleet_permits(3, now + secs(1.0));
    assert_eq!(s.fleet_permits_held(now), 3);
    assert!(matches!(
        s.next(now + secs(1.0)),
        Decision::NeedFleetPermits { .. }
    ));

    s.add_fleet_permits(3, now + secs(5.0));
    let grant = expect_send(&mut s, now);
    s.completed(grant, GrantOutcome::NotAttempted);
    assert_eq!(s.fleet_permits_held(now), 3, "an unused permit comes back");
    s.pause_fleet_until(now + secs(2.0));
    assert_eq!(s.fleet_permits_held(now), 0);
}

#[test]
fn a_removed_tenant_keeps_its_global_slots_until_its_grants_complete() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(1_000_000, 1_000_000, 2));
    s.upsert_tenant(t("a"), limits(1, 1_000_000, 1_000_000, 1));
    s.work_arrived(&t("a"), 10).unwrap();
    let old = expect_send(&mut s, now);

    assert!(s.remove_tenant(&t("a")));
    s.upsert_tenant(t("a"), limits(1, 1_000_000, 1_000_000, 1));
    s.work_arrived(&t("a"), 10).unwrap();
    let new = expect_send(&mut s, now);
    assert_eq!(s.in_flight(), 2);

    // The old grant must not free the new tenant's only slot.
    s.completed(old, GrantOutcome::Delivered);
    assert_eq!(s.tenant_in_flight(&t("a")), Some(1));
    assert_eq!(s.in_flight(), 1);
    s.completed(new, GrantOutcome::Delivered);
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn changing_limits_keeps_the_tenants_work_and_spending() {
    let now = Instant::now();
    let mut s = Scheduler::new(roomy());
    s.upsert_tenant(t("a"), limits(1, 60, 1, 10));
    s.work_arrived(&t("a"), 10).unwrap();
    let grant = expect_send(&mut s, now);
    s.completed(grant, GrantOutcome::Delivered);

    s.upsert_tenant(t("a"), limits(3, 60, 1, 10));

    assert_eq!(s.ready(&t("a")), Some(9));
    assert!(matches!(s.next(now), Decision::WaitUntil(at) if at == now + secs(1.0)));
}

#[test]
fn unknown_tenants_are_reported() {
    let mut s = Scheduler::new(roomy());
    assert_eq!(
        s.work_arrived(&t("ghost"), 1),
        Err(UnknownTenant(t("ghost")))
    );
    assert!(s.pause(&t("ghost"), PauseReason::Operator, None).is_err());
}
