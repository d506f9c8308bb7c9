//! The fleet budget binds its own provider's tenants only: a Cloud API
//! tenant ([`FleetMembership::Exempt`]) neither spends the WA Bridges budget
//! nor waits for it, and a WA Bridges 429 or outage never holds it.

use std::time::Duration;

use switchyard_shared::{ids::TenantId, tenants::SendLimits};
use tokio::time::Instant;

use super::*;

fn t(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

fn limits(sends_per_minute: u32, send_burst: u32) -> SendLimits {
    SendLimits {
        weight: 1,
        sends_per_minute,
        send_burst,
        max_in_flight: 1_000,
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Grants until `until`, completing each at once; counts grants per tenant.
fn drive(s: &mut Scheduler, mut now: Instant, until: Instant) -> (u32, u32) {
    let (mut bridge, mut cloud) = (0, 0);
    while now < until {
        match s.next(now) {
            Decision::Send(grant) => {
                if grant.tenant() == &t("cloud") {
                    cloud += 1;
                } else {
                    bridge += 1;
                }
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
    (bridge, cloud)
}

/// A 60/min fleet budget, a bridge tenant and a Cloud tenant (600/min of
/// its own), both with far more work than either can send.
fn two_channels() -> (Scheduler, Instant) {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(60, 1, 1_000));
    s.upsert_tenant(t("bridge"), limits(1_000_000, 1_000));
    s.upsert_tenant(t("cloud"), limits(600, 1));
    s.set_fleet_membership(&t("cloud"), FleetMembership::Exempt)
        .unwrap();
    for name in ["bridge", "cloud"] {
        s.work_arrived(&t(name), 1_000_000).unwrap();
    }
    (s, now)
}

#[test]
fn a_cloud_tenant_neither_spends_nor_waits_for_the_fleet_budget() {
    let (mut s, now) = two_channels();
    let (bridge, cloud) = drive(&mut s, now, now + secs(60.0));
    // The bridge tenant gets the whole fleet budget (60 a minute, one at
    // once), the Cloud tenant its own 600 a minute beside it.
    assert!((59..=61).contains(&bridge), "bridge sent {bridge}");
    assert!((598..=601).contains(&cloud), "cloud sent {cloud}");
}

#[test]
fn every_tenant_is_a_fleet_member_until_told_otherwise() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::local(60, 1, 1_000));
    for name in ["bridge", "cloud"] {
        s.upsert_tenant(t(name), limits(600, 1));
        s.work_arrived(&t(name), 1_000_000).unwrap();
    }
    assert_eq!(s.is_fleet_member(&t("cloud")), Some(true));
    let (bridge, cloud) = drive(&mut s, now, now + secs(60.0));
    assert!(
        bridge + cloud <= 61,
        "both members share 60 a minute: {bridge} + {cloud}"
    );
    // And back: a member again is bound again.
    s.set_fleet_membership(&t("cloud"), FleetMembership::Exempt)
        .unwrap();
    s.set_fleet_membership(&t("cloud"), FleetMembership::Member)
        .unwrap();
    let later = now + secs(120.0);
    let (bridge, cloud) = drive(&mut s, later, later + secs(60.0));
    assert!(bridge + cloud <= 61, "{bridge} + {cloud}");
    assert!(
        s.set_fleet_membership(&t("nobody"), FleetMembership::Exempt)
            .is_err()
    );
}

#[test]
fn a_fleet_pause_holds_the_bridge_tenants_only() {
    let (mut s, now) = two_channels();
    let end = now + secs(30.0);
    s.pause_fleet_until(end);
    let (bridge, cloud) = drive(&mut s, now, end);
    assert_eq!(bridge, 0, "the 429's pause holds the fleet's tenants");
    assert!(cloud >= 299, "the Cloud tenant went on: {cloud}");
    let (bridge, _) = drive(&mut s, end, end + secs(10.0));
    assert!(
        bridge >= 10,
        "after the pause the bridge tenant sends: {bridge}"
    );
}

#[test]
fn while_the_fleets_provider_is_down_only_cloud_tenants_are_granted() {
    let (mut s, now) = two_channels();
    let mut cloud = 0;
    let mut at = now;
    for _ in 0..50 {
        match s.next_outside_fleet(at) {
            Decision::Send(grant) => {
                assert_eq!(
                    grant.tenant(),
                    &t("cloud"),
                    "no bridge grant during the outage"
                );
                cloud += 1;
                s.completed(grant, GrantOutcome::Delivered);
            }
            Decision::WaitUntil(next) => {
                assert!(next > at);
                at = next;
            }
            other => panic!("expected a Cloud send or a wait, got {other:?}"),
        }
    }
    assert!(cloud >= 20, "{cloud}");
    // With only bridge work, the outage hold leaves nothing to do.
    s.set_ready(&t("cloud"), 0).unwrap();
    assert!(matches!(s.next_outside_fleet(at), Decision::Idle));
    assert!(matches!(s.next(at), Decision::Send(_)));
}

#[test]
fn leased_mode_asks_for_permits_for_members_and_lets_cloud_tenants_go() {
    let now = Instant::now();
    let mut s = Scheduler::new(GlobalLimits::leased(100));
    s.upsert_tenant(t("bridge"), limits(1_000_000, 1_000));
    s.upsert_tenant(t("cloud"), limits(1_000_000, 1_000));
    s.set_fleet_membership(&t("cloud"), FleetMembership::Exempt)
        .unwrap();
    s.work_arrived(&t("bridge"), 5).unwrap();
    s.work_arrived(&t("cloud"), 2).unwrap();
    let mut cloud = Vec::new();
    loop {
        match s.next(now) {
            Decision::Send(grant) => {
                assert_eq!(grant.tenant(), &t("cloud"));
                cloud.push(grant);
            }
            Decision::NeedFleetPermits { wanted, .. } => {
                assert_eq!(wanted, 1, "one member tenant is eligible");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(cloud.len(), 2, "both Cloud replies went without a permit");
    // A Cloud grant never used gives nothing back to the fleet stock.
    for grant in cloud {
        s.completed(grant, GrantOutcome::NotAttempted);
    }
    assert_eq!(s.fleet_permits_held(now), 0);
    // The caller holds those two again.
    s.work_arrived(&t("cloud"), 2).unwrap();
    s.add_fleet_permits(1, now + secs(1.0));
    let mut sent = 0;
    while let Decision::Send(grant) = s.next(now) {
        sent += 1;
        s.completed(grant, GrantOutcome::Delivered);
    }
    // The permit went to a member; the refunded Cloud work went too.
    assert_eq!(sent, 3, "one bridge send on the permit, two Cloud re-sends");
}
