//! Gathering a chat's burst into one turn (WhatsApp users type in bursts: an
//! album arrives as several events ~200 ms apart, a thought as several quick
//! lines).
//!
//! The chat's task holds the burst's first message and waits until the chat
//! has been quiet for the handler's window, taking every message of that chat
//! that reaches the chat's queue meanwhile, in order. It stops early at
//! [`MAX_WINDOWS`] windows after the first message (a chat that never goes
//! quiet still gets answers), at [`MAX_TURN`] messages, or at a message the
//! handler does not gather (a `from_me`, for instance), which then starts the
//! next turn. Nothing is acked here: the runner acks every member once the
//! turn's effects are durable.
//!
//! Bounds: a gathered member gives its "taken" permit back, so the worker
//! keeps taking the chat's further messages from the lane even when the
//! burst is larger than the permit bound; memory stays bounded by
//! [`MAX_TURN`] per chat in flight.
//!
//! Redelivery: a turn whose first message is a redelivery (after a crash
//! between the turn's publish and its acks) gathers only other redeliveries,
//! so it rebuilds (a prefix of) the original burst and its reply ids, which
//! derive from the first message, are the same: the duplicate window and the
//! sender's ledger absorb them. A fresh message that arrived since starts a
//! turn of its own instead of being folded into replies that were already
//! sent.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use switchyard_shared::lanes::message::KEEP_ALIVE_EVERY;

use crate::{
    inbound::InboundMessage,
    runner::{ChatQueues, Handler},
};

/// A burst is cut after this many windows from its first message.
pub const MAX_WINDOWS: u32 = 5;
/// Most messages in one turn.
pub const MAX_TURN: usize = 50;
/// How often the chat's queue is looked at while gathering.
const LOOK_EVERY: Duration = Duration::from_millis(25);

/// Gathers the burst that starts with `first` from chat `key`'s queue.
/// Returns the turn in chat order, or nothing when shutting down (every
/// gathered message was then released for redelivery).
pub async fn burst<H: Handler>(
    handler: &H,
    chats: &ChatQueues,
    key: &str,
    first: InboundMessage,
    window: Duration,
    shutdown: &CancellationToken,
) -> Vec<InboundMessage> {
    let started = Instant::now();
    let cut_at = started + window.saturating_mul(MAX_WINDOWS);
    let redelivered = first.lane().delivered() > 1;
    let mut quiet_at = started + window;
    let mut kept_alive_at = started;
    let mut turn = vec![first];
    loop {
        let (taken, closed) = take_joining(handler, chats, key, redelivered, &mut turn).await;
        let now = Instant::now();
        if taken > 0 {
            quiet_at = now + window;
        }
        if closed || turn.len() >= MAX_TURN || now >= quiet_at.min(cut_at) {
            return turn;
        }
        if now.duration_since(kept_alive_at) >= KEEP_ALIVE_EVERY {
            kept_alive_at = now;
            for message in &turn {
                message.lane().keep_alive().await;
            }
        }
        let wake = quiet_at.min(cut_at).min(now + LOOK_EVERY);
        tokio::select! {
            _ = shutdown.cancelled() => {
                for message in &turn {
                    message.lane().release(Duration::ZERO).await;
                }
                return Vec::new();
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Moves the chat's queued messages that join the burst into `turn`.
/// Returns how many joined, and whether the burst is closed (a message that
/// does not join waits at the head of the queue for the next turn).
async fn take_joining<H: Handler>(
    handler: &H,
    chats: &ChatQueues,
    key: &str,
    redelivered: bool,
    turn: &mut Vec<InboundMessage>,
) -> (usize, bool) {
    let mut taken = 0;
    while turn.len() < MAX_TURN {
        let next = chats
            .lock()
            .await
            .get_mut(key)
            .and_then(|queue| queue.pop_front());
        let Some((message, permit)) = next else {
            return (taken, false);
        };
        let joins = (!redelivered || message.lane().delivered() > 1)
            && handler.gather_window(&message).await.is_some();
        if !joins {
            chats
                .lock()
                .await
                .entry(key.to_owned())
                .or_default()
                .push_front((message, permit));
            return (taken, true);
        }
        // The member is held by the turn now, not by the worker's bound.
        drop(permit);
        turn.push(message);
        taken += 1;
    }
    (taken, true)
}
