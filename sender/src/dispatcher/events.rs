//! What reaches the send loop, and the bounded channel it arrives on.
//!
//! Every other task talks to the loop only through this channel: lane work
//! announcements, delivery completions, tenant rows read by a refresh, bridge
//! and operator announcements, delayed probes. It is bounded, so memory is
//! capped by [`EVENT_QUEUE_CAPACITY`], not by traffic: when it is full, the
//! senders wait (the partition work forwarders, and with them the partition
//! readers, slow down to the loop's pace).
//!
//! A full channel cannot deadlock because of who waits on whom: the loop is
//! the only receiver and never sends on its own channel (everything that
//! reports back does so from a task of its own), and none of the senders
//! holds anything the loop waits for (a lane's lock, the tenant cache) while
//! it waits to send. The loop drains the channel whenever it is not working
//! on one event, so a waiting sender always gets its turn. When the loop
//! stops, the receiver is dropped and every waiting send fails at once.

use std::sync::Arc;

use switchyard_shared::{ids::TenantId, lanes::TenantLane, tenants::Tenant};
use tokio::sync::mpsc;

use super::tenant_refresh::CloudView;

use crate::{
    deliver::{ProviderSignal, StepResult},
    fair_share::{Grant, PauseReason},
};

/// Events the channel holds at most. A few pull batches (up to 64 messages
/// each) of every partition of both the live and the bulk lanes at the
/// default 16 partitions, plus every completion at the largest in-flight
/// cap: the loop drains it far faster than the provider lets it send, so a
/// full channel means a burst, not a stall. Each slot is a few words (a
/// completion is boxed), so a full channel costs well under a megabyte.
pub const EVENT_QUEUE_CAPACITY: usize = 4096;

/// The sending half, for every task that reports to the loop.
pub type EventSender = mpsc::Sender<Event>;

/// What the send loop hears about.
pub enum Event {
    /// A lane took a message (or holds a backlog to drain).
    Work(Arc<TenantLane>),
    /// A delivery finished or must wait.
    Completed(Box<Completion>),
    /// A tenant's row as just read (`None`: no such tenant), and for a
    /// Cloud API tenant its channel (`None`: not read).
    Refreshed(TenantId, Option<Arc<Tenant>>, Option<CloudView>),
    /// The router saw `connected` / `disconnected`.
    BridgeState(TenantId, bool),
    /// Look at a tenant's lane again (a spilled backlog not yet fetchable).
    Probe(TenantId),
    /// An operator changed the tenant's row (`control.tenant.<id>`): read it
    /// again; `true`: the router saw a Cloud API quality or tier notice, so
    /// the number's health is read from Meta first.
    TenantChanged(TenantId, bool),
    /// An operator lifted the tenant's holds (unauthorized, restricted, operator).
    OperatorResume(TenantId),
    /// The router held the tenant's sends on a Cloud API account notice.
    Hold(TenantId, PauseReason),
}

/// A delivery's end, with the grant it used.
pub struct Completion {
    pub grant: Grant,
    pub lane: Arc<TenantLane>,
    pub result: StepResult,
    /// The chat the message was for (sends to one chat go one at a time).
    pub chat: String,
    /// It was the provider probe of an outage.
    pub probe: bool,
    /// What it showed of the provider.
    pub signal: ProviderSignal,
}

/// A new channel of [`EVENT_QUEUE_CAPACITY`] events.
pub(super) fn channel() -> (EventSender, mpsc::Receiver<Event>) {
    mpsc::channel(EVENT_QUEUE_CAPACITY)
}
