//! The figures of one run, computed only from what the driver counted
//! itself (every POST and its status) and what the provider recorded (the
//! simulator's accepted sends): events accepted, refused, answered, lost,
//! sent twice, sent on a wrong bridge, and the time until replies flowed
//! again after each fault.
//!
//! A reply names its event (`echo: chaos <tenant> <seq>`): the same event's
//! reply sent twice is a double send, and a reply whose bridge is not its
//! tenant's is a cross-tenant send. The reply ids the pipeline uses
//! (`<event id>:<part>`) never reach the provider, so the body stands in
//! for them.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_bridge_sim::RecordedSend;

use super::{
    faults::Injected,
    load::{Outcome, Posted, parse_reply},
    replica::Role,
};

/// Everything a run reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub posted: usize,
    /// Answered 2xx by ingest.
    pub accepted: usize,
    /// Answered with another status (by status).
    pub refused: BTreeMap<u16, usize>,
    /// No answer (the connection broke, the provider's 10 s ran out).
    pub no_answer: usize,
    /// Accepted events whose reply reached the provider.
    pub answered: usize,
    /// Accepted events never answered, even after the drain: `(tenant, seq)`.
    pub lost: Vec<(String, u64)>,
    /// Events refused with a status whose reply went out anyway (the
    /// refusal was not true).
    pub refused_but_answered: usize,
    /// Replies sent more than once: `(tenant, seq, copies)`.
    pub sent_twice: Vec<(String, u64, usize)>,
    /// Of those, the ones inside the documented window: a sender replica was
    /// killed between the first copy and the next.
    pub sent_twice_in_window: usize,
    /// Replies sent on a bridge that is not their tenant's.
    pub wrong_bridge: usize,
    /// Sends that answer no event of this run.
    pub unexplained_sends: usize,
    pub dead_letters: u64,
    /// Per fault: how long after it (its end, or the kill) until every
    /// event accepted before and after it was answered, in ms.
    pub recovery_ms: Vec<u64>,
    /// Per fault: how long after the same instant until the first reply
    /// went out (replies flow again, backlog or not), ms.
    pub first_reply_ms: Vec<u64>,
    /// Per NATS node loss: the same recovery timed from the moment every
    /// raft group the node led had a new leader (`None` for other faults,
    /// or when the elections outlasted the node's absence).
    pub after_leaders_ms: Vec<Option<u64>>,
    /// Per fault: the event that waited longest, `<tenant> #<seq>: posted
    /// <ms> after the fault began, answered <ms> after`.
    pub slowest: Vec<String>,
    /// Replicas that exited without being killed, and were started again.
    pub unexpected_exits: Vec<String>,
    /// Replica start-ups that failed and were retried (see `topology::START_UP`).
    pub start_up_failures: u32,
    /// The events' answer latency, p50 and p99 over the run, ms.
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
}

impl Figures {
    pub fn non_2xx(&self) -> usize {
        self.refused.values().sum::<usize>() + self.no_answer
    }

    pub fn max_recovery_ms(&self) -> u64 {
        self.recovery_ms.iter().copied().max().unwrap_or(0)
    }

    /// Double sends outside the documented window.
    pub fn sent_twice_outside_window(&self) -> usize {
        self.sent_twice.len() - self.sent_twice_in_window
    }
}

/// Events posted this long before a fault count as that fault's (they were
/// under way when it struck).
const BEFORE_MS: u64 = 2_000;

/// Computes the figures. `injected` are the run's faults in order;
/// `traffic_end_ms` is when the last event was posted.
pub fn tally(
    posted: &[Posted],
    sends: &[RecordedSend],
    injected: &[(Option<Role>, Injected)],
    traffic_end_ms: u64,
    dead_letters: u64,
) -> Figures {
    let mut figures = Figures {
        posted: posted.len(),
        dead_letters,
        ..Figures::default()
    };
    // Every copy of each event's reply, in arrival order.
    let mut copies: BTreeMap<(String, u64), Vec<&RecordedSend>> = BTreeMap::new();
    for send in sends {
        match parse_reply(&send.body) {
            Some((tenant, seq)) => {
                if send.customer_ref != tenant {
                    figures.wrong_bridge += 1;
                }
                copies
                    .entry((tenant.to_owned(), seq))
                    .or_default()
                    .push(send);
            }
            None => figures.unexplained_sends += 1,
        }
    }
    let by_key: BTreeMap<(String, u64), &Posted> = posted
        .iter()
        .map(|p| ((p.tenant.clone(), p.seq), p))
        .collect();
    figures.unexplained_sends += copies.keys().filter(|k| !by_key.contains_key(*k)).count();

    let sender_kills: Vec<u64> = injected
        .iter()
        .filter(|(role, _)| *role == Some(Role::Sender))
        .map(|(_, i)| i.began_ms)
        .collect();
    let mut latencies = Vec::new();
    for p in posted {
        let key = (p.tenant.clone(), p.seq);
        let sent = copies.get(&key);
        match &p.outcome {
            _ if p.accepted() => {
                figures.accepted += 1;
                match sent.and_then(|c| c.first()) {
                    Some(first) => {
                        figures.answered += 1;
                        latencies.push(first.at_ms.saturating_sub(p.at_ms));
                    }
                    None => figures.lost.push(key.clone()),
                }
            }
            Outcome::Status(status) => {
                *figures.refused.entry(*status).or_default() += 1;
                if sent.is_some() {
                    figures.refused_but_answered += 1;
                }
            }
            Outcome::NoAnswer(_) => figures.no_answer += 1,
        }
        if let Some(c) = sent.filter(|c| c.len() > 1) {
            figures.sent_twice.push((p.tenant.clone(), p.seq, c.len()));
            let killed_between = c.windows(2).all(|pair| {
                sender_kills
                    .iter()
                    .any(|k| pair[0].at_ms <= *k && *k <= pair[1].at_ms)
            });
            if killed_between {
                figures.sent_twice_in_window += 1;
            }
        }
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    figures.latency_p50_ms = at(0.50);
    figures.latency_p99_ms = at(0.99);
    for (i, (_, fault)) in injected.iter().enumerate() {
        // Events posted shortly before the next fault are that fault's.
        let until = injected.get(i + 1).map_or(traffic_end_ms, |(_, next)| {
            next.began_ms.saturating_sub(BEFORE_MS)
        });
        let (wait, slowest) = recovery(posted, &copies, fault, fault.recovery_from_ms, until);
        figures.recovery_ms.push(wait);
        figures.slowest.push(slowest);
        figures.after_leaders_ms.push(
            fault
                .leaders_back_ms
                .map(|back| recovery(posted, &copies, fault, back, until).0),
        );
        let first = sends
            .iter()
            .map(|s| s.at_ms)
            .filter(|at| *at >= fault.recovery_from_ms)
            .min()
            .map_or(0, |at| at - fault.recovery_from_ms);
        figures.first_reply_ms.push(first);
    }
    figures
}

/// For one fault: the longest an accepted event waited for its answer
/// after `recovery_from_ms` (the fault's recovery instant, or when NATS had
/// its leaders back), over the events posted from shortly
/// before the fault until `until` (shortly before the next fault, or the
/// traffic's end),
/// and which event that was. An event posted after the instant counts its
/// whole latency. So a fault is recovered once the backlog it caused is
/// answered and new events flow at once.
fn recovery(
    posted: &[Posted],
    copies: &BTreeMap<(String, u64), Vec<&RecordedSend>>,
    fault: &Injected,
    recovery_from_ms: u64,
    until: u64,
) -> (u64, String) {
    let from = fault.began_ms.saturating_sub(BEFORE_MS);
    posted
        .iter()
        .filter(|p| p.accepted() && p.at_ms >= from && p.at_ms < until)
        .filter_map(|p| {
            let first = copies.get(&(p.tenant.clone(), p.seq))?.first()?;
            let wait = first
                .at_ms
                .saturating_sub(p.at_ms.max(recovery_from_ms));
            let rel = |t: u64| t as i64 - fault.began_ms as i64;
            let what = format!(
                "{} #{}: posted {} ms after the fault began, answered {} ms after",
                p.tenant,
                p.seq,
                rel(p.at_ms),
                rel(first.at_ms)
            );
            Some((wait, what))
        })
        .max_by_key(|(wait, _)| *wait)
        .unwrap_or_default()
}
