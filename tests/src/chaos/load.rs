//! Steady webhook traffic with an independent count of every event in: each
//! POST, its tenant, sequence number, time, and what ingest answered.
//!
//! Events are posted at a fixed rate, round-robin over the tenants (and
//! three chats each), each body naming its tenant and sequence number
//! (`chaos <tenant> <seq>`), so the echo bot's reply says which event it
//! answers and on whose behalf. Posts go round-robin over the ingest
//! replicas as a load balancer would spread them, and like one, a
//! connection that cannot be opened (a replica that is down) is tried on
//! the next replica: nothing reached ingest, so that retry is safe. A
//! connection that breaks once the request was sent is not retried (the
//! provider does not retry either): the event counts as not accepted.
//! Connections are not reused, so a killed replica costs only the requests
//! it was serving.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::clock::unix_ms;

/// Chats per tenant.
const CHATS: usize = 3;

/// The traffic's shape.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub events_per_second: u32,
}

/// One posted event and what came of it.
#[derive(Debug, Clone)]
pub struct Posted {
    pub seq: u64,
    pub tenant: String,
    /// When the POST started, unix ms.
    pub at_ms: u64,
    pub outcome: Outcome,
}

/// What ingest answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// No answer: the connection broke or timed out after the request was sent.
    NoAnswer(String),
}

impl Posted {
    /// Ingest acknowledged it: from now on it must be answered.
    pub fn accepted(&self) -> bool {
        matches!(self.outcome, Outcome::Status(s) if (200..300).contains(&s))
    }
}

/// The text of event `seq` of `tenant`, as the echo bot will quote it.
pub fn body_text(tenant: &str, seq: u64) -> String {
    format!("chaos {tenant} {seq}")
}

/// Reads `(tenant, seq)` back out of a reply (`echo: chaos <tenant> <seq>`).
pub fn parse_reply(reply: &str) -> Option<(&str, u64)> {
    let rest = reply.strip_prefix("echo: chaos ")?;
    let (tenant, seq) = rest.split_once(' ')?;
    Some((tenant, seq.parse().ok()?))
}

/// Traffic that is running.
pub struct Load {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    posted: Arc<Mutex<Vec<Posted>>>,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load").finish()
    }
}

impl Load {
    /// Starts posting: `urls[tenant][replica]` is the tenant's webhook URL
    /// on each ingest replica.
    pub fn start(rate: Rate, tenants: Vec<String>, urls: Vec<Vec<String>>) -> Self {
        let stop = CancellationToken::new();
        let posted = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(post_steadily(
            rate,
            Arc::new(tenants),
            Arc::new(urls),
            stop.clone(),
            Arc::clone(&posted),
        ));
        Self { stop, task, posted }
    }

    /// How many events were posted so far.
    pub fn posted_so_far(&self) -> usize {
        self.posted.lock().map_or(0, |p| p.len())
    }

    /// Stops posting, waits for the answers of those under way, and returns
    /// every post in sequence order.
    pub async fn stop(self) -> Vec<Posted> {
        self.stop.cancel();
        let _ = self.task.await;
        let mut posted = std::mem::take(&mut *self.posted.lock().expect("posts"));
        posted.sort_by_key(|p| p.seq);
        posted
    }
}

async fn post_steadily(
    rate: Rate,
    tenants: Arc<Vec<String>>,
    urls: Arc<Vec<Vec<String>>>,
    stop: CancellationToken,
    posted: Arc<Mutex<Vec<Posted>>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10)) // the provider's webhook timeout
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client");
    // Bounded, so a stalled ingest cannot pile up unbounded requests here.
    let in_flight = Arc::new(Semaphore::new(512));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(rate.events_per_second.max(1)),
    ));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = JoinSet::new();
    let mut seq: u64 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let n = seq as usize;
        let tenant_index = n % tenants.len();
        let chat = (n / tenants.len()) % CHATS;
        let (http, tenants, urls, posted) = (
            http.clone(),
            Arc::clone(&tenants),
            Arc::clone(&urls),
            Arc::clone(&posted),
        );
        let this = seq;
        posts.spawn(async move {
            let tenant = &tenants[tenant_index];
            let at_ms = unix_ms();
            let outcome = post_one(&http, &urls[tenant_index], n, tenant, this, chat).await;
            drop(permit);
            posted.lock().expect("posts").push(Posted {
                seq: this,
                tenant: tenant.clone(),
                at_ms,
                outcome,
            });
        });
        seq += 1;
        // Reap finished posts as we go.
        while posts.try_join_next().is_some() {}
    }
    while posts.join_next().await.is_some() {}
}

/// Posts one event, starting with replica `n mod replicas` and moving on
/// while a connection cannot be opened (for up to 10 s, as the provider
/// would give up then).
async fn post_one(
    http: &reqwest::Client,
    urls: &[String],
    n: usize,
    tenant: &str,
    seq: u64,
    chat: usize,
) -> Outcome {
    let chat_id = format!("4915550{chat:04}@s.whatsapp.net");
    let body = crate::traffic::message_body(
        Some(tenant),
        &format!("chaos-{seq}"),
        &chat_id,
        &body_text(tenant, seq),
    );
    let started = tokio::time::Instant::now();
    let mut attempt = 0usize;
    loop {
        let url = &urls[(n + attempt) % urls.len()];
        let answer = http
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match answer {
            Ok(answer) => return Outcome::Status(answer.status().as_u16()),
            Err(e) if e.is_connect() && started.elapsed() < Duration::from_secs(10) => {
                attempt += 1;
                if attempt.is_multiple_of(urls.len()) {
                    // Every replica refused: wait a little before the next round.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(e) => return Outcome::NoAnswer(format!("{e:#}")),
        }
    }
}
