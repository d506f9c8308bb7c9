//! Running each tenant's lane through a handler: one worker per tenant, chats of a tenant processed concurrently up to a bound, and the
//! messages of one chat strictly in order.
//!
//! The handler exposes one step returning an [`Outcome`]; this module maps
//! outcomes to ack, in-place retry (the lane's order is kept, and only this
//! tenant waits) or dead letter. Retrying in place rather than through a
//! delayed redelivery is what keeps a chat's order across a transient failure.
//!
//! Two kinds of in-place retry: [`Outcome::Retry`] is the message's own
//! transient failure (the bot's) and counts towards its attempts;
//! [`Outcome::Backpressure`] is trouble in our own infrastructure and never
//! does: it is retried without limit on a capped backoff, and slows every
//! worker's intake while it lasts ([`crate::backpressure`]).
//!
//! Every message the worker holds is kept alive (queued behind its chat,
//! gathered, being handled, waiting for a retry, waiting for its dead letter
//! to be stored), so waiting for the infrastructure, however long, never
//! gets a message redelivered while it is held. The server's delivery count
//! is therefore not an attempt count: see [`RunnerSettings::max_redeliveries`].
//!
//! Bursts: a handler may ask for a chat's messages to be gathered into one
//! turn ([`Handler::gather_window`]); the chat's task then waits for the
//! chat to go quiet ([`crate::gather`]) and hands the whole burst to
//! [`Handler::handle_turn`], acking its members only once the turn is done.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use switchyard_shared::{
    ids::TenantId,
    lanes::{
        LaneWork, TenantLane,
        dead_letter::{self, DeadLetter, DeadLetterCode},
        message::{KEEP_ALIVE_EVERY, keep_alive_during},
    },
};

use switchyard_shared::{
    retry::{RetryPolicy, jitter_seed},
    tenant_status::{Activity, record::now_ms},
};

use crate::{
    backpressure::Pressure,
    inbound::InboundMessage,
    metrics as m,
    spare::{SparePermit, SparePool},
};

/// What a handler decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Fully handled (its effects are durable): ack.
    Done,
    /// A transient failure of the message's own (the bot's): try again after
    /// `after`; counts as an attempt, and past the attempt limit the message
    /// is dead-lettered (`attempts_exhausted`).
    Retry { after: Duration, reason: String },
    /// Trouble in our own infrastructure (database, pool, tenant lookup,
    /// NATS): try again after the runner's backpressure backoff, without
    /// limit; never counts as an attempt, never leads to a dead letter.
    Backpressure { reason: String },
    /// Can never succeed: dead-letter, then terminate.
    DeadLetter(DeadLetter),
}

/// Processes one message of a tenant. `chat_key` groups messages that must
/// stay in order (e.g. one WhatsApp chat).
pub trait Handler: Send + Sync + 'static {
    fn chat_key(&self, message: &InboundMessage) -> String;
    fn handle(
        &self,
        message: &InboundMessage,
        attempt: u32,
    ) -> impl Future<Output = Outcome> + Send;

    /// How long a chat must stay quiet before a burst starting with (or
    /// continuing with) `message` is handled as one turn; `None`: this
    /// message is not gathered (the default).
    fn gather_window(
        &self,
        message: &InboundMessage,
    ) -> impl Future<Output = Option<Duration>> + Send {
        let _ = message;
        async { None }
    }

    /// Handles a gathered burst (in chat order, at least two messages) as one
    /// turn. The outcome applies to every member. The default handles the
    /// first message only; a handler that gathers must override it.
    fn handle_turn(
        &self,
        messages: &[InboundMessage],
        attempt: u32,
    ) -> impl Future<Output = Outcome> + Send {
        async move {
            match messages.first() {
                Some(first) => self.handle(first, attempt).await,
                None => Outcome::Done,
            }
        }
    }
}

/// Limits of a tenant worker.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Chats of one tenant processed at the same time.
    pub chats_in_flight: usize,
    /// Attempts of the message's own (handler runs ending in
    /// [`Outcome::Retry`], in one delivery) before a dead letter.
    pub max_attempts: u32,
    /// Deliveries by the server after which a message is dead-lettered
    /// before it is handled (`attempts_exhausted`): the guard against a
    /// message that crashes the process whenever it is handled, which is
    /// redelivered without ever reaching an outcome.
    ///
    /// Why a limit of its own rather than the attempt limit: the server
    /// counts every redelivery, and some are ours, not the message's: a
    /// partition handed over or a replica stopped gives its messages back
    /// (a nak), a killed replica's messages come back after `ack_wait`, and a
    /// NATS outage longer than `ack_wait` loses the keep-alives of what is
    /// held. None of those can be told apart from a crash afterwards, so the
    /// count is compared with a limit well above what faults and deploys
    /// add during one message's life (each adds one, at most), never with
    /// the attempts. Waiting for our infrastructure adds nothing: held
    /// messages are kept alive, however long the wait.
    pub max_redeliveries: u32,
    /// The wait after a turn met trouble in our infrastructure, by the
    /// number of times in a row it did (never limited; see
    /// [`crate::retries::Retries::backpressure`]).
    pub backpressure: RetryPolicy,
    /// Chats of a backlogged tenant (one whose lane spilled) processed at the
    /// same time, instead of `chats_in_flight`: a tenant that fell behind
    /// drains at this concurrency, so its backlog cannot take the machine's
    /// CPU and database connections from the tenants that keep up. Per
    /// tenant, so a backlogged tenant with a slow bot holds up only itself.
    pub backlog_chats_in_flight: usize,
    /// The replica's extra chats for backlogged tenants, past their floor
    /// (`crate::spare`), shared by every tenant worker.
    pub spare: Arc<SparePool>,
}

/// Starts a worker for every lane that reports work, until `shutdown`.
pub async fn run<H: Handler>(
    handler: Arc<H>,
    js: async_nats::jetstream::Context,
    mut work: LaneWork,
    settings: RunnerSettings,
    activity: Activity,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let mut workers: HashMap<TenantId, (Arc<TenantLane>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let pressure = Arc::new(Pressure::new(settings.backpressure.max_delay));
    loop {
        let lane = tokio::select! {
            _ = shutdown.cancelled() => return,
            lane = work.recv() => match lane { Some(l) => l, None => return },
        };
        let running = workers
            .get(lane.tenant())
            .is_some_and(|(current, handle)| Arc::ptr_eq(current, &lane) && !handle.is_finished());
        if running {
            continue;
        }
        let worker = TenantWorker {
            lane: Arc::clone(&lane),
            handler: Arc::clone(&handler),
            js: js.clone(),
            settings: settings.clone(),
            pressure: Arc::clone(&pressure),
            activity: activity.clone(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        };
        let handle = tasks.spawn(worker.run());
        workers.insert(lane.tenant().clone(), (lane, handle));
    }
}

struct TenantWorker<H> {
    lane: Arc<TenantLane>,
    handler: Arc<H>,
    js: async_nats::jetstream::Context,
    settings: RunnerSettings,
    pressure: Arc<Pressure>,
    /// Events in and dead letters per tenant, for its status records.
    activity: Activity,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A message taken from the lane, holding one of the tenant's "taken" permits
/// until it is finished, so the worker never holds more than a bounded number
/// in memory (the rest stays in the lane, which spills when it fills).
pub(crate) type Taken = (InboundMessage, OwnedSemaphorePermit);

/// Per-chat queues of one tenant: a chat runs in one task at a time.
pub(crate) type ChatQueues = Arc<Mutex<HashMap<String, VecDeque<Taken>>>>;

impl<H: Handler> TenantWorker<H> {
    async fn run(self) {
        let slots = Arc::new(Semaphore::new(self.settings.chats_in_flight.max(1)));
        let backlog = Arc::new(Semaphore::new(self.settings.backlog_chats_in_flight.max(1)));
        let taken = Arc::new(Semaphore::new(self.settings.chats_in_flight.max(1) * 2));
        let chats: ChatQueues = Arc::new(Mutex::new(HashMap::new()));
        self.tasks.spawn(keep_queued_alive(
            Arc::downgrade(&chats),
            self.shutdown.clone(),
        ));
        let this = Arc::new(self);
        loop {
            // Stop between messages: what is not taken stays for redelivery.
            let permit = tokio::select! {
                _ = this.shutdown.cancelled() => return,
                p = Arc::clone(&taken).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            // While our infrastructure is in trouble, new work stays in the
            // lane (which spills past its bound): one message per probe
            // interval at most, until a step gets through.
            if this.pressure.is_troubled() {
                tokio::select! {
                    _ = this.shutdown.cancelled() => return,
                    _ = this.pressure.relieved_or_probe() => {}
                }
            }
            let message = tokio::select! {
                _ = this.shutdown.cancelled() => return,
                m = this.lane.next() => match m { Some(m) => InboundMessage::read(m), None => return },
            };
            this.activity.event_in(this.lane.tenant(), now_ms());
            // A tenant keeping up: its message's way here sizes the spare pool.
            this.settings.spare.observe_taken(message.lane());
            let key = this.handler.chat_key(&message);
            let mut queues = chats.lock().await;
            if let Some(queue) = queues.get_mut(&key) {
                // That chat already has a task: it will take this one in order.
                queue.push_back((message, permit));
                continue;
            }
            queues.insert(key.clone(), VecDeque::from([(message, permit)]));
            drop(queues);
            let permit = tokio::select! {
                _ = this.shutdown.cancelled() => return,
                p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            let worker = Arc::clone(&this);
            let chats = Arc::clone(&chats);
            let backlog = Arc::clone(&backlog);
            this.tasks.spawn(async move {
                worker.drain_chat(&chats, &key, &backlog).await;
                drop(permit);
            });
        }
    }

    async fn drain_chat(&self, chats: &ChatQueues, key: &str, backlog: &Arc<Semaphore>) {
        loop {
            let (next, permit) = {
                let mut queues = chats.lock().await;
                match queues.get_mut(key).and_then(VecDeque::pop_front) {
                    Some(taken) => taken,
                    None => {
                        queues.remove(key);
                        return;
                    }
                }
            };
            // The window comes from the tenant row: a slow database must not
            // let the message's ack wait run out meanwhile.
            let window = keep_alive_during(
                std::slice::from_ref(&next),
                self.handler.gather_window(&next),
            )
            .await;
            let turn = match window {
                None => vec![next],
                Some(window) => {
                    crate::gather::burst(
                        self.handler.as_ref(),
                        chats,
                        key,
                        next,
                        window,
                        &self.shutdown,
                    )
                    .await
                }
            };
            drop(permit);
            // While the tenant is backlogged, fewer of its chats run at once:
            // its floor, and what the spare pool has room for.
            let _backlogged = if self.lane.is_spilling().await {
                tokio::select! {
                    _ = self.shutdown.cancelled() => {
                        for message in &turn {
                            message.lane().release(Duration::ZERO).await;
                        }
                        return;
                    }
                    p = keep_alive_during(&turn, backlog_place(backlog, &self.settings.spare)) => p,
                }
            } else {
                None
            };
            self.process(turn).await;
        }
    }

    /// One turn (a message, or a gathered burst) to a final state: every
    /// member acked, or dead-lettered and terminated (or, on shutdown,
    /// handed back for redelivery). The turn is kept alive in one scope
    /// from start to end: a scope per try would restart the keep-alive
    /// interval each time, and tries shorter than [`KEEP_ALIVE_EVERY`] in a
    /// row (a pool timeout, then a short backoff, again and again) would
    /// never keep it alive at all.
    async fn process(&self, turn: Vec<InboundMessage>) {
        keep_alive_during(&turn, self.finish(&turn)).await;
    }

    async fn finish(&self, turn: &[InboundMessage]) {
        let Some(first) = turn.first() else {
            return;
        };
        let delivered = turn.iter().map(|m| m.lane().delivered()).max().unwrap_or(1);
        if delivered > self.settings.max_redeliveries {
            let reason = DeadLetter::new(
                DeadLetterCode::AttemptsExhausted,
                format!(
                    "delivered {delivered} times without being finished (does it crash the router?)"
                ),
            );
            self.dead_letter(turn, &reason, delivered.saturating_sub(1))
                .await;
            return;
        }
        let seed = jitter_seed(first.lane().message_id());
        let mut attempt = 1;
        let mut stalls = 0u32;
        loop {
            // Kept alive (by `process`): a slow bot or provider call, or a
            // wait for our infrastructure, never outlives the ack wait.
            let outcome = match turn {
                [one] => self.handler.handle(one, attempt).await,
                burst => self.handler.handle_turn(burst, attempt).await,
            };
            if !matches!(outcome, Outcome::Backpressure { .. }) {
                self.pressure.relief();
            }
            match outcome {
                Outcome::Done => {
                    // Last member first: if acking stops half-way (a crash),
                    // what is redelivered is a prefix of the burst, starting
                    // with the message the turn's reply ids derive from.
                    // Unconfirmed: waiting for the server's answer would
                    // not bring a lost ack back (nothing re-sends it), only
                    // cost a NATS message and a wait per turn; a turn
                    // redelivered after all publishes the same reply ids.
                    for message in turn.iter().rev() {
                        message.lane().ack_unconfirmed().await;
                    }
                    return;
                }
                Outcome::DeadLetter(reason) => {
                    self.dead_letter(turn, &reason, attempt).await;
                    return;
                }
                Outcome::Retry { after, reason } => {
                    if attempt >= self.settings.max_attempts {
                        let reason = DeadLetter::new(
                            DeadLetterCode::AttemptsExhausted,
                            format!("gave up after {attempt} attempts; last: {reason}"),
                        );
                        self.dead_letter(turn, &reason, attempt).await;
                        return;
                    }
                    tracing::info!(tenant.id = %first.lane().tenant(), message.id = %first.lane().message_id(), turn.messages = turn.len(), delivery.attempt = attempt, retry.reason = %reason, "transient failure; retrying in place");
                    if !self.wait_in_place(turn, after).await {
                        return;
                    }
                    attempt += 1;
                    // The step got past our infrastructure: a later trouble
                    // starts its backoff afresh.
                    stalls = 0;
                }
                Outcome::Backpressure { reason } => {
                    stalls = stalls.saturating_add(1);
                    self.pressure.trouble(&reason);
                    // A failed step is never timed: tell the pool directly.
                    self.settings.spare.trouble();
                    metrics::counter!(m::BACKPRESSURE_TOTAL).increment(1);
                    let after = backpressure_delay(&self.settings.backpressure, stalls, seed);
                    tracing::debug!(tenant.id = %first.lane().tenant(), message.id = %first.lane().message_id(), turn.messages = turn.len(), backpressure.stalls = stalls, backpressure.reason = %reason, retry.after_ms = after.as_millis() as u64, "infrastructure trouble; holding the turn (no attempt spent)");
                    if !self.wait_in_place(turn, after).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits `after` (inside `process`, so the turn is kept alive). On
    /// shutdown hands the turn back for redelivery and returns `false`.
    async fn wait_in_place(&self, turn: &[InboundMessage], after: Duration) -> bool {
        let shutting_down = tokio::select! {
            _ = self.shutdown.cancelled() => true,
            _ = tokio::time::sleep(after) => false,
        };
        if shutting_down {
            for message in turn {
                message.lane().release(Duration::ZERO).await;
            }
        }
        !shutting_down
    }

    /// Dead-letters every member of `turn`, each terminated once its letter
    /// is stored. A letter that cannot be stored is our trouble, not the
    /// message's: it is tried again in place (kept alive by `process`),
    /// without limit, like any backpressure; on shutdown what is left is
    /// handed back.
    async fn dead_letter(&self, turn: &[InboundMessage], reason: &DeadLetter, attempts: u32) {
        for (i, message) in turn.iter().enumerate() {
            let message = message.lane();
            let seed = jitter_seed(message.message_id());
            let mut stalls = 0u32;
            loop {
                match dead_letter::publish(&self.js, message, reason, attempts).await {
                    Ok(()) => {
                        self.activity.dead_letter(message.tenant(), now_ms());
                        message.terminate().await;
                        break;
                    }
                    Err(e) => {
                        stalls = stalls.saturating_add(1);
                        let why = format!("dead letter: {e}");
                        self.pressure.trouble(&why);
                        metrics::counter!(m::BACKPRESSURE_TOTAL).increment(1);
                        tracing::warn!(tenant.id = %message.tenant(), message.id = %message.message_id(), error = %e, "cannot store the dead letter yet; holding the message");
                        let after = backpressure_delay(&self.settings.backpressure, stalls, seed);
                        if !self.wait_in_place(&turn[i..], after).await {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// A backlogged tenant's place to run one more chat, held while it runs:
/// one of its floor's, or else one of the replica's spare chats.
#[derive(Debug)]
struct BacklogPlace {
    _floor: Option<OwnedSemaphorePermit>,
    _spare: Option<SparePermit>,
}

/// Takes the first place free, the floor's first.
async fn backlog_place(floor: &Arc<Semaphore>, spare: &Arc<SparePool>) -> Option<BacklogPlace> {
    let floor_place = |permit| BacklogPlace {
        _floor: Some(permit),
        _spare: None,
    };
    if let Ok(permit) = Arc::clone(floor).try_acquire_owned() {
        return Some(floor_place(permit));
    }
    tokio::select! {
        biased;
        p = Arc::clone(floor).acquire_owned() => p.ok().map(floor_place),
        p = spare.take() => Some(BacklogPlace { _floor: None, _spare: Some(p) }),
    }
}

/// The wait after `stalls` backpressure outcomes in a row (the count is
/// capped: the schedule reaches its cap long before).
fn backpressure_delay(policy: &RetryPolicy, stalls: u32, seed: u64) -> Duration {
    policy.retry_delay(stalls.min(32), None, seed)
}

/// Keeps alive every message queued in a worker's chat queues (taken from
/// the lane, waiting behind its chat's turn or for a chat slot) every
/// [`KEEP_ALIVE_EVERY`], until the worker and its chat tasks are gone.
async fn keep_queued_alive(
    chats: Weak<Mutex<HashMap<String, VecDeque<Taken>>>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + KEEP_ALIVE_EVERY,
        KEEP_ALIVE_EVERY,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(chats) = chats.upgrade() else {
            return;
        };
        let queues = chats.lock().await;
        for (message, _) in queues.values().flatten() {
            message.lane().keep_alive().await;
        }
    }
}
