//! The scheduler's tenants, each in a numbered slot: the DRR ring and every
//! pass over it (the survey before each decision, the pick, the sparse
//! rules) go by slot number, so a pass over a thousand tenants indexes a
//! vector instead of hashing and comparing a thousand tenant ids, and turning
//! the ring clones no id. The map from id to slot serves the calls that name
//! a tenant (work arrived, pauses, completions).
//!
//! Written by hand: a slab with an index is a dozen lines here, and the
//! crates that offer one (slab, slotmap) would still need the id map beside
//! them. Issue 20: at 1,000 tenants, the survey's lookups by id were 38 % of
//! the sender's CPU, and grew with the backlog they were slowing down.

use std::collections::HashMap;

use switchyard_shared::ids::TenantId;

use super::tenant_state::TenantState;

/// Where a tenant lives in the table; valid until the tenant is removed
/// (the scheduler takes a removed tenant's slot out of its ring first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot(u32);

/// Tenants by id and by slot.
#[derive(Debug, Default)]
pub(super) struct TenantTable {
    slots: HashMap<TenantId, Slot>,
    entries: Vec<Option<(TenantId, TenantState)>>,
    free: Vec<Slot>,
}

impl TenantTable {
    /// The slot of a known tenant.
    pub(super) fn slot(&self, tenant: &TenantId) -> Option<Slot> {
        self.slots.get(tenant).copied()
    }

    pub(super) fn get(&self, tenant: &TenantId) -> Option<&TenantState> {
        self.slot(tenant).map(|s| self.at(s))
    }

    pub(super) fn get_mut(&mut self, tenant: &TenantId) -> Option<&mut TenantState> {
        self.slot(tenant).map(|s| self.at_mut(s))
    }

    /// The tenant in `slot`. Panics on a freed slot: a ring that kept one
    /// is a bug of the scheduler, not a state to carry on from.
    pub(super) fn at(&self, slot: Slot) -> &TenantState {
        &self.entry(slot).1
    }

    pub(super) fn at_mut(&mut self, slot: Slot) -> &mut TenantState {
        match self.entries.get_mut(slot.0 as usize) {
            Some(Some((_, state))) => state,
            _ => panic!("tenant slot {} is free", slot.0),
        }
    }

    /// The id of the tenant in `slot`.
    pub(super) fn id_at(&self, slot: Slot) -> &TenantId {
        &self.entry(slot).0
    }

    fn entry(&self, slot: Slot) -> &(TenantId, TenantState) {
        match self.entries.get(slot.0 as usize) {
            Some(Some(entry)) => entry,
            _ => panic!("tenant slot {} is free", slot.0),
        }
    }

    /// Adds a tenant not in the table yet.
    pub(super) fn insert(&mut self, tenant: TenantId, state: TenantState) -> Slot {
        debug_assert!(!self.slots.contains_key(&tenant), "{tenant} added twice");
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let Ok(n) = u32::try_from(self.entries.len()) else {
                    panic!("more than 2^32 tenants in one scheduler");
                };
                self.entries.push(None);
                Slot(n)
            }
        };
        self.entries[slot.0 as usize] = Some((tenant.clone(), state));
        self.slots.insert(tenant, slot);
        slot
    }

    /// Removes a tenant; its slot is reused by a later insert.
    pub(super) fn remove(&mut self, tenant: &TenantId) -> Option<Slot> {
        let slot = self.slots.remove(tenant)?;
        self.entries[slot.0 as usize] = None;
        self.free.push(slot);
        Some(slot)
    }

    /// Every tenant, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&TenantId, &TenantState)> {
        self.entries.iter().flatten().map(|(id, state)| (id, state))
    }
}

#[cfg(test)]
mod tests {
    use switchyard_shared::tenants::SendLimits;

    use super::*;

    fn state(generation: u64) -> TenantState {
        let limits = SendLimits {
            weight: 1,
            sends_per_minute: 60,
            send_burst: 1,
            max_in_flight: 1,
        };
        TenantState::new(limits, generation)
    }

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn a_removed_tenants_slot_goes_to_the_next_one_and_ids_follow_their_slots() {
        let mut t = TenantTable::default();
        let a = t.insert(id("a"), state(1));
        let b = t.insert(id("b"), state(2));
        assert_ne!(a, b);
        assert_eq!((t.id_at(a), t.at(b).generation), (&id("a"), 2));
        assert_eq!(t.remove(&id("a")), Some(a));
        assert_eq!(t.remove(&id("a")), None, "gone");
        assert!(t.get(&id("a")).is_none());
        let c = t.insert(id("c"), state(3));
        assert_eq!(c, a, "the freed slot is reused");
        assert_eq!((t.id_at(c), t.at(c).generation), (&id("c"), 3));
        assert_eq!(t.slot(&id("b")), Some(b));
        let mut ids: Vec<&str> = t.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    #[should_panic(expected = "is free")]
    fn reading_a_freed_slot_is_a_bug_that_stops() {
        let mut t = TenantTable::default();
        let a = t.insert(id("a"), state(1));
        t.remove(&id("a"));
        let _ = t.at(a);
    }
}
