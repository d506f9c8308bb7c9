//! Coalesces identical deliveries that are in flight in this process at the
//! same time, so they cost one claim and one publish.
//!
//! The first delivery of a scoped id leads; the others follow and answer with
//! the leader's outcome: 200 once the event is durable, 503 if it could not be
//! made durable. A follower never answers 200 before the event is durable. If
//! the leader goes away without an outcome (its client disconnected and the
//! request was dropped), a follower takes its turn as the new leader. Across
//! replicas the database claim and the `Nats-Msg-Id` do the same job.
//!
//! A durable event is remembered for [`REMEMBER_DURABLE`] after its leader
//! settles: an identical delivery arriving then is answered as a duplicate
//! at once. Without it, one arriving before the key's `published` mark
//! reached PostgreSQL (marks are written in batches, up to 100 ms late)
//! found the key only `claimed` and published the event again (absorbed by
//! the stream's duplicate window, but a second publish; seen in CI among a
//! hundred identical deliveries).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

/// How long a durable event's outcome answers identical deliveries after
/// its leader settled: well past the mark writer's linger and its write.
pub const REMEMBER_DURABLE: Duration = Duration::from_secs(2);

/// How the leader's delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The event is durable in JetStream.
    Durable,
    /// It could not be made durable.
    Failed,
}

type Slot = watch::Sender<Option<Settled>>;

/// The deliveries in flight in this process, by scoped event id, and the
/// ones that became durable within [`REMEMBER_DURABLE`].
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    leaders: Arc<Mutex<Leaders>>,
}

#[derive(Debug, Default)]
struct Leaders {
    in_flight: HashMap<String, Slot>,
    /// Durable events by when they are forgotten, oldest first (every entry
    /// is remembered equally long, so the queue is in expiry order).
    durable: VecDeque<(Instant, String)>,
    durable_keys: HashSet<String>,
}

impl Leaders {
    fn forget_expired(&mut self, now: Instant) {
        while let Some((until, _)) = self.durable.front() {
            if *until > now {
                break;
            }
            if let Some((_, key)) = self.durable.pop_front() {
                self.durable_keys.remove(&key);
            }
        }
    }
}

/// Whose turn it is.
#[derive(Debug)]
pub enum Turn {
    Lead(Leader),
    Follow(Follower),
}

impl InFlight {
    /// Leads the delivery of `key` if nobody else is, else follows the leader.
    pub fn turn(&self, key: &str) -> Turn {
        let Ok(mut leaders) = self.leaders.lock() else {
            // A poisoned map only loses coalescing; the claim still decides.
            return Turn::Lead(Leader {
                key: None,
                in_flight: self.clone(),
            });
        };
        leaders.forget_expired(Instant::now());
        if leaders.durable_keys.contains(key) {
            return Turn::Follow(Follower(watch::channel(Some(Settled::Durable)).1));
        }
        if let Some(slot) = leaders.in_flight.get(key) {
            return Turn::Follow(Follower(slot.subscribe()));
        }
        leaders
            .in_flight
            .insert(key.to_owned(), watch::channel(None).0);
        Turn::Lead(Leader {
            key: Some(key.to_owned()),
            in_flight: self.clone(),
        })
    }

    fn finish(&self, key: &str, outcome: Option<Settled>) {
        let slot = self.leaders.lock().ok().and_then(|mut l| {
            if outcome == Some(Settled::Durable) && l.durable_keys.insert(key.to_owned()) {
                l.durable
                    .push_back((Instant::now() + REMEMBER_DURABLE, key.to_owned()));
            }
            l.in_flight.remove(key)
        });
        if let (Some(slot), Some(outcome)) = (slot, outcome) {
            slot.send_replace(Some(outcome));
        }
        // Without an outcome the slot is dropped: followers see it closed.
    }
}

/// The delivery that does the work; tells its followers how it ended.
#[derive(Debug)]
pub struct Leader {
    key: Option<String>,
    in_flight: InFlight,
}

impl Leader {
    pub fn settle(mut self, outcome: Settled) {
        if let Some(key) = self.key.take() {
            self.in_flight.finish(&key, Some(outcome));
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.in_flight.finish(&key, None);
        }
    }
}

/// A delivery waiting for the leader of the same event.
#[derive(Debug)]
pub struct Follower(watch::Receiver<Option<Settled>>);

impl Follower {
    /// The leader's outcome, or `None` if it went away without one.
    pub async fn outcome(mut self) -> Option<Settled> {
        self.0.wait_for(Option::is_some).await.ok().and_then(|v| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_outcome() {
        let in_flight = InFlight::default();
        let Turn::Lead(leader) = in_flight.turn("acme:1") else {
            panic!("first must lead")
        };
        let Turn::Follow(follower) = in_flight.turn("acme:1") else {
            panic!("second must follow")
        };
        let waiting = tokio::spawn(follower.outcome());
        leader.settle(Settled::Durable);
        assert_eq!(waiting.await.unwrap(), Some(Settled::Durable));
    }

    #[tokio::test(start_paused = true)]
    async fn a_durable_event_answers_identical_deliveries_until_it_is_forgotten() {
        let in_flight = InFlight::default();
        let Turn::Lead(leader) = in_flight.turn("acme:1") else {
            panic!("first must lead")
        };
        leader.settle(Settled::Durable);
        tokio::time::advance(REMEMBER_DURABLE - Duration::from_millis(1)).await;
        let Turn::Follow(late) = in_flight.turn("acme:1") else {
            panic!("a delivery right after the leader settled must not lead")
        };
        assert_eq!(late.outcome().await, Some(Settled::Durable));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(matches!(in_flight.turn("acme:1"), Turn::Lead(_)));
        let remembered = in_flight.leaders.lock().unwrap().durable.len();
        assert_eq!(remembered, 0, "forgotten events leave nothing behind");
    }

    #[tokio::test]
    async fn a_failed_event_lets_the_next_identical_delivery_lead() {
        let in_flight = InFlight::default();
        let Turn::Lead(leader) = in_flight.turn("acme:1") else {
            panic!("first must lead")
        };
        leader.settle(Settled::Failed);
        assert!(matches!(in_flight.turn("acme:1"), Turn::Lead(_)));
    }

    #[tokio::test]
    async fn a_vanished_leader_lets_a_follower_lead() {
        let in_flight = InFlight::default();
        let Turn::Lead(leader) = in_flight.turn("k") else {
            panic!()
        };
        let Turn::Follow(follower) = in_flight.turn("k") else {
            panic!()
        };
        drop(leader);
        assert_eq!(follower.outcome().await, None);
        assert!(matches!(in_flight.turn("k"), Turn::Lead(_)));
    }

    #[test]
    fn different_events_do_not_wait_for_each_other() {
        let in_flight = InFlight::default();
        let _a = in_flight.turn("acme:1");
        assert!(matches!(in_flight.turn("acme:2"), Turn::Lead(_)));
        assert!(matches!(in_flight.turn("globex:1"), Turn::Lead(_)));
    }
}
