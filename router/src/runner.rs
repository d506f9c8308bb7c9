//! Running each tenant's lane through a handler: one worker per tenant, chats of a tenant processed concurrently up to a bound, and the
//! messages of one chat strictly in order.
//!
//! The handler exposes one step returning an [`Outcome`]; this module maps
//! outcomes to ack, in-place retry (the lane's order is kept, and only this
//! tenant waits) or dead letter. Retrying in place rather than through a
//! delayed redelivery is what keeps a chat's order across a transient failure.
//!
//! Bursts: a handler may ask for a chat's messages to be gathered into one
//! turn ([`Handler::gather_window`]); the chat's task then waits for the
//! chat to go quiet ([`crate::gather`]) and hands the whole burst to
//! [`Handler::handle_turn`], acking its members only once the turn is done.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::Arc,
    time::Duration,
};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use switchyard_shared::{
    ids::TenantId,
    lanes::{
        LaneMessage, LaneWork, TenantLane,
        dead_letter::{self, DeadLetter, DeadLetterCode},
        message::KEEP_ALIVE_EVERY,
    },
};

use crate::inbound::InboundMessage;

/// What a handler decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Fully handled (its effects are durable): ack.
    Done,
    /// A transient failure: try again after `after` (bounded by the attempt limit).
    Retry { after: Duration, reason: String },
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

/// Runs `work` while keeping `messages` alive every [`KEEP_ALIVE_EVERY`], so
/// a slow bot or provider call never gets its messages redelivered meanwhile.
pub async fn keep_alive_during<M: AsRef<LaneMessage>, F: Future>(
    messages: &[M],
    work: F,
) -> F::Output {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + KEEP_ALIVE_EVERY,
        KEEP_ALIVE_EVERY,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                for message in messages {
                    message.as_ref().keep_alive().await;
                }
            }
        }
    }
}

/// Limits of a tenant worker.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Chats of one tenant processed at the same time.
    pub chats_in_flight: usize,
    /// Attempts (deliveries plus in-place retries) before a dead letter.
    pub max_attempts: u32,
    /// Chats of a backlogged tenant (one whose lane spilled) processed at the
    /// same time, instead of `chats_in_flight`: a tenant that fell behind
    /// drains at this concurrency, so its backlog cannot take the machine's
    /// CPU and database connections from the tenants that keep up. Per
    /// tenant, so a backlogged tenant with a slow bot holds up only itself.
    pub backlog_chats_in_flight: usize,
}

/// Starts a worker for every lane that reports work, until `shutdown`.
pub async fn run<H: Handler>(
    handler: Arc<H>,
    js: async_nats::jetstream::Context,
    mut work: LaneWork,
    settings: RunnerSettings,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let mut workers: HashMap<TenantId, (Arc<TenantLane>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
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
        let this = Arc::new(self);
        loop {
            // Stop between messages: what is not taken stays for redelivery.
            let permit = tokio::select! {
                _ = this.shutdown.cancelled() => return,
                p = Arc::clone(&taken).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            let message = tokio::select! {
                _ = this.shutdown.cancelled() => return,
                m = this.lane.next() => match m { Some(m) => InboundMessage::read(m), None => return },
            };
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
            let turn = match self.handler.gather_window(&next).await {
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
            // While the tenant is backlogged, fewer of its chats run at once.
            let _backlogged = if self.lane.is_spilling().await {
                tokio::select! {
                    _ = self.shutdown.cancelled() => {
                        for message in &turn {
                            message.lane().release(Duration::ZERO).await;
                        }
                        return;
                    }
                    p = keep_alive_during(&turn, Arc::clone(backlog).acquire_owned()) => p.ok(),
                }
            } else {
                None
            };
            self.process(turn).await;
        }
    }

    /// One turn (a message, or a gathered burst) to a final state: every
    /// member acked, or dead-lettered and terminated.
    async fn process(&self, turn: Vec<InboundMessage>) {
        let Some(first) = turn.first() else {
            return;
        };
        // Deliveries beyond the first were earlier attempts (a crash counts).
        let mut attempt = turn
            .iter()
            .map(|m| m.lane().delivered())
            .max()
            .unwrap_or(1)
            .max(1);
        loop {
            if attempt > self.settings.max_attempts {
                let reason = DeadLetter::new(
                    DeadLetterCode::AttemptsExhausted,
                    format!("gave up after {} attempts", attempt - 1),
                );
                for message in &turn {
                    self.dead_letter(message.lane(), &reason, attempt - 1).await;
                }
                return;
            }
            // A slow bot or provider call must not outlive the ack wait.
            let outcome = keep_alive_during(&turn, async {
                match turn.as_slice() {
                    [one] => self.handler.handle(one, attempt).await,
                    burst => self.handler.handle_turn(burst, attempt).await,
                }
            })
            .await;
            match outcome {
                Outcome::Done => {
                    // Last member first: if acking stops half-way (a crash),
                    // what is redelivered is a prefix of the burst, starting
                    // with the message the turn's reply ids derive from.
                    for message in turn.iter().rev() {
                        message.lane().ack().await;
                    }
                    return;
                }
                Outcome::DeadLetter(reason) => {
                    for message in &turn {
                        self.dead_letter(message.lane(), &reason, attempt).await;
                    }
                    return;
                }
                Outcome::Retry { after, reason } => {
                    tracing::info!(tenant.id = %first.lane().tenant(), message.id = %first.lane().message_id(), turn.messages = turn.len(), delivery.attempt = attempt, retry.reason = %reason, "transient failure; retrying in place");
                    let shutting_down = keep_alive_during(&turn, async {
                        tokio::select! {
                            _ = self.shutdown.cancelled() => true,
                            _ = tokio::time::sleep(after) => false,
                        }
                    })
                    .await;
                    if shutting_down {
                        // Hand the turn back for redelivery.
                        for message in &turn {
                            message.lane().release(Duration::ZERO).await;
                        }
                        return;
                    }
                    attempt += 1;
                }
            }
        }
    }

    async fn dead_letter(&self, message: &LaneMessage, reason: &DeadLetter, attempts: u32) {
        match dead_letter::publish(&self.js, message, reason, attempts).await {
            Ok(()) => message.terminate().await,
            Err(e) => {
                tracing::error!(tenant.id = %message.tenant(), error = %e, "cannot store dead letter; message released for redelivery");
                message.release(Duration::from_secs(5)).await;
            }
        }
    }
}
