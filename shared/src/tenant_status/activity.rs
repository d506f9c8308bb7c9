//! Recent activity per tenant that a service counts as it happens (an event
//! in, a reply out, a dead letter), for its status records. Cheap to touch
//! from any task (one short lock); memory is bounded by the tenants active in
//! the last hour, and dead letters are counted in minute buckets.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
};

use crate::ids::TenantId;

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Default, Clone)]
struct Entry {
    last_in_ms: Option<i64>,
    last_out_ms: Option<i64>,
    /// (minute, dead letters in it), oldest first, the last hour only.
    dead_letters: VecDeque<(i64, u64)>,
}

/// What one tenant did lately.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recent {
    pub last_in_ms: Option<i64>,
    pub last_out_ms: Option<i64>,
    pub dead_letters_last_hour: u64,
}

#[derive(Debug, Default)]
struct Inner {
    tenants: HashMap<TenantId, Entry>,
    /// Tenants touched since the last [`Activity::take_touched`].
    touched: HashSet<TenantId>,
}

/// Shared by the tasks of one service; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<Mutex<Inner>>);

impl Activity {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut inner = match self.0.lock() {
            Ok(g) => g,
            // A panic elsewhere while counting leaves counts, not broken invariants.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut inner)
    }

    /// An event for the tenant came in at `at_ms`.
    pub fn event_in(&self, tenant: &TenantId, at_ms: i64) {
        self.with(|i| {
            let e = i.tenants.entry(tenant.clone()).or_default();
            e.last_in_ms = e.last_in_ms.max(Some(at_ms));
            i.touched.insert(tenant.clone());
        });
    }

    /// A reply for the tenant went out at `at_ms`.
    pub fn send_out(&self, tenant: &TenantId, at_ms: i64) {
        self.with(|i| {
            let e = i.tenants.entry(tenant.clone()).or_default();
            e.last_out_ms = e.last_out_ms.max(Some(at_ms));
            i.touched.insert(tenant.clone());
        });
    }

    /// A message of the tenant was dead-lettered at `at_ms`.
    pub fn dead_letter(&self, tenant: &TenantId, at_ms: i64) {
        self.with(|i| {
            let e = i.tenants.entry(tenant.clone()).or_default();
            let minute = at_ms.div_euclid(MINUTE_MS);
            match e.dead_letters.back_mut() {
                Some((m, n)) if *m == minute => *n += 1,
                _ => e.dead_letters.push_back((minute, 1)),
            }
            i.touched.insert(tenant.clone());
        });
    }

    /// The tenant's recent activity at `now_ms`.
    pub fn recent(&self, tenant: &TenantId, now_ms: i64) -> Recent {
        self.with(|i| {
            i.tenants
                .get(tenant)
                .map_or_else(Recent::default, |e| Recent {
                    last_in_ms: e.last_in_ms,
                    last_out_ms: e.last_out_ms,
                    dead_letters_last_hour: e
                        .dead_letters
                        .iter()
                        .filter(|(m, _)| (m + 1) * MINUTE_MS > now_ms - HOUR_MS)
                        .map(|(_, n)| n)
                        .sum(),
                })
        })
    }

    /// The tenants touched since the last call; forgets tenants idle for an
    /// hour (their last record has long expired from the bucket).
    pub fn take_touched(&self, now_ms: i64) -> Vec<TenantId> {
        self.with(|i| {
            i.tenants.retain(|_, e| {
                while e
                    .dead_letters
                    .front()
                    .is_some_and(|(m, _)| (m + 1) * MINUTE_MS <= now_ms - HOUR_MS)
                {
                    e.dead_letters.pop_front();
                }
                let last = e.last_in_ms.max(e.last_out_ms).unwrap_or(i64::MIN);
                !e.dead_letters.is_empty() || last > now_ms - HOUR_MS
            });
            i.touched.drain().collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_count_for_an_hour_and_touches_are_taken_once() {
        let a = Activity::new();
        let t = TenantId::parse("acme").unwrap();
        let start = 10 * HOUR_MS;
        a.dead_letter(&t, start);
        a.dead_letter(&t, start + 1);
        a.send_out(&t, start + 2);
        assert_eq!(a.recent(&t, start + 5).dead_letters_last_hour, 2);
        assert_eq!(a.recent(&t, start + 5).last_out_ms, Some(start + 2));
        assert_eq!(a.take_touched(start + 5), vec![t.clone()]);
        assert!(a.take_touched(start + 6).is_empty());
        let later = start + HOUR_MS + 2 * MINUTE_MS;
        assert_eq!(a.recent(&t, later).dead_letters_last_hour, 0);
        a.take_touched(later);
        assert_eq!(
            a.recent(&t, later),
            Recent::default(),
            "forgotten after an idle hour"
        );
    }
}
