//! Who is alive among a direction's replicas, as this replica can tell.
//!
//! A member is alive while it has been heard from (a refresh seen on the
//! membership watch) within the TTL. But silence is evidence only while this
//! replica could hear: when its own refresh fails or stalls, the bucket has no
//! leader (a NATS node lost, an election under way) or this replica is cut
//! off, and every other member is as silent as a dead one. Ageing them out
//! then made every replica claim every partition and take the pins from the
//! others until the bucket had a leader again (issue 16's chaos runs). So a
//! failed or slow refresh *holds* the list as it is for one more TTL after the
//! bucket answers again, giving the live members time to be heard; a member
//! that died meanwhile is dropped when the hold ends.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use tokio::time::Instant;

/// The members last heard from, and whether silence counts right now.
#[derive(Debug)]
pub(super) struct Liveness {
    ttl: Duration,
    seen: HashMap<String, Instant>,
    /// No member ages out before this instant (set by [`Liveness::blind`]).
    hold_until: Option<Instant>,
}

impl Liveness {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seen: HashMap::new(),
            hold_until: None,
        }
    }

    /// `member` refreshed (or was listed) just now.
    pub(super) fn heard(&mut self, member: String) {
        self.seen.insert(member, Instant::now());
    }

    /// `member` left the membership on purpose.
    pub(super) fn left(&mut self, member: &str) {
        self.seen.remove(member);
    }

    /// This replica could not refresh its own entry (an error, or an answer
    /// slower than a refresh interval): keep the list as it is until a TTL
    /// after now, which [`Liveness::blind`] pushes on while it lasts.
    pub(super) fn blind(&mut self) {
        self.hold_until = Some(Instant::now() + self.ttl);
    }

    /// Whether the list is being held (for logs and tests).
    pub(super) fn holding(&self) -> bool {
        self.hold_until.is_some_and(|until| Instant::now() < until)
    }

    /// Forgets members silent for a TTL (unless the list is held) and
    /// returns the members alive.
    pub(super) fn members(&mut self) -> BTreeSet<String> {
        if !self.holding() {
            self.hold_until = None;
            let ttl = self.ttl;
            self.seen.retain(|_, at| at.elapsed() < ttl);
        }
        self.seen.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(4);

    fn names(l: &mut Liveness) -> Vec<String> {
        l.members().into_iter().collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_member_ages_out_after_the_ttl() {
        let mut l = Liveness::new(TTL);
        l.heard("a".into());
        l.heard("b".into());
        tokio::time::advance(Duration::from_secs(3)).await;
        l.heard("a".into());
        assert_eq!(names(&mut l), ["a", "b"]);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(names(&mut l), ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn while_blind_nobody_ages_out_and_the_hold_lasts_a_ttl_after_the_last_failure() {
        let mut l = Liveness::new(TTL);
        l.heard("a".into());
        l.heard("b".into());
        // Our refreshes fail for 10 s (an election): both stay members.
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(1)).await;
            l.blind();
            assert_eq!(names(&mut l), ["a", "b"]);
            assert!(l.holding());
        }
        // The bucket answers again; "a" is heard, "b" (dead meanwhile) is not.
        tokio::time::advance(Duration::from_secs(1)).await;
        l.heard("a".into());
        assert_eq!(names(&mut l), ["a", "b"], "held one TTL after the failure");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!l.holding());
        assert_eq!(names(&mut l), ["a"], "the dead member goes when the hold ends");
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_that_leaves_goes_at_once_even_while_held() {
        let mut l = Liveness::new(TTL);
        l.heard("a".into());
        l.heard("b".into());
        l.blind();
        l.left("b");
        assert_eq!(names(&mut l), ["a"]);
    }
}
